"""The fuel rules, pure: a wasm unit's fuel is settled like a vote among agreeing replicas."""

from __future__ import annotations

from coordinator.validation import fuel
from coordinator.validation.quorum import Verdict


def settle(claims: dict[int, int | None], **options):
    options.setdefault("deterministic", True)
    return fuel.settle(claims, **options)


def test_equal_claims_settle_and_everyone_is_credited_for_them():
    judged = settle({1: 500, 2: 500})

    assert (judged.settled, judged.inflated, judged.credited) == (500, (), {1: 500, 2: 500})


def test_an_inflated_claim_is_out_voted_and_named():
    judged = settle({1: 500, 2: 900, 3: 500})

    assert (judged.settled, judged.inflated) == (500, (2,))
    assert judged.credited == {1: 500, 3: 500}


def test_a_lower_claim_only_lowers_its_own_credit():
    judged = settle({1: 500, 2: 100, 3: 500})

    assert (judged.settled, judged.inflated) == (500, ())
    assert judged.credited == {1: 500, 2: 100, 3: 500}


def test_two_replicas_that_disagree_settle_nothing():
    judged = settle({1: 500, 2: 900})

    assert judged.settled is None and judged.credited == {}


def test_a_tie_between_two_pairs_goes_to_the_lower_fuel():
    assert settle({1: 500, 2: 500, 3: 900, 4: 900}).settled == 500


def test_when_claims_differ_only_a_group_with_an_established_host_settles_them():
    colluders = {1, 2}

    judged = settle({1: 900, 2: 900, 3: 500}, vouched=lambda ids: not set(ids) <= colluders)

    assert judged.settled is None, "two colluders alone cannot settle on their own fuel"
    unanimous = settle({1: 900, 2: 900}, vouched=lambda ids: False)
    assert unanimous.settled == 900, "agreement needs no voucher, as for outputs"


def test_a_claim_past_the_bound_is_inflated_and_a_missing_one_counts_as_nothing():
    judged = settle({1: 500, 2: 500, 3: 10**12, 4: None}, bound=1000)

    assert judged.settled == 500
    assert judged.inflated == (3,)
    assert judged.credited == {1: 500, 2: 500, 4: 0}


def test_a_unit_settled_before_judges_a_late_claim_against_its_fuel():
    assert settle({7: 900}, known=500).inflated == (7,)
    assert settle({7: 400}, known=500).credited == {7: 400}


def test_a_non_deterministic_module_is_credited_for_the_lowest_claim():
    judged = settle({1: 520, 2: 480, 3: 510}, deterministic=False)

    assert (judged.settled, judged.inflated) == (480, ())
    assert judged.credited == {1: 480, 2: 480, 3: 480}


def test_inflated_replicas_become_invalid_and_the_canonical_one_has_the_settled_fuel():
    verdict = Verdict(canonical=2, valid=(2, 1, 3))
    claims: dict[int, int | None] = {1: 500, 2: 900, 3: 500}

    amended = fuel.apply(verdict, settle(claims), claims)

    assert amended == Verdict(canonical=1, valid=(1, 3), invalid=(2,))


def test_unsettled_fuel_leaves_every_agreeing_replica_inconclusive():
    verdict = Verdict(canonical=1, valid=(1, 2))
    claims: dict[int, int | None] = {1: 500, 2: 900}

    amended = fuel.apply(verdict, settle(claims), claims)

    assert amended == Verdict(canonical=None, inconclusive=(1, 2))


def test_a_late_inflated_claim_leaves_the_canonical_replica_alone():
    verdict = Verdict(canonical=1, valid=(5,))
    claims: dict[int, int | None] = {5: 900}

    amended = fuel.apply(verdict, settle(claims, known=500), claims)

    assert amended == Verdict(canonical=1, valid=(), invalid=(5,))
