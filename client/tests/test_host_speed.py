"""The host benchmark: bounded in time, positive, and steady from one run to the next."""

from __future__ import annotations

import math
import time

from tessera_client.benchmark import measure_flops, measure_iops, run_benchmark


def test_the_benchmark_gives_finite_positive_figures_in_bounded_time():
    started = time.perf_counter()
    figures = run_benchmark(0.2)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    assert all(math.isfinite(figures[k]) and figures[k] > 0 for k in ("flops", "iops", "seconds"))


def test_two_measurements_agree_in_order_of_magnitude():
    first, second = measure_flops(0.1), measure_flops(0.1)

    assert 0.1 < first / second < 10
    assert measure_iops(0.1) > 0
