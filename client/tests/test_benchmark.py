"""The host benchmark: bounded in time, positive and finite, steady from one run to the next."""

from __future__ import annotations

import math
import time

from tessera_client.benchmark import _float_passes, _int_passes, measure_flops, measure_iops, run_benchmark


def test_the_benchmark_gives_finite_positive_figures_in_bounded_time():
    started = time.perf_counter()
    figures = run_benchmark(0.2)
    elapsed = time.perf_counter() - started

    assert set(figures) == {"flops", "iops", "seconds"}
    assert all(math.isfinite(figures[k]) and figures[k] > 0 for k in figures)
    assert elapsed < 3.0  # a bound on the time budget, not a speed test
    assert figures["seconds"] <= elapsed


def test_a_zero_budget_still_measures_once():
    figures = run_benchmark(0.0)

    assert figures["flops"] > 0 and figures["iops"] > 0 and math.isfinite(figures["flops"])


def test_two_measurements_agree_in_order_of_magnitude():
    flops = measure_flops(0.1), measure_flops(0.1)
    iops = measure_iops(0.1), measure_iops(0.1)

    assert 0.1 < flops[0] / flops[1] < 10
    assert 0.1 < iops[0] / iops[1] < 10


def test_the_loops_stay_in_ordinary_numbers():
    # Ever-growing integers would measure big-number arithmetic; floats shrinking to subnormal
    # numbers would measure a slow path of the processor. Neither is what an app does.
    assert 0 <= _int_passes(200_000) < 3 * 2**17
    total = _float_passes(200_000)
    assert math.isfinite(total) and abs(total) > 1e-3
