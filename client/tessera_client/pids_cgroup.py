"""A process limit that also binds root: a ``pids`` cgroup for each task, where we may make one.

RLIMIT_NPROC does not bind a process running as root, so where the client's own cgroup lets
it, each task gets a child cgroup with ``pids.max``. Removing the cgroup also
kills whatever of the app is still in it, even processes that left its process group.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import sys
import time
from pathlib import Path

_cgroup_names = itertools.count()


@functools.lru_cache(maxsize=1)
def _pids_cgroup_parent() -> Path | None:
    """The folder of our own cgroup under which a task's pids cgroup can be made, if we may."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in memberships:
        hierarchy, controllers, path = line.split(":", 2)
        v1 = "pids" in controllers.split(",")
        if not v1 and hierarchy != "0":
            continue
        for mount in mounts:
            candidate = _mounted_at(mount, path, v1)
            if candidate is not None and os.access(candidate, os.W_OK):
                return candidate
    return None


def _mounted_at(mount: str, path: str, v1: bool) -> Path | None:
    """Where our cgroup ``path`` appears under this mountinfo line, if it is a usable pids mount."""
    before, _, after = mount.partition(" - ")
    fields, kind = before.split(), after.split()
    if len(fields) < 5 or len(kind) < 3:
        return None
    if v1 and not (kind[0] == "cgroup" and "pids" in kind[2].split(",")):
        return None
    if not v1 and kind[0] != "cgroup2":
        return None
    relative = os.path.relpath(path, fields[3])
    if relative.startswith(".."):
        return None
    candidate = Path(fields[4]) / relative
    if not v1:
        try:
            if "pids" not in (candidate / "cgroup.subtree_control").read_text().split():
                return None
        except OSError:
            return None
    return candidate


def make_pids_cgroup(processes: int) -> Path | None:
    """A new cgroup allowing ``processes`` processes; None where the client may not make one."""
    parent = _pids_cgroup_parent()
    if parent is None:
        return None
    _sweep_cgroups(parent)
    path = parent / f"tessera-{os.getpid()}-{next(_cgroup_names)}"
    try:
        path.mkdir(exist_ok=True)
        (path / "pids.max").write_text(f"{processes}\n")
    except OSError:
        remove_cgroup(path)
        return None
    return path


def _sweep_cgroups(parent: Path) -> None:
    """Remove the cgroups of clients that died (killed, so they could not clean up after their apps)."""
    for path in parent.glob("tessera-*-*"):
        client = path.name.split("-")[1]
        if client.isdigit() and int(client) != os.getpid() and not Path(f"/proc/{client}").exists():
            remove_cgroup(path)


def remove_cgroup(path: Path | None) -> None:
    """Kill whatever of the app is still in its cgroup (even if it left the group), then remove it."""
    if path is None:
        return
    for _ in range(40):
        try:
            for line in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.kill(int(line), signal.SIGKILL)
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.025)
