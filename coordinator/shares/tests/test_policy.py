"""Fair share as pure functions (``shares.policy``): the order shares are served in, and that
serving the first one again and again gives every share its weight's part."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.shares.policy import Standing, rank, share_error, small_batch_bound, targets


def test_the_least_used_for_its_weight_goes_first_and_the_projects_own_work_before_any():
    standings = [
        Standing(1, weight=100, used=50.0),  # 0.5 per weight
        Standing(2, weight=300, used=90.0),  # 0.3
        Standing(None, weight=1, used=0.0),
        Standing(3, weight=100, used=30.0),  # 0.3, ties with 2: by id
    ]

    assert rank(standings) == [None, 2, 3, 1]


def test_a_share_of_weight_zero_is_served_only_after_every_weighted_one():
    assert rank([Standing(1, weight=0, used=0.0), Standing(2, weight=1, used=1e18)]) == [2, 1]
    assert rank([Standing(1, weight=0, used=5.0), Standing(3, weight=0, used=1.0)]) == [3, 1]


def test_targets_and_the_error_in_points():
    assert targets({1: 100, 2: 300}) == {1: 0.25, 2: 0.75}
    assert targets({1: 0, 2: 0}) == {1: 0.5, 2: 0.5}
    assert share_error({1: 30.0, 2: 70.0}, {1: 1, 2: 3}) == pytest.approx(0.05)
    assert share_error({}, {1: 1}) == 0.0


def serve(weights: dict[int, int], sizes: dict[int, float], steps: int) -> dict[int, float]:
    """Every step sends one unit of the first share in rank order and charges it."""
    used = {share_id: 0.0 for share_id in weights}
    for _ in range(steps):
        first = rank(Standing(s, weights[s], used[s]) for s in weights)[0]
        assert first is not None
        used[first] += sizes[first]
    return used


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(1, 1000), min_size=2, max_size=6),
    sizes=st.lists(st.floats(1.0, 20.0), min_size=6, max_size=6),
)
def test_serving_the_first_in_rank_gives_each_share_its_weights_part(weights, sizes):
    shares = dict(enumerate(weights, start=1))
    used = serve(shares, dict(enumerate(sizes, start=1)), steps=4000)

    # Each share is at most one unit behind its part: the error shrinks as work is sent.
    assert share_error(used, shares) <= 20.0 * len(shares) / sum(used.values()) + 1e-9


def test_a_new_share_gets_its_small_batch_out_within_the_bound():
    # A huge share has been served for a while; a new share with 100 replicas arrives.
    weights = {1: 100, 2: 100}
    used = {1: 5000.0, 2: 0.0}
    waiting = {1: 10**9, 2: 100}
    sent = 0
    while waiting[2]:
        first = rank(Standing(s, weights[s], used[s]) for s in weights if waiting[s])[0]
        assert first is not None
        used[first] += 1.0
        waiting[first] -= 1
        sent += 1

    assert sent <= small_batch_bound(replicas=100, weight=100, active_weights=200) == 200
