"""The volunteer client's wheel, built from ``client/`` at deploy time and served by the project.

``manage.py build_client`` builds it with pip into ``CLIENT_WHEEL_DIR`` and writes
``release.json`` beside it: the version, the file's name, size and SHA-256. The pages show
the install command with that hash in the URL (``…whl#sha256=…``), so pip refuses a wheel
that was changed on the way or on the server after the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

CLIENT_SOURCE = Path(settings.BASE_DIR) / "client"
MANIFEST = "release.json"
BUILD_TIMEOUT_S = 600
LEFT_OUT = ("build", "dist", "*.egg-info", "__pycache__", "tests", ".mypy_cache", ".pytest_cache")


class ClientBuildError(RuntimeError):
    """pip could not build the wheel (its output is in the message)."""


@dataclass(frozen=True)
class ClientRelease:
    """What a project serves of its client: one wheel and the facts to check it by."""

    version: str
    wheel: str  # the file's name in CLIENT_WHEEL_DIR
    sha256: str
    size: int

    def requirement(self, base_url: str) -> str:
        """What pip installs: the wheel at the project, checked against its hash."""
        return f"tessera-client @ {base_url.rstrip('/')}/client/{self.wheel}#sha256={self.sha256}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(folder: Path | None = None, source: Path = CLIENT_SOURCE) -> ClientRelease:
    """Build the client's wheel into ``folder`` (``CLIENT_WHEEL_DIR``), replacing the last one."""
    folder = Path(folder or settings.CLIENT_WHEEL_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tessera-client-build-") as scratch:
        copy, out = Path(scratch) / "client", Path(scratch) / "wheel"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*LEFT_OUT))  # the checkout stays clean
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(copy),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        wheels = sorted(out.glob("tessera_client-*.whl")) if done.returncode == 0 else []
        if len(wheels) != 1:
            raise ClientBuildError(
                f"{' '.join(command)} failed:\n{(done.stderr or done.stdout).strip()[-3000:]}"
            )
        built = wheels[0]
        release = ClientRelease(
            version=built.name.split("-")[1],
            wheel=built.name,
            sha256=sha256_of(built),
            size=built.stat().st_size,
        )
        shutil.copyfile(built, folder / f"{built.name}.tmp")
        os.replace(folder / f"{built.name}.tmp", folder / built.name)
    manifest = folder / f"{MANIFEST}.tmp"
    manifest.write_text(json.dumps(asdict(release), indent=2) + "\n")
    os.replace(manifest, folder / MANIFEST)
    for old in folder.glob("tessera_client-*.whl"):
        if old.name != release.wheel:
            old.unlink()
    return release


def current(folder: Path | None = None) -> ClientRelease | None:
    """The release this project serves, or ``None`` when none was built (or it is unreadable)."""
    folder = Path(folder or settings.CLIENT_WHEEL_DIR)
    try:
        data = json.loads((folder / MANIFEST).read_text())
        release = ClientRelease(**{key: data[key] for key in ("version", "wheel", "sha256", "size")})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if Path(release.wheel).name != release.wheel or not (folder / release.wheel).is_file():
        return None
    return release


def offer(base_url: str) -> dict[str, Any]:
    """What the pages and ``GET /api/v1/project`` say about the client: the version served,
    the project's minimum, and the wheel with its hash (``None`` where none was built)."""
    release, base = current(), base_url.rstrip("/")
    return {
        "version": release.version if release else None,
        "min_version": settings.TESSERA["MIN_CLIENT_VERSION"] or None,
        "install_page": f"{base}/client",
        "wheel_url": f"{base}/client/{release.wheel}" if release else None,
        "sha256": release.sha256 if release else None,
        "requirement": release.requirement(base) if release else None,
    }
