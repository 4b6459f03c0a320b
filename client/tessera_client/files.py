"""Writing files so that a power cut leaves either the old contents or the new, never half.

Also the one careful copy of a file an app wrote: it never follows a link the app planted.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

COPY_CHUNK = 1024 * 1024


class NotPlainFile(ValueError):
    """The app's output is a link or not a regular file; it must not be followed or sent."""


def sync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(descriptor)


def temporary_beside(path: Path) -> Path:
    """A temporary name no other writer (thread or process) can pick, that says whose it is:
    ``.<name>.<pid>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


@contextmanager
def _replacing(path: Path, mode: int) -> Iterator[BinaryIO]:
    """A new file beside ``path`` to write; when the block ends without an error it is
    fsynced and renamed over ``path`` durably, otherwise it is removed."""
    temporary = temporary_beside(path)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    with _replacing(Path(path), mode) as handle:
        handle.write(data)


def copy_atomic(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` to ``target`` durably; returns the SHA-256 and size of what was copied.

    ``NotPlainFile`` when ``source`` is a link, a device, a folder or a hard link.
    """
    digest, size = hashlib.sha256(), 0
    with _replacing(target, 0o600) as out, open_plain_file(source) as src:
        while True:
            chunk = src.read(COPY_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def open_plain_file(path: Path) -> Any:
    """Open a file the app wrote without following a link it may have planted there.

    A link to a file the app itself may not read (the sandbox forbids it) would otherwise have
    the client copy, and upload, that file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    if os.path.islink(path):
        raise NotPlainFile(f"the output {path.name!r} is a symbolic link")
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if os.path.islink(path):
            raise NotPlainFile(f"the output {path.name!r} is a symbolic link") from error
        raise
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(descriptor)
        raise NotPlainFile(f"the output {path.name!r} is not a plain file (a device, folder or hard link)")
    return os.fdopen(descriptor, "rb")


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as JSON with :func:`write_atomic`."""
    write_atomic(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when the file does not exist."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    return json.loads(text)


def remove_tree(top: Path) -> None:
    """Delete a folder even if parts of it are read-only (an app's doing, or the app cache's);
    links inside are removed, never followed."""
    if not os.path.lexists(top):
        return
    if os.path.islink(top) or not os.path.isdir(top):
        Path(top).unlink(missing_ok=True)
        return
    try:
        os.chmod(top, 0o700)
        for dirpath, dirnames, _ in os.walk(top):
            for name in dirnames:
                child = os.path.join(dirpath, name)
                if not os.path.islink(child):
                    os.chmod(child, 0o700)
    except OSError:
        pass  # rmtree reports what really cannot be removed
    shutil.rmtree(top)
