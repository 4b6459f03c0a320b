"""Two demo volunteer hosts that crunch the demo units against a running coordinator.

Run after `make run` (in another terminal): `make demo-hosts`. Each host registers its own
key with a demo volunteer's token, asks for work, computes the demo app's SHA-256 chain
in-process (the real client, `tessera run`, runs the signed bundle instead), reports, and
stops when no work is left. The coordinator's front page shows the counts move.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from tessera_client.protocol import HostKey, ProjectSession, Report


def hash_chain(job: dict) -> str:
    """What the demo app (coordinator/work/demo_app/main.py) computes."""
    digest = hashlib.sha256(str(job["seed"]).encode()).digest()
    for _ in range(int(job["rounds"])):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def crunch(url: str, token: str, name: str, rounds: int) -> int:
    session = ProjectSession(url, HostKey.generate())
    # No measured speed: a hash takes microseconds, so credit is claimed from the app's
    # estimate of the work (see docs/validation.md), as a real app's would be.
    host_id = session.register(
        account_token=token, name=name, platform="linux-x86_64", n_cpus=2, memory_bytes=4 << 30
    )
    done = 0
    reports: list[Report] = []
    for _ in range(rounds):
        reply = session.scheduler_rpc(reports=reports, tasks=5)
        reports = []
        for task in reply["tasks"]:
            started = time.process_time()
            output = hash_chain(json.loads(session.fetch_input(task))).encode()
            reports.append(
                Report(
                    replica=task["replica"],
                    status="success",
                    cpu_time=time.process_time() - started,
                    output=output,
                )
            )
        done += len(reply["tasks"])
        print(f"{name} (host {host_id}): {done} replicas crunched")
        if not reply["tasks"]:
            break
    if reports:
        session.scheduler_rpc(reports=reports)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--tokens-file", default="var/demo-tokens.txt")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    tokens = Path(args.tokens_file).read_text().split()
    total = sum(crunch(args.url, token, f"demo-host-{i}", args.rounds) for i, token in enumerate(tokens))
    print(f"done: {total} replicas crunched and reported; see {args.url}/")


if __name__ == "__main__":
    main()
