"""How fast this computer runs Python apps, as BOINC's Whetstone and Dhrystone measure a host.

Our apps are Python, so the figure that sizes their work and their credit claims is what a
pure-Python loop achieves on one core, not the hardware's peak.
"""

from __future__ import annotations

import time
from typing import Any

# Operations in one pass of each loop body below, counted by hand.
FLOAT_OPS_PER_PASS = 8
INT_OPS_PER_PASS = 8


def _float_passes(passes: int) -> float:
    x, y, z = 1.0, 0.5, 0.75
    for _ in range(passes):
        x = (x + y) * 0.5  # 2
        y = (y * z) + 0.25  # 2
        z = (x - z) * 0.999 + y  # 3
        x = x / 1.0001  # 1
    return x + y + z


def _int_passes(passes: int) -> int:
    a, b, c = 1, 3, 7
    for i in range(passes):
        a = (a + b) & 0xFFFF  # 2
        b = (b * 3) ^ c  # 2
        c = (c + i) % 65521  # 2
        a = a - (b >> 3)  # 2
    return a + b + c


def _rate(body: Any, ops_per_pass: int, seconds: float) -> float:
    """Passes per second of ``body``, in chunks that grow until one takes a tenth of the budget."""
    chunk, passes, spent = 1000, 0, 0.0
    while spent < seconds:
        started = time.perf_counter()
        body(chunk)
        elapsed = time.perf_counter() - started
        passes, spent = passes + chunk, spent + elapsed
        if elapsed < seconds / 10:
            chunk *= 2
    return passes * ops_per_pass / spent


def measure_flops(seconds: float = 2.0) -> float:
    """Floating-point operations per second on one core."""
    return _rate(_float_passes, FLOAT_OPS_PER_PASS, seconds)


def measure_iops(seconds: float = 2.0) -> float:
    """Integer operations per second on one core."""
    return _rate(_int_passes, INT_OPS_PER_PASS, seconds)


def run_benchmark(seconds: float = 2.0) -> dict[str, float]:
    started = time.perf_counter()
    flops, iops = measure_flops(seconds / 2), measure_iops(seconds / 2)
    return {"flops": flops, "iops": iops, "seconds": time.perf_counter() - started}
