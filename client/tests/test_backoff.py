"""Back-off: exponential with full jitter while a project fails, its own pace when it answers."""

from __future__ import annotations

import json
import random

import pytest

from tessera_client.backoff import Backoff


def test_delays_stay_under_the_doubling_ceiling_and_the_cap():
    for seed in range(20):
        backoff = Backoff(base=60, cap=3600, rng=random.Random(seed))
        for failures in range(1, 16):
            delay = backoff.failed(now=1000.0)
            assert 0 <= delay <= min(3600, 60 * 2 ** (failures - 1))
            assert backoff.next_time == 1000.0 + delay and backoff.failures == failures


def test_delays_grow_with_the_failures():
    runs = [Backoff(base=60, cap=3600, rng=random.Random(seed)) for seed in range(200)]
    by_failure = [[backoff.failed(now=0.0) for backoff in runs] for _ in range(8)]
    means = [sum(delays) / len(delays) for delays in by_failure]

    assert all(later > earlier for earlier, later in zip(means[:6], means[1:7]))
    assert means[0] < 60 < max(by_failure[7])  # the ceiling really grew past the base
    assert max(by_failure[7]) <= 3600


def test_jitter_spreads_clients_that_failed_together():
    delays = [Backoff(base=60, rng=random.Random(seed)).failed(now=0.0) for seed in range(50)]

    assert max(delays) - min(delays) > 45  # spread over most of the first minute
    assert len({round(d, 3) for d in delays}) == 50


def test_retry_after_is_never_undercut():
    backoff = Backoff(base=1, cap=3600, rng=random.Random(1))

    assert backoff.failed(now=100.0, retry_after=120) >= 120
    assert not backoff.ready(219.0) and backoff.ready(220.0)
    for seed in range(20):
        assert Backoff(base=600, rng=random.Random(seed)).failed(now=0.0, retry_after=300) >= 300


def test_retry_after_is_held_to_the_cap_and_nonsense_ignored():
    assert Backoff(base=1, cap=3600, rng=random.Random(2)).failed(now=0.0, retry_after=10**9) == 3600
    for nonsense in (float("nan"), float("-inf"), -50, "soon"):
        delay = Backoff(base=10, rng=random.Random(2)).failed(now=0.0, retry_after=nonsense)  # type: ignore[arg-type]
        assert 0 <= delay <= 10


def test_an_answer_resets_the_failures_and_sets_the_coordinator_pace():
    backoff = Backoff(base=60, cap=3600, rng=random.Random(3))
    for _ in range(6):
        backoff.failed(now=0.0)

    backoff.succeeded(now=10.0, next_rpc_seconds=300)

    assert backoff.failures == 0 and backoff.next_time == 310.0
    assert not backoff.ready(309.9) and backoff.ready(310.0)
    assert backoff.failed(now=400.0) <= 60  # the next failure starts from the base again


def test_next_rpc_seconds_from_the_network_is_kept_sensible():
    backoff = Backoff(base=60, cap=3600, rng=random.Random(3))

    backoff.succeeded(now=10.0)
    assert backoff.ready(10.0)
    backoff.succeeded(now=10.0, next_rpc_seconds=10**9)
    assert backoff.next_time == 3610.0
    for nonsense in (float("nan"), -5, None):
        backoff.succeeded(now=10.0, next_rpc_seconds=nonsense)  # type: ignore[arg-type]
        assert backoff.next_time == 10.0


def test_a_clock_set_back_does_not_park_the_client():
    backoff = Backoff(base=60, cap=3600, rng=random.Random(3))
    backoff.succeeded(now=1_000_000.0, next_rpc_seconds=600)

    assert not backoff.ready(0.0)  # the clock jumped back by days
    assert backoff.ready(3600.0)


def test_it_survives_a_restart_through_json():
    backoff = Backoff(base=60, rng=random.Random(3))
    backoff.failed(now=0.0)
    backoff.failed(now=0.0)

    again = Backoff.from_json(json.loads(json.dumps(backoff.to_json())), base=60)

    assert (again.failures, again.next_time) == (2, backoff.next_time)


@pytest.mark.parametrize(
    "damaged",
    [
        {"failures": "many", "next_time": None},
        {"failures": 3, "next_time": float("inf")},
        {"failures": 3, "next_time": float("nan")},
        ["not", "a", "dict"],
        None,
    ],
)
def test_a_damaged_copy_starts_afresh(damaged):
    backoff = Backoff.from_json(damaged, base=60)

    assert (backoff.failures, backoff.next_time) == (0, 0.0)
    assert backoff.ready(0.0)
