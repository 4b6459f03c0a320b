"""How fast this computer runs Python apps, as BOINC's Whetstone and Dhrystone measure a host.

Our apps are Python, so the figure that sizes their work and their credit claims is what a
pure-Python loop achieves on one core, not the hardware's peak. Only arithmetic operations
are counted (not the loop's own bookkeeping), so the figures err on the low side.
"""

from __future__ import annotations

import time
from typing import Callable

# Whetstone's module 1 ("simple identifiers"): T keeps the values from growing. They still
# shrink towards zero, slowly, so each block of passes starts again from the same values,
# as Whetstone restarts each module; the values never reach subnormal numbers, which some
# processors handle far more slowly.
WHETSTONE_T = 0.499975
BLOCK = 1000  # passes between restarts; the measuring chunks are whole blocks
FLOAT_OPS_PER_PASS = 16  # counted by hand below: four lines of three additions and a multiply
INT_OPS_PER_PASS = 9


def _float_passes(passes: int) -> float:
    t = WHETSTONE_T
    total = 0.0
    for _ in range(max(1, passes // BLOCK)):
        x1, x2, x3, x4 = 1.0, -1.0, -1.0, -1.0
        for _ in range(BLOCK):
            x1 = (x1 + x2 + x3 - x4) * t  # 4
            x2 = (x1 + x2 - x3 + x4) * t  # 4
            x3 = (x1 - x2 + x3 + x4) * t  # 4
            x4 = (x2 - x1 + x3 + x4) * t  # 4 (Whetstone writes -x1 + x2: the same work)
        total += x1 + x2 + x3 + x4  # not counted: once a block
    return total


def _int_passes(passes: int) -> int:
    """Dhrystone-like integer work on values kept below 2**17, so that Python's small-integer
    arithmetic is measured and not the cost of ever-growing big numbers."""
    a, b, c = 1, 3, 7
    for _ in range(max(1, passes // BLOCK) * BLOCK):
        a = (a + b) & 0xFFFF  # 2
        b = (b * 3 + c) % 65521  # 3
        c = ((c ^ a) + (b >> 3)) & 0xFFFF  # 4
    return a + b + c


def _rate(body: Callable[[int], object], ops_per_pass: int, seconds: float) -> float:
    """Operations per CPU second of ``body`` on this thread, for about ``seconds`` of wall time.

    Chunks double until one takes a tenth of the budget, so the clock is read rarely and the
    run ends at most a fifth of the budget late. The rate is per CPU second (not per wall
    second) because credit claims and run-time estimates multiply it by CPU time; a busy
    computer then gives the same figure as an idle one.
    """
    chunk, passes, wall, cpu = BLOCK, 0, 0.0, 0.0
    while True:
        started, cpu_started = time.perf_counter(), time.thread_time()
        body(chunk)
        elapsed = time.perf_counter() - started
        passes, wall, cpu = passes + chunk, wall + elapsed, cpu + time.thread_time() - cpu_started
        if wall >= seconds:
            break
        if elapsed < seconds / 10:
            chunk *= 2
    return passes * ops_per_pass / (cpu if cpu > 0 else wall)


def measure_flops(seconds: float = 2.0) -> float:
    """Floating-point operations per second on one core."""
    return _rate(_float_passes, FLOAT_OPS_PER_PASS, seconds)


def measure_iops(seconds: float = 2.0) -> float:
    """Integer operations per second on one core."""
    return _rate(_int_passes, INT_OPS_PER_PASS, seconds)


def run_benchmark(seconds: float = 2.0) -> dict[str, float]:
    """Both figures, half the time each: {"flops", "iops", "seconds" (wall time taken)}."""
    started = time.perf_counter()
    flops, iops = measure_flops(seconds / 2), measure_iops(seconds / 2)
    return {"flops": flops, "iops": iops, "seconds": time.perf_counter() - started}
