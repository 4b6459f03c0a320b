"""How much work a host may hold waiting to start (docs/batches.md, "The work buffer").

A task that waits in a host's queue behind the ones running adds its wait to its unit's
time, and one held by a host that goes off waits hours: a scientist's batch is as late as its
last unit. BOINC projects that care for turnaround limit jobs in progress per CPU
(``max_wus_in_progress``); here the limit is in time, so a host gets a task for each core
that is free and, beyond those, only what would start within ``WORK_BUFFER_SECONDS``. Short
tasks still travel many to a request (a second's task fits sixty to a minute's buffer); an
hour's task goes one to a core. Pure: the claim and the simulator call it.
"""

from __future__ import annotations

import math

# Above any other limit on tasks a request carries: the buffer then does not bind.
UNBOUNDED = 1 << 30


def buffer_room(
    *, cores: int, held: int, task_cores: float, task_seconds: float, buffer_seconds: float
) -> int:
    """Tasks of this kind the host may take now: as many as its cores not running a task it
    holds can start, then as many more as keep the work waiting to start (what it already
    holds beyond its cores, counted as tasks like this one) within ``buffer_seconds``.
    ``task_seconds`` is one task's time on the host's whole computer (a task on c of its n
    cores counts c/n of its time), so the last one waiting starts about that long from now."""
    if task_seconds <= 0 or not math.isfinite(task_seconds) or not math.isfinite(buffer_seconds):
        return UNBOUNDED
    free = max(0, cores - held)
    start_now = int(free // task_cores) if task_cores > 0 else free
    waiting = max(0, held - cores) * task_seconds
    more = int(max(0.0, buffer_seconds - waiting) // task_seconds)
    return min(UNBOUNDED, start_now + more)
