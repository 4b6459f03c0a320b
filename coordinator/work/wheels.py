"""Pinned wheels for Python apps, fetched once at publish time (docs/science-apps.md).

An app's manifest pins each wheel by its file name and SHA-256 (``workunits.interface.Wheel``).
``fetch_wheel`` takes it from the cache (``var/wheels/<sha256>/<file>``), from a folder the
operator names (``--find-links``: offline publishing, tests) or from the package index with
``pip download``, and lets nothing into the cache or a bundle whose hash differs from the pin.
Clients never download anything: the wheels travel inside the signed bundle.

``python -m coordinator.work.wheels`` fills the cache with every app's wheels (``make``'s
install step runs it). No Django here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import workunits
from workunits.interface import Wheel

CACHE = Path(__file__).resolve().parents[2] / "var" / "wheels"
PIP_TIMEOUT = 600  # seconds for one download
CHUNK = 1024 * 1024


class WheelError(Exception):
    """A pinned wheel could not be had: not found, not downloadable, or not the pinned bytes."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_pin(wheel: Wheel, path: Path, *, source: str) -> None:
    """Refuse a file whose SHA-256 is not the pinned one, naming the file and both hashes."""
    found = file_sha256(path)
    if found != wheel.sha256:
        raise WheelError(
            f"{wheel.file} from {source} does not match its pin: expected sha256 {wheel.sha256}, "
            f"found {found}; nothing was published"
        )


def pip_download_command(wheel: Wheel, dest: Path) -> list[str]:
    """``pip download`` of exactly this wheel: its name and version, for its own platform,
    Python and ABI tags, as a binary, without its dependencies (each is pinned on its own)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
    ]
    for tag in wheel.platform_tags:
        if tag != "any":
            command += ["--platform", tag]
    if wheel.python:
        command += ["--python-version", wheel.python, "--implementation", "cp", "--abi", wheel.abi]
    command.append(f"{wheel.name}=={wheel.version}")
    return command


def _download(wheel: Wheel, folder: Path) -> Path:
    try:
        done = subprocess.run(
            pip_download_command(wheel, folder),
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WheelError(f"pip download of {wheel.file} failed: {error}") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-1500:]
        raise WheelError(f"pip download of {wheel.file} failed (exit {done.returncode}): {tail}")
    path = folder / wheel.file
    if not path.is_file():
        got = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise WheelError(f"pip download fetched {got}, not the pinned {wheel.file}")
    return path


def _into_cache(path: Path, target: Path) -> None:
    """Copy a checked file into the cache under a temporary name, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(path, temporary)
    os.replace(temporary, target)


def fetch_wheel(wheel: Wheel, *, cache: Path = CACHE, find_links: Path | None = None) -> Path:
    """The pinned wheel's file in the cache, fetched once and checked against the pin.

    With ``find_links`` the file comes from that folder only (nothing is downloaded); without
    it, from the package index pip is configured for.
    """
    cached = Path(cache) / wheel.sha256 / wheel.file
    if cached.is_file():
        try:
            check_pin(wheel, cached, source="the cache")
            return cached
        except WheelError:
            cached.unlink()  # damaged or planted: fetch it again, and check that copy
    if find_links is not None:
        local = Path(find_links) / wheel.file
        if not local.is_file():
            raise WheelError(f"{wheel.file} is not in {find_links}")
        check_pin(wheel, local, source=str(find_links))
        _into_cache(local, cached)
        return cached
    with tempfile.TemporaryDirectory(prefix="tessera-wheel-") as temporary:
        downloaded = _download(wheel, Path(temporary))
        check_pin(wheel, downloaded, source="the package index")
        _into_cache(downloaded, cached)
    return cached


def fetch_wheels(
    wheels: tuple[Wheel, ...], *, cache: Path = CACHE, find_links: Path | None = None
) -> dict[str, bytes]:
    """Every wheel of one platform, by file name, each checked against its pin."""
    return {w.file: fetch_wheel(w, cache=cache, find_links=find_links).read_bytes() for w in wheels}


def main() -> int:
    """Fetch every app's pinned wheels into the cache (run once at install)."""
    for name in workunits.available():
        try:
            manifest = workunits.load(name).MANIFEST
        except (LookupError, TypeError):
            continue  # a package that is not an app (workunits/tests)
        for platform, wheels in sorted(manifest.wheels.items()):
            for wheel in wheels:
                try:
                    path = fetch_wheel(wheel)
                except WheelError as error:
                    print(f"{name} ({platform}): {error}", file=sys.stderr)
                    return 1
                print(f"{name} ({platform}): {path.relative_to(CACHE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
