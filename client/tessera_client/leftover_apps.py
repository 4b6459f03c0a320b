"""After a client crash: find the app it left running and kill it, and nothing else.

The journal remembers each running app's pid, but after a crash (and more so a reboot) that pid
may belong to anyone; only processes that prove they belong to the task's slot are killed.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tessera_client.procfs import stat_fields


def kill_leftover(pid: int, slot: Path) -> bool:
    """After a client crash: kill the app left running in ``slot`` as ``pid``, and its group.

    Only processes that prove they belong to the slot die (TESSERA_SLOT in their environment, or,
    if that cannot be read, their working folder), so a pid reused by an unrelated process is safe.
    True if something was killed. Off Linux there is no way to check, so nothing is killed.
    """
    if not sys.platform.startswith("linux"):
        return False
    slot = Path(slot).resolve()
    members = _group_members(pid, slot)
    ours = [member for member, belongs in members if belongs]
    if not ours:
        return False
    if all(belongs for _, belongs in members) and any(member == pid for member in ours):
        targets = [("group", pid)]  # one signal for the whole group: nothing can fork away from it
    else:
        targets = [("process", member) for member in ours]
    killed = False
    for kind, target in targets:
        try:
            (os.killpg if kind == "group" else os.kill)(target, signal.SIGKILL)
            killed = True
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def _group_members(pid: int, slot: Path) -> list[tuple[int, bool]]:
    """``pid`` and the members of its process group, each with whether it belongs to ``slot``."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(name)
        if fields is None:
            continue
        if int(name) == pid or int(fields[2]) == pid:  # the leader, or a member of its process group
            members.append((int(name), _belongs_to(int(name), slot)))
    return members


def _belongs_to(pid: int, slot: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        environ = b""
    if environ:
        return f"TESSERA_SLOT={slot}".encode() in environ.split(b"\0")
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == slot
    except OSError:
        return False
