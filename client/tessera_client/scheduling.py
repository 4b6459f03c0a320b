"""The client's scheduling policy, after BOINC's: pure functions, no files, no clock.

Which task runs next and how much work to ask each project for both follow the resource
shares: a project is owed its share of the computer, minus the CPU it recently got. A task
occupies the cores its app version asks for (``cores``: more than one for a multithreaded,
``mt``, version), and the tasks running at once never occupy more cores than the volunteer lets
the client use (:func:`task_cores`, :func:`fits`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from tessera_client.sandbox import Limits, whole_cores

USAGE_HALF_LIFE_SECONDS = 86_400.0  # how fast the resource-share debt forgets
DEFAULT_FLOPS = 1e9  # per core, until `tessera benchmark` has measured this host
MIN_CPU_LIMIT_SECONDS = 300
CPU_LIMIT_FACTOR = 20.0  # a task may use this many times its estimated CPU time
MIN_MEMORY_BYTES = 256 * 1024 * 1024
MEMORY_HEADROOM_BYTES = 256 * 1024 * 1024  # for the interpreter itself, beyond the unit's need
MIN_FILE_BYTES = 64 * 1024 * 1024
PROCESSES_PER_TASK = 16
# Address space per thread beyond the first: its stack (8 MiB by default) and room for the malloc
# arena glibc gives it (reserved 64 MiB at a time; without it malloc falls back to a shared one).
THREAD_ADDRESS_BYTES = 64 * 1024 * 1024
_SLACK = 1e-9  # cores are floats: tasks of 0.1 and 0.2 cores fit in 0.3


def decayed(usage: float, since: float, now: float) -> float:
    """Recent CPU seconds, halved every ``USAGE_HALF_LIFE_SECONDS``."""
    return usage * math.pow(0.5, max(0.0, now - since) / USAGE_HALF_LIFE_SECONDS)


def estimated_seconds(task: Mapping[str, Any], flops: float) -> float:
    return float(task.get("fpops_estimate") or 0.0) / (flops or DEFAULT_FLOPS)


@dataclass(frozen=True)
class Candidate:
    """A task that could start: its project, deadline and estimated CPU seconds."""

    project: str
    replica: int
    deadline: float
    seconds: float


def run_order(
    candidates: Sequence[Candidate], shares: Mapping[str, float], usage: Mapping[str, float]
) -> list[Candidate]:
    """Tasks in the order to start them: always from the project owed most, counting the work
    already picked as used, and earliest deadline first inside a project."""
    waiting: dict[str, list[Candidate]] = {}
    for candidate in sorted(candidates, key=lambda c: (c.deadline, c.replica)):
        waiting.setdefault(candidate.project, []).append(candidate)
    used = {name: max(0.0, usage.get(name, 0.0)) for name in waiting}
    total_share = sum(max(0.0, shares.get(name, 0.0)) for name in waiting) or 1.0
    order = []
    while waiting:
        total_used = sum(used.values()) or 1.0
        name = max(waiting, key=lambda n: (shares.get(n, 0.0) / total_share - used[n] / total_used, n))
        picked = waiting[name].pop(0)
        order.append(picked)
        used[name] += max(picked.seconds, 1.0)
        if not waiting[name]:
            del waiting[name]
    return order


class WorkWanted(TypedDict, total=False):
    """A scheduler request's ask for work: tasks, or seconds of work; neither asks for none."""

    tasks: int
    seconds: float


def work_request(
    *, cpus: int, share: float, buffer_hours: float, queued_tasks: int, queued_seconds: float
) -> WorkWanted:
    """What to ask one project for: its share of the work buffer, less what is queued; at
    least one task per core it is owed when nothing of it is queued at all."""
    if queued_tasks == 0:
        return {"tasks": max(1, round(cpus * share))}
    shortfall = buffer_hours * 3600.0 * cpus * share - queued_seconds
    return {"seconds": shortfall} if shortfall > 1.0 else {}


def task_cores(task: Mapping[str, Any], *, host_cores: float | None = None) -> float:
    """The cores a task occupies: its app version's ``cores`` (1 when absent or not a positive
    number), at most ``host_cores`` (what the volunteer lets the client use), so that a task
    asking for more than the computer has still runs, alone, on all of it."""
    version = task.get("app_version")
    cores = version.get("cores", 1.0) if isinstance(version, Mapping) else 1.0
    if isinstance(cores, bool) or not isinstance(cores, (int, float)) or not 0 < cores < math.inf:
        cores = 1.0
    return float(min(cores, host_cores)) if host_cores is not None and host_cores > 0 else float(cores)


def fits(cores: float, *, in_use: float, host_cores: float) -> bool:
    """Whether a task occupying ``cores`` may start beside running tasks that occupy ``in_use``.

    The tasks running at once never occupy more than ``host_cores``: a computer with 4 runs one
    4-core task or four 1-core tasks. Start tasks in :func:`run_order` and stop at the first that
    does not fit, rather than passing it by, so a multithreaded task is not kept waiting for ever
    by single-core ones that keep taking the cores as they come free.
    """
    return in_use + cores <= host_cores + _SLACK


def task_limits(
    task: Mapping[str, Any], *, flops: float, deadline: float, host_cores: float | None = None
) -> Limits:
    """The sandbox's limits for one task, from what the unit says it needs (docs/apps.md).

    A task on N cores (:func:`task_cores`) may use N times the CPU time, since RLIMIT_CPU counts
    every thread, and N more processes (threads, on Linux).
    """
    cores = task_cores(task, host_cores=host_cores)
    threads = whole_cores(cores)
    cpu_seconds = max(MIN_CPU_LIMIT_SECONDS, CPU_LIMIT_FACTOR * estimated_seconds(task, flops))
    memory = max(int(task.get("memory_bytes") or 0), MIN_MEMORY_BYTES) + MEMORY_HEADROOM_BYTES
    return Limits(
        cpu_seconds=int(threads * cpu_seconds),
        memory_bytes=memory + (threads - 1) * THREAD_ADDRESS_BYTES,
        file_bytes=max(4 * int(task.get("max_output_bytes") or 0), MIN_FILE_BYTES),
        processes=PROCESSES_PER_TASK + (threads if threads > 1 else 0),
        wall_deadline=deadline,
        cores=cores,
    )
