"""The validator's pure rules: comparison and quorum (credit and reputation: standing)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.validation.compare import (
    CompareMode,
    CompareRule,
    UnreadableOutput,
    parse_output,
    values_agree,
)
from coordinator.validation.quorum import Candidate, find_quorum, judge_against

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOLERANT = CompareRule(CompareMode.TOLERANCE, abs_tolerance=1e-9, rel_tolerance=1e-6)


def equal(a, b) -> bool:
    return a == b


# --- comparison ------------------------------------------------------------------------


def test_numbers_agree_within_the_tolerance_and_structure_must_match_exactly():
    assert values_agree({"e": 1.0, "xs": [1, 2.0]}, {"e": 1.0000001, "xs": [1, 2.0000001]}, TOLERANT)
    assert not values_agree({"e": 1.0}, {"e": 1.01}, TOLERANT)
    assert not values_agree({"e": 1.0}, {"e": 1.0, "extra": 0}, TOLERANT)
    assert not values_agree([1, 2], [1, 2, 3], TOLERANT)
    assert not values_agree({"label": "a"}, {"label": "b"}, TOLERANT)
    assert not values_agree(True, 1, TOLERANT)
    assert not values_agree("1", 1, TOLERANT)


def test_outputs_that_are_not_json_or_hold_nan_are_unreadable():
    assert parse_output(b'{"x": [1, 2.5]}') == {"x": [1, 2.5]}
    for bad in (b"not json", b'{"x": NaN}', b"\xff\xfe", b'{"x": Infinity}', b"[" * 100_000):
        with pytest.raises(UnreadableOutput):
            parse_output(bad)


# --- quorum ----------------------------------------------------------------------------


def test_two_agreeing_replicas_make_a_quorum_and_the_earliest_is_canonical():
    verdict = find_quorum([Candidate(1, "h"), Candidate(2, "x"), Candidate(3, "h")], 2, equal)

    assert verdict.canonical == 1
    assert verdict.valid == (1, 3) and verdict.invalid == (2,)


def test_without_enough_agreement_every_replica_is_inconclusive():
    verdict = find_quorum([Candidate(1, "a"), Candidate(2, "b")], 2, equal)

    assert verdict.canonical is None and verdict.inconclusive == (1, 2)


def test_the_largest_agreeing_group_wins():
    candidates = [
        Candidate(1, "w"),
        Candidate(2, "w"),
        Candidate(3, "r"),
        Candidate(4, "r"),
        Candidate(5, "r"),
    ]

    verdict = find_quorum(candidates, 2, equal)

    assert verdict.canonical == 3 and set(verdict.valid) == {3, 4, 5}


def test_a_late_replica_is_judged_against_the_canonical_one():
    verdict = judge_against(Candidate(1, "h"), [Candidate(7, "h"), Candidate(8, "x")], equal)

    assert verdict.valid == (7,) and verdict.invalid == (8,)


@settings(max_examples=300, deadline=None)
@given(
    honest=st.integers(min_value=2, max_value=5),
    cheaters=st.integers(min_value=0, max_value=5),
    quorum=st.integers(min_value=2, max_value=3),
    seed=st.integers(),
)
def test_random_wrong_outputs_never_become_canonical_while_honest_replicas_agree(
    honest, cheaters, quorum, seed
):
    rng = random.Random(seed)
    pool = [("honest", "right")] * honest + [("cheater", f"wrong-{rng.random()}") for _ in range(cheaters)]
    rng.shuffle(pool)
    candidates = [Candidate(i, value) for i, (_, value) in enumerate(pool)]
    kind = {i: who for i, (who, _) in enumerate(pool)}

    verdict = find_quorum(candidates, quorum, equal)

    if honest >= quorum:
        assert verdict.canonical is not None and kind[verdict.canonical] == "honest"
    if verdict.canonical is not None:
        assert all(kind[i] == "honest" for i in verdict.valid)
        assert all(kind[i] == "cheater" for i in verdict.invalid)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=7), st.integers(1, 4))
def test_a_quorum_is_mutually_agreeing_and_every_candidate_is_judged_once(values, quorum):
    candidates = [Candidate(i, v) for i, v in enumerate(values)]
    verdict = find_quorum(candidates, quorum, equal)

    judged = verdict.valid + verdict.invalid + verdict.inconclusive
    assert sorted(judged) == list(range(len(values)))
    if verdict.canonical is not None:
        assert len(verdict.valid) >= quorum
        assert len({values[i] for i in verdict.valid}) == 1
