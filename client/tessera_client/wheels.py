"""A Python app's pinned wheels: checked against the bundle's manifest and unpacked beside the app.

A bundle may carry wheels (numpy, say) under ``wheels/``, listed in ``tessera-app.json`` with
their SHA-256, and the Python they are built for::

    {"api": 1, "entrypoint": "main.py", "python": "3.11",
     "wheels": [{"file": "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl", "sha256": "…"}]}

The bundle's signature already covers them; each wheel is checked against its hash all the same
(defence in depth, and a clear refusal naming the file), then unpacked into ``site/`` as
carefully as the bundle itself: no absolute paths, no ``..``, no links, bounded size. Its
``*.data/purelib`` and ``*.data/platlib`` go to ``site/`` too; scripts, headers and data files
are not needed to import it and are left out. No pip and no network: the bundle's ``main.py``
puts ``site/`` on ``sys.path``. The wheel files are removed once unpacked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import zipfile
from pathlib import Path
from typing import Any

from tessera_client.app_manifest import MANIFEST, check_relative_path
from tessera_client.files import remove_tree, sync_directory

WHEELS = "wheels"
SITE = "site"
CHUNK = 64 * 1024
FILE_MODE, DIR_MODE = 0o444, 0o555
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WHEEL_FILE = re.compile(r"^[A-Za-z0-9_.!+-]+\.whl$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_LIBS = ("purelib", "platlib")  # the parts of a wheel's .data folder that belong on sys.path


class WheelRefused(Exception):
    """A wheel is not what the manifest pinned, or not safe to unpack; ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def running_python() -> str:
    """The Python that runs apps (this client's own): "3.11"."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def listed_wheels(manifest: Any) -> tuple[dict[str, str], str]:
    """The manifest's wheels (file name -> SHA-256) and the Python they need ("" for any);
    ``WheelRefused`` naming what is wrong."""
    wheels = manifest.get("wheels", []) if isinstance(manifest, dict) else None
    python = manifest.get("python", "") if isinstance(manifest, dict) else None
    if not isinstance(wheels, list):
        raise WheelRefused("bad_manifest", f"wheels {wheels!r} is not a list")
    if not isinstance(python, str) or (python and not _PYTHON.match(python)):
        raise WheelRefused("bad_manifest", f"python {python!r} is not a version like '3.11'")
    listed: dict[str, str] = {}
    for entry in wheels:
        file = entry.get("file") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(file, str) or not _WHEEL_FILE.match(file) or file.startswith("."):
            raise WheelRefused("bad_manifest", f"the wheel {file!r} is not a wheel's file name")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise WheelRefused("bad_manifest", f"the wheel {file}'s sha256 {sha!r} is not 64 lowercase hex")
        if file in listed:
            raise WheelRefused("bad_manifest", f"the wheel {file} is listed twice")
        listed[file] = sha
    return listed, python


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install_wheels(app: Path, *, max_unpacked_bytes: int, max_entries: int) -> None:
    """Check and unpack the wheels of the app just unpacked into ``app`` (not yet installed);
    nothing happens for a bundle without wheels."""
    manifest = json.loads((app / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or not ("wheels" in manifest or "python" in manifest):
        return  # an app without wheels (a wasm or native one among them): its files are its own
    listed, python = listed_wheels(manifest)
    if python and python != running_python():
        raise WheelRefused(
            "wrong_python",
            f"this app's wheels are built for Python {python}; this client runs Python {running_python()}",
        )
    folder = app / WHEELS
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    unlisted = [name for name in present if name not in listed]
    if unlisted:
        raise WheelRefused(
            "bad_manifest", f"the bundle holds {WHEELS}/{unlisted[0]}, which its manifest does not list"
        )
    if not listed:
        return
    for file, expected in listed.items():
        path = folder / file
        if not path.is_file() or path.is_symlink():
            raise WheelRefused("bad_manifest", f"the manifest lists {WHEELS}/{file}, which the bundle lacks")
        found = _file_sha256(path)
        if found != expected:
            raise WheelRefused(
                "wheel_hash_mismatch",
                f"the wheel {file} does not match the manifest: expected sha256 {expected}, found {found}",
            )
    _Unpacker(app / SITE, max_unpacked_bytes, max_entries).unpack([folder / file for file in listed])
    remove_tree(folder)  # unpacked: the wheels themselves would only double the disk used


class _Unpacker:
    """Writes the members of several wheels into one ``site/`` folder, refusing anything unsafe."""

    def __init__(self, site: Path, max_bytes: int, max_entries: int) -> None:
        self.site, self.max_bytes, self.max_entries = site, max_bytes, max_entries
        self.written = 0
        self.entries = 0
        self.seen: set[str] = set()  # case-folded paths, for case-insensitive file systems
        self.folders: set[Path] = {site}

    def unpack(self, wheels: list[Path]) -> None:
        self.site.mkdir()
        for wheel in wheels:
            try:
                with zipfile.ZipFile(wheel) as archive:
                    for info in archive.infolist():
                        self._member(wheel.name, archive, info)
            except WheelRefused:
                raise
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as error:
                raise WheelRefused("bad_wheel", f"cannot unpack the wheel {wheel.name}: {error}") from error
        for folder in sorted(self.folders, key=lambda p: len(p.parts), reverse=True):
            sync_directory(folder)
            os.chmod(folder, DIR_MODE)

    def _target(self, wheel: str, info: zipfile.ZipInfo) -> str | None:
        """Where a member goes inside ``site/`` ("" for a folder), or None when it is not needed."""
        name = info.filename.rstrip("/")
        try:
            check_relative_path(name)
        except ValueError as error:
            raise WheelRefused("unsafe_path", f"the wheel {wheel} holds an unsafe path: {error}") from error
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise WheelRefused("unsafe_path", f"the wheel {wheel} holds a symbolic link, {name!r}")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise WheelRefused("unsafe_path", f"the wheel {wheel} holds {name!r}, not a plain file or folder")
        if info.flag_bits & 0x1:
            raise WheelRefused("bad_wheel", f"the wheel {wheel} holds {name!r} encrypted")
        parts = name.split("/")
        if parts[0].endswith(".data"):
            if len(parts) < 3 or parts[1] not in _LIBS:
                return None  # scripts, headers, data: not needed to import the package
            parts = parts[2:]
        if info.is_dir():
            return ""
        return "/".join(parts)

    def _member(self, wheel: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        relative = self._target(wheel, info)
        if not relative:
            return
        self.entries += 1
        if self.entries > self.max_entries:
            raise WheelRefused("too_large", f"the wheels hold over {self.max_entries} files")
        key = relative.casefold()
        if key in self.seen:
            raise WheelRefused("duplicate_name", f"{relative!r} is in the wheels twice (letter case aside)")
        self.seen.add(key)
        target = self.site / relative
        for parent in reversed(target.parents):
            if parent != self.site and self.site in parent.parents and parent not in self.folders:
                if parent.exists() and not parent.is_dir():
                    raise WheelRefused(
                        "duplicate_name", f"{parent.relative_to(self.site)} is a file and a folder"
                    )
                parent.mkdir(exist_ok=True)
                self.folders.add(parent)
        flags = (
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        )
        try:
            descriptor = os.open(target, flags, 0o600)
        except FileExistsError as error:
            raise WheelRefused(
                "duplicate_name", f"{relative!r} is a file and a folder in the wheels"
            ) from error
        with archive.open(info) as source, os.fdopen(descriptor, "wb") as out:
            for chunk in iter(lambda: source.read(CHUNK), b""):
                self.written += len(chunk)
                if self.written > self.max_bytes:
                    raise WheelRefused("too_large", f"the wheels unpack to over {self.max_bytes} bytes")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(target, FILE_MODE)
