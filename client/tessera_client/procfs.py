"""Reading Linux's ``/proc``: a process's status fields and the CPU time it has used.

Both the sandbox (a running app's CPU time) and the crash clean-up (which processes belong to a
leftover app's group) read ``/proc/<pid>/stat``, whose command name may hold spaces and ``)``.
"""

from __future__ import annotations

import os
from pathlib import Path


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user+sys, children it waited for included) of a live process; 0 if unreadable."""
    fields = stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = sum(int(fields[index]) for index in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")
