"""CPU accounting from /proc: who spent the machine's cores during a timed window.

A benchmark on a small shared machine reports, next to its rate, the cores each part of it
used (the server, the database, the load generator) and what everything else took, so
that a figure skewed by other load can be told apart. Everything here reads Linux's /proc
(user + system time in clock ticks); nothing is sampled by a profiler.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()


def read_process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process; OSError if it is gone."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        return read_process_cpu(pid)
    except (OSError, IndexError, ValueError):
        return 0.0


def parent_pid(pid: int) -> int:
    """The parent of a process; OSError if it is gone."""
    return int(_stat_fields(pid)[1])


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a gunicorn master's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = parent_pid(int(entry))
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def ancestors() -> set[int]:
    """This process and its parents: a shell that started us may mention another benchmark."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = parent_pid(pid)
        except (OSError, IndexError, ValueError):
            break
    return found


def postgres_pids(dbname: str) -> list[int]:
    """This database's backends and the server's background processes (WAL writer, …).

    Backends of other databases on a shared server are left out.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                title = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if not title.startswith("postgres"):
            continue
        parts = title.split(": ", 2)
        if len(parts) < 3:
            continue  # the postmaster itself
        words = parts[2].split()
        is_backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
        if not is_backend or words[1] == dbname:
            pids.append(int(entry))
    return pids


def machine_cpu() -> tuple[float, float, float]:
    """(busy, idle, steal) CPU seconds of the whole machine, all cores."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICKS, (idle + iowait) / TICKS, steal / TICKS


@dataclass
class CpuSample:
    """CPU seconds so far of each process of each named group, and of the machine."""

    groups: dict[str, dict[int, float]]
    machine: tuple[float, float, float]


def cpu_sample(groups: dict[str, list[int]]) -> CpuSample:
    """CPU seconds so far of each group of processes and of the machine."""
    return CpuSample(
        {name: {pid: process_cpu(pid) for pid in pids} for name, pids in groups.items()}, machine_cpu()
    )


def cpu_cores(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
    """Cores used by each group between two samples (a process seen only at the end counts whole)."""
    used = {}
    for name, pids in after.groups.items():
        earlier = before.groups.get(name, {})
        used[name] = sum(max(0.0, cpu - earlier.get(pid, 0.0)) for pid, cpu in pids.items()) / seconds
    busy, idle, steal = (a - b for a, b in zip(after.machine, before.machine, strict=True))
    used["machine_busy"] = busy / seconds
    used["machine_idle"] = idle / seconds
    used["steal"] = steal / seconds
    return used


# --- sharing the machine -------------------------------------------------------------------


def dispatch_running() -> list[int]:
    """Pids of a running ``bench.dispatch`` (``pgrep -f``), not counting ourselves."""
    try:
        out = subprocess.run(
            ["pgrep", "-f", "bench.dispatch"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    mine = ancestors()
    return [int(pid) for pid in out.split() if pid.isdigit() and int(pid) not in mine]


def wait_for_quiet_machine(limit: float) -> float:
    """Wait (up to ``limit`` seconds) until no dispatch benchmark shares the 2 cores; returns the wait."""
    started = time.monotonic()
    announced = False
    while (pids := dispatch_running()) and time.monotonic() - started < limit:
        if not announced:
            print(f"# waiting for bench.dispatch (pids {pids}) to finish, up to {limit:.0f} s", flush=True)
            announced = True
        time.sleep(5.0)
    if pids:
        print(f"# ! bench.dispatch still running after {limit:.0f} s: timing anyway", flush=True)
    return time.monotonic() - started
