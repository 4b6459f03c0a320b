"""The standing's pure rules: credit, RAC, reputation, quota."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.standing import credit
from coordinator.standing.reputation import (
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
