"""Back-off: exponential with full jitter while a project fails, its own pace when it answers."""

from __future__ import annotations

import random

from tessera_client.backoff import Backoff


def test_delays_grow_within_the_doubling_ceiling_and_stop_at_the_cap():
    backoff = Backoff(base=60, cap=3600, rng=random.Random(7))

    delays = [backoff.failed(now=0.0) for _ in range(10)]

    for failures, delay in enumerate(delays, start=1):
        assert 0 <= delay <= min(3600, 60 * 2 ** (failures - 1))
    assert max(delays[6:]) > 600  # the ceiling really grew
    assert backoff.failures == 10 and not backoff.ready(delays[-1] - 1)


def test_jitter_spreads_clients_that_failed_together():
    delays = [Backoff(base=60, rng=random.Random(seed)).failed(now=0.0) for seed in range(50)]

    assert max(delays) - min(delays) > 45  # spread over most of the first minute
    assert len({round(d, 3) for d in delays}) == 50


def test_retry_after_is_never_undercut():
    backoff = Backoff(base=1, cap=3600, rng=random.Random(1))

    assert backoff.failed(now=100.0, retry_after=120) >= 120
    assert not backoff.ready(219.0) and backoff.ready(220.0)


def test_an_answer_resets_the_failures_and_sets_the_coordinator_pace():
    backoff = Backoff(base=60, rng=random.Random(3))
    backoff.failed(now=0.0)

    backoff.succeeded(now=10.0, next_rpc_seconds=300)

    assert backoff.failures == 0 and backoff.next_time == 310.0


def test_it_survives_a_restart_and_shrugs_off_a_damaged_copy():
    backoff = Backoff(base=60, rng=random.Random(3))
    backoff.failed(now=0.0)

    again = Backoff.from_json(backoff.to_json(), base=60)

    assert (again.failures, again.next_time) == (1, backoff.next_time)
    assert Backoff.from_json({"failures": "many", "next_time": None}).failures == 0
