"""The sandbox's launcher: a fresh interpreter that locks itself down, then becomes the app.

:mod:`tessera_client.sandbox` starts ``python -I _launch.py <json>`` in a new session. This
process applies the limits to itself -- lowest CPU priority, resource limits, no core dumps, a
pids cgroup where one is available, death with the client, no network -- and then execve's the
app's ``argv`` (a Python app's interpreter with its entrypoint, or a native app's executable),
which inherits all of it and keeps the same pid.

Why a separate interpreter and not ``subprocess``'s ``preexec_fn``: the client has threads, and
running Python code between fork and exec in a threaded process can deadlock; besides,
unshare(CLONE_NEWUSER) refuses a multi-threaded caller. This file uses the standard library only
and imports nothing from the package (it runs with -I).

Before the exec it writes one JSON object to the status pipe the client passed (``status_fd``):
what took effect (``network_isolated``, ``process_limit``) or, if it could not start the app,
``error``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import resource
import signal
import sys
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _lower(which: int, soft: int, hard: int | None = None) -> None:
    """Lower a resource limit; never try to raise a hard limit (that needs privileges)."""
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(which, (min(soft, hard), hard))


def _count_processes(uid: int) -> int:
    """How many processes (as /proc lists them) the real user owns now."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _per_namespace_nproc() -> bool:
    """Since Linux 5.14 RLIMIT_NPROC counts a user's processes per user namespace (ucounts)."""
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def _join_cgroup(path: str) -> bool:
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))
    except OSError:
        return False
    return True


def _map_ids(uid: int, gid: int) -> None:
    """Map our own ids into the new user namespace, so the app sees its usual uid and gid."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
        except OSError:
            pass  # still cut off from the network; the app just sees the overflow uid


def _cut_network(libc: Any) -> str:
    """A new user + network namespace holds only a downed loopback: '' if that worked, else why not."""
    if libc is None or not hasattr(libc, "unshare"):
        return "unshare() is not available"
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return f"unshare() failed: {os.strerror(ctypes.get_errno())}"
    _map_ids(uid, gid)
    return ""


def _prepare(args: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = {"network_isolated": False, "process_limit": None}
    linux = sys.platform.startswith("linux")
    libc = _libc() if linux else None
    root = os.geteuid() == 0  # before unshare: inside an unmapped namespace it reads 65534

    # Before unshare: joining a cgroup and counting the user's processes need the host's view.
    if args.get("cgroup") and _join_cgroup(args["cgroup"]):
        status["process_limit"] = "cgroup"
    processes = int(args["processes"])
    nproc = getattr(resource, "RLIMIT_NPROC", None)
    if nproc is not None:
        # RLIMIT_NPROC counts every process of the real user, so allow the ones they have already.
        already = _count_processes(os.getuid()) if linux else 0
        _lower(nproc, already + processes)

    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    except (AttributeError, OSError):
        os.nice(19 - os.nice(0))
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    if args.get("isolate_network") and linux:
        why_not = _cut_network(libc)
        status["network_isolated"] = not why_not
        if why_not:
            status["network_note"] = why_not
        elif nproc is not None and _per_namespace_nproc():
            # The new namespace counts only the app's own processes: the limit can be exact.
            _lower(nproc, processes)
    if nproc is not None and not root and status["process_limit"] is None:
        status["process_limit"] = "rlimit"  # not enforced for root, even inside a user namespace

    cpu = int(args["cpu_seconds"])
    _lower(resource.RLIMIT_CPU, cpu, cpu + 2)  # SIGXCPU at the soft limit, SIGKILL at the hard one
    memory, reserved = int(args["memory_bytes"]), int(args.get("reserved_bytes") or 0)
    _lower(resource.RLIMIT_AS, memory + reserved)
    if reserved:  # the reservation is never writable: bound what is (private writable mappings)
        _lower(resource.RLIMIT_DATA, memory)
    _lower(resource.RLIMIT_FSIZE, int(args["file_bytes"]))
    _lower(resource.RLIMIT_CORE, 0)

    # Last, as a credential change (unshare) would clear it; execve of a plain binary keeps it.
    if libc is not None and hasattr(libc, "prctl"):
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != int(args["parent"]):
            raise RuntimeError("the client exited while the app was starting")
    return status


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    status_fd = int(args["status_fd"])
    try:
        status = _prepare(args)
        os.chdir(args["slot"])
    except Exception as error:
        os.write(status_fd, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
        return 126
    os.write(status_fd, json.dumps(status).encode())
    os.close(status_fd)
    argv = [str(part) for part in args["argv"]]  # the program, by its path, then its arguments
    try:
        os.execve(argv[0], argv, args["env"])
    except OSError as error:
        print(f"tessera sandbox: cannot run {argv[0]}: {error}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
