"""Two demo volunteer computers: the real `tessera` client, twice, against `make run`.

Run after `make run` (in another terminal): `make demo-hosts`. Each demo volunteer's client
gets its own data folder under var/demo-hosts/, attaches with the token `make run` printed
(pinning the project's code-signing key), then `tessera run --exit-when-idle` downloads the
signed demo app, verifies it, crunches the units in its sandbox, uploads and reports, and
stops when no work is left. The coordinator's front page shows the counts move.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TESSERA = [sys.executable, "-m", "tessera_client"]


def tessera(data: Path, *args: str) -> list[str]:
    return [*TESSERA, "--data-dir", str(data), *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--tokens-file", default="var/demo-tokens.txt")
    parser.add_argument("--folder", default="var/demo-hosts", type=Path)
    args = parser.parse_args()
    tokens = Path(args.tokens_file).read_text().split()
    folders = [args.folder / f"host-{index}" for index in range(len(tokens))]
    for folder, token in zip(folders, tokens, strict=True):
        if not (folder / "projects" / "demo.json").exists():
            attach = tessera(folder, "attach", args.url, "--token", token, "--name", "demo")
            subprocess.run(attach, check=True)
    runs = [subprocess.Popen(tessera(folder, "run", "--exit-when-idle")) for folder in folders]
    failed = sum(run.wait() != 0 for run in runs)
    for folder in folders:
        subprocess.run(tessera(folder, "status"), check=False)
    print(f"done; see {args.url}/ and {args.url}/api/v1/leaderboards/volunteers")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
