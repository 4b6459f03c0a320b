"""The journal's folders on disk: their layout, removing them safely, and clearing what a crash
left in them.

Each task has a folder ``<root>/<project>/<replica>/`` with ``task.json`` (the record),
``input``, ``output`` (the kept result) and ``slot/`` (the running app's folder). A folder is
forgotten by renaming it to a hidden name first, so a crash mid-way leaves a leftover that
:func:`remove_leftovers` clears, never half a task. Kept apart from :mod:`tessera_client.journal`
so that the record-keeping there reads without the crash clean-up.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from pathlib import Path

from tessera_client.files import remove_tree, sync_directory

log = logging.getLogger(__name__)

RECORD_FILE = "task.json"
INPUT_FILE = "input"
OUTPUT_FILE = "output"
SLOT_DIR = "slot"
TEMP_SUFFIX = ".tmp"
FORGET_PREFIX = ".forget-"
# A temporary file older than this belongs to no writer still at work, whatever its pid says
# (pids are reused after a reboot); a live writer needs milliseconds.
STALE_SECONDS = 600.0


def subfolders(folder: Path) -> list[Path]:
    """The real folders (no links) in ``folder``, sorted; none when it cannot be read."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def discard_folder(folder: Path) -> None:
    """Rename first, then delete: a crash mid-way leaves a hidden leftover, never half a task."""
    trash = folder.with_name(f"{FORGET_PREFIX}{folder.name}-{secrets.token_hex(6)}")
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return
    sync_directory(folder.parent)
    remove_tree(trash)


def remove_leftovers(root: Path) -> int:
    """Remove what crashes left under ``root``: abandoned temporary files and half-forgotten folders.

    Returns how many leftovers it removed. A temporary file whose writer still lives (and is
    recent) is left alone. Only the journal's owner may call it, holding the journal's lock.
    """
    removed = 0
    for project_dir in subfolders(root):
        if project_dir.name.startswith(FORGET_PREFIX):
            removed += _remove_leftover(project_dir)
            continue
        for task_dir in subfolders(project_dir):
            removed += _clear_task_folder(task_dir)
    return removed


def _clear_task_folder(task_dir: Path) -> int:
    if task_dir.name.startswith(FORGET_PREFIX):
        return _remove_leftover(task_dir)
    removed = 0
    for leftover in task_dir.glob(f".*{TEMP_SUFFIX}"):
        if leftover.is_file() and is_abandoned(leftover):
            leftover.unlink(missing_ok=True)
            removed += 1
    # A receive cut short before its record: the task never entered the journal.
    # (A folder with an output is never removed, whatever happened to its record.)
    orphan = not (task_dir / RECORD_FILE).exists() and not (task_dir / OUTPUT_FILE).exists()
    if orphan and task_dir.name.isdigit():
        removed += _remove_leftover(task_dir)
    return removed


def _remove_leftover(folder: Path) -> int:
    try:
        remove_tree(folder)
    except OSError as error:
        log.warning("cannot remove the leftover %s: %s", folder, error)
        return 0
    return 1


def is_abandoned(temporary: Path) -> bool:
    """A writer's temporary file is abandoned when the writer is gone or it is too old to be live."""
    parts = temporary.name.split(".")
    try:
        pid = int(parts[-3])
        age = time.time() - temporary.lstat().st_mtime
    except (IndexError, ValueError, OSError):
        return True
    return age > STALE_SECONDS or (pid != os.getpid() and not _pid_alive(pid))


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate it there; the age test decides alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
