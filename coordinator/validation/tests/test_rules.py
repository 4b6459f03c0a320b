"""The validator's pure rules: comparison, quorum, credit, RAC, reputation."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.validation import credit
from coordinator.validation.compare import (
    CompareMode,
    CompareRule,
    UnreadableOutput,
    parse_output,
    values_agree,
)
from coordinator.validation.quorum import Candidate, find_quorum, judge_against
from coordinator.validation.reputation import (
    SPOT_CHECK_FLOOR,
    TRUST_AFTER_CONSECUTIVE_VALID,
    Establishment,
    Event,
    Reputation,
    after,
    is_established,
    is_trusted,
    quota_after,
    send_single,
    spot_check_chance,
)

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


# --- credit ----------------------------------------------------------------------------


def test_a_day_on_the_reference_machine_is_200_cobblestones():
    assert credit.credit_for_flops(1e9 * 86_400) == pytest.approx(200.0)


def test_a_claim_is_measured_work_capped_at_a_few_times_the_estimate():
    day = 1e9 * 86_400
    assert credit.claimed_credit(fpops_estimate=day, host_flops=0, cpu_time=0) == pytest.approx(200)
    assert credit.claimed_credit(fpops_estimate=day, host_flops=2e9, cpu_time=43_200) == pytest.approx(200)
    assert credit.claimed_credit(fpops_estimate=day, host_flops=1e15, cpu_time=86_400) == pytest.approx(
        200 * credit.CLAIM_CAP_FACTOR
    )


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=7), st.floats(1e6, 1e12))
def test_one_high_claim_cannot_raise_the_grant(claims, inflated):
    honest = credit.granted_credit(claims)
    assert credit.granted_credit([*claims, inflated]) <= max(claims) + 1e-9
    if len(claims) <= 1:
        assert credit.granted_credit([*claims, inflated]) == pytest.approx(honest)


def test_steady_credit_makes_a_rac_equal_to_the_daily_rate():
    rac, rac_time = 0.0, None
    for day in range(120):
        moment = T0 + timedelta(days=day)
        rac = credit.rac_after_grant(rac, rac_time, 100.0, moment)
        rac_time = moment
    assert rac == pytest.approx(100.0, rel=0.06)
    assert credit.rac_now(rac, rac_time, rac_time + timedelta(days=7)) == pytest.approx(rac / 2)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=1e-3, max_value=1e6),
    st.floats(min_value=1e-3, max_value=1e6),
    st.integers(min_value=0, max_value=60 * 86_400),
    st.integers(min_value=0, max_value=60 * 86_400),
)
def test_the_rank_key_orders_rows_as_their_rac_at_any_common_moment(rac_a, rac_b, age_a, age_b):
    time_a, time_b = T0 + timedelta(seconds=age_a), T0 + timedelta(seconds=age_b)
    later = T0 + timedelta(days=90)
    now_a, now_b = credit.rac_now(rac_a, time_a, later), credit.rac_now(rac_b, time_b, later)
    if not math.isclose(now_a, now_b, rel_tol=1e-9):
        assert (credit.rac_rank_key(rac_a, time_a) > credit.rac_rank_key(rac_b, time_b)) == (now_a > now_b)


# --- reputation ------------------------------------------------------------------------


def test_only_results_an_established_unrelated_host_agreed_with_earn_trust():
    reputation = Reputation()
    for _ in range(3 * TRUST_AFTER_CONSECUTIVE_VALID):
        reputation = after(reputation, Event.VALID)
        reputation = after(reputation, Event.VALID_INDEPENDENT)
    assert not is_trusted(reputation), "agreement with related or new hosts is laundered trust"
    assert reputation.valid == 6 * TRUST_AFTER_CONSECUTIVE_VALID and reputation.consecutive_valid == 0
    for _ in range(TRUST_AFTER_CONSECUTIVE_VALID - 1):
        reputation = after(reputation, Event.VALID_CONFIRMED)
    assert not is_trusted(reputation)
    reputation = after(reputation, Event.VALID_CONFIRMED)
    assert is_trusted(reputation)
    assert not is_trusted(after(reputation, Event.INVALID))
    assert not is_trusted(after(reputation, Event.ERROR))


def test_trusted_hosts_are_spot_checked_one_in_consecutive_valid_but_never_below_the_floor():
    fresh_trust = Reputation(consecutive_valid=TRUST_AFTER_CONSECUTIVE_VALID, valid=10)
    old_trust = Reputation(consecutive_valid=10_000, valid=10_000)
    assert spot_check_chance(fresh_trust) == max(SPOT_CHECK_FLOOR, 1 / TRUST_AFTER_CONSECUTIVE_VALID)
    assert spot_check_chance(old_trust) == SPOT_CHECK_FLOOR
    assert not send_single(old_trust, draw=SPOT_CHECK_FLOOR / 2, established=True)
    assert send_single(old_trust, draw=SPOT_CHECK_FLOOR, established=True)
    assert not send_single(old_trust, draw=0.99, established=False), "a new host never runs a unit alone"
    assert not send_single(Reputation(), draw=0.99, established=True)
    rng = random.Random(7)
    spot_checked = sum(not send_single(old_trust, draw=rng.random(), established=True) for _ in range(20_000))
    assert 0.08 < spot_checked / 20_000 < 0.12


def test_a_host_is_established_by_age_and_independent_agreement_both():
    rule = Establishment(min_age_seconds=86_400, min_independent_valid=10)
    assert is_established(age_seconds=86_400, independent_valid=10, rule=rule)
    assert not is_established(age_seconds=86_399, independent_valid=1000, rule=rule)
    assert not is_established(age_seconds=10**8, independent_valid=9, rule=rule)


def test_the_quota_doubles_on_valid_loses_one_on_error_and_drops_to_one_when_caught():
    assert quota_after(100, Event.INVALID, cap=1000) == 1
    assert quota_after(100, Event.ERROR, cap=1000) == 99
    assert quota_after(1, Event.ERROR, cap=1000) == 1
    assert quota_after(50, Event.VALID, cap=1000) == 100
    assert quota_after(50, Event.VALID_CONFIRMED, cap=1000) == 100
    assert quota_after(800, Event.VALID, cap=1000) == 1000


def test_a_claim_counts_no_more_cpu_time_than_the_task_was_held_on_every_core():
    assert credit.plausible_cpu_time(cpu_time=3600, wall_seconds=600, n_cpus=4) == 2400
    assert credit.plausible_cpu_time(cpu_time=100, wall_seconds=600, n_cpus=4) == 100
    assert credit.plausible_cpu_time(cpu_time=100, wall_seconds=-5, n_cpus=4) == 0


def test_the_grant_cap_is_the_estimate_times_the_apps_typical_claim_never_above_the_claim_cap():
    estimate = credit.credit_for_flops(1e12)
    assert credit.grant_cap(fpops_estimate=1e12, credit_ratio=1.0) == estimate
    assert credit.grant_cap(fpops_estimate=1e12, credit_ratio=0.5) == estimate / 2
    assert credit.grant_cap(fpops_estimate=1e12, credit_ratio=100.0) == credit.CLAIM_CAP_FACTOR * estimate
    assert credit.grant_cap(fpops_estimate=1e12, credit_ratio=-1.0) == 0.0
    assert credit.median([3.0, 1.0, 2.0]) == 2.0 and credit.median([1.0, 2.0]) == 1.5
