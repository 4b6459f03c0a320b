"""Writing files so that a power cut leaves either the old contents or the new, never half."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any


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


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    temporary = temporary_beside(path)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def write_json_atomic(path: Path, value: Any) -> None:
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
