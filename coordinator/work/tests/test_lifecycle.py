"""The pure work-unit lifecycle, one behaviour per test (BOINC's transitioner rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coordinator.work.lifecycle import (
    FailureReason,
    Outcome,
    Policy,
    ReplicaState,
    ReplicaView,
    Transition,
    UnitState,
    UnitView,
    ValidateState,
    settled_state,
    transition,
)

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def policy(
    min_quorum: int = 2,
    target_nresults: int = 2,
    max_error_results: int = 3,
    max_total_results: int = 6,
    delay_bound: int = 3600,
) -> Policy:
    """The coordinator's default policy unless a test says otherwise."""
    return Policy(min_quorum, target_nresults, max_error_results, max_total_results, delay_bound)


def unit(state: UnitState = UnitState.ACTIVE, has_canonical: bool = False, **policy_fields: int) -> UnitView:
    """A unit with the default policy; pass has_canonical to give it a canonical replica."""
    return UnitView(id=1, policy=policy(**policy_fields), state=state, has_canonical=has_canonical)


def done_unit(**policy_fields: int) -> UnitView:
    """A unit the validator has given a canonical replica."""
    return unit(UnitState.DONE, has_canonical=True, **policy_fields)


def unsent(rid: int) -> ReplicaView:
    return ReplicaView(rid, ReplicaState.UNSENT)


def out(rid: int, deadline: datetime = NOW + HOUR) -> ReplicaView:
    """A replica a host holds, due at ``deadline``."""
    return ReplicaView(rid, ReplicaState.IN_PROGRESS, deadline=deadline)


def success(rid: int, validate_state: ValidateState = ValidateState.INIT) -> ReplicaView:
    return ReplicaView(rid, ReplicaState.OVER, Outcome.SUCCESS, validate_state)


def over(rid: int, outcome: Outcome) -> ReplicaView:
    """A finished replica that did not succeed (error, no reply, not needed)."""
    validate_state = ValidateState.INVALID if outcome is Outcome.VALIDATE_ERROR else ValidateState.INIT
    return ReplicaView(rid, ReplicaState.OVER, outcome, validate_state)


# --- creating replicas -------------------------------------------------------------------


def test_a_fresh_unit_asks_for_its_target_replicas():
    result = transition(unit(target_nresults=3, min_quorum=2), [], NOW)

    assert result == Transition(create_replicas=3)


def test_a_unit_with_its_target_replicas_out_asks_for_nothing():
    result = transition(unit(), [unsent(1), out(2)], NOW)

    assert not result.changes_replicas
    assert (result.need_validate, result.failure) == (False, None)


def test_a_unit_tops_up_to_its_target_counting_successes_and_pending():
    result = transition(unit(target_nresults=4, min_quorum=2), [success(1), out(2)], NOW)

    assert result.create_replicas == 2


# --- timeouts and errors ---------------------------------------------------------------


def test_a_replica_past_its_deadline_times_out_as_no_reply_and_is_reissued():
    result = transition(unit(), [out(1, NOW - timedelta(seconds=1)), out(2)], NOW)

    assert result.timed_out == (1,)
    assert result.create_replicas == 1
    assert result.failure is None


def test_a_replica_times_out_at_its_deadline_and_not_a_second_before():
    before = transition(unit(), [out(1, NOW + timedelta(seconds=1)), out(2)], NOW)
    at = transition(unit(), [out(1, NOW), out(2)], NOW)

    assert (before.timed_out, before.create_replicas) == ((), 0)
    assert (at.timed_out, at.create_replicas) == ((1,), 1)


def test_an_unsent_replica_never_times_out():
    result = transition(unit(), [unsent(1), unsent(2)], NOW + 1000 * HOUR)

    assert result == Transition()


def test_a_client_error_is_reissued():
    result = transition(unit(), [over(1, Outcome.CLIENT_ERROR), out(2)], NOW)

    assert result.create_replicas == 1
    assert result.failure is None


def test_a_validate_error_is_reissued_and_counts_as_an_error():
    replicas = [over(1, Outcome.VALIDATE_ERROR), out(2)]

    assert transition(unit(max_error_results=1), replicas, NOW).create_replicas == 1
    assert transition(unit(max_error_results=0), replicas, NOW).failure is FailureReason.TOO_MANY_ERRORS


def test_an_invalid_success_is_replaced_but_is_not_an_error():
    replicas = [success(1, ValidateState.INVALID), success(2)]

    result = transition(unit(max_error_results=0), replicas, NOW)

    assert (result.create_replicas, result.failure) == (1, None)


# --- validation -------------------------------------------------------------------------


def test_a_quorum_of_unchecked_successes_needs_validation():
    result = transition(unit(), [success(1), success(2)], NOW)

    assert result.need_validate
    assert not result.changes_replicas


def test_successes_below_the_quorum_do_not_need_validation():
    result = transition(unit(min_quorum=2), [success(1), out(2)], NOW)

    assert not result.need_validate


def test_a_single_replica_policy_validates_its_one_success():
    result = transition(unit(min_quorum=1, target_nresults=1), [success(1)], NOW)

    assert result.need_validate and result.create_replicas == 0


def test_successes_the_validator_already_judged_do_not_need_validation_again():
    replicas = [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE), out(3)]

    result = transition(unit(), replicas, NOW)

    assert not result.need_validate


def test_inconclusive_results_ask_for_one_more_replica():
    replicas = [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE)]

    result = transition(unit(min_quorum=2, target_nresults=2), replicas, NOW)

    assert result.create_replicas == 1
    assert not result.need_validate


def test_inconclusive_results_with_the_extra_replica_out_ask_for_nothing_more():
    replicas = [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE), unsent(3)]

    result = transition(unit(), replicas, NOW)

    assert result == Transition()


def test_an_inconclusive_result_below_the_target_keeps_the_target():
    replicas = [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE)]

    result = transition(unit(min_quorum=2, target_nresults=4, max_total_results=8), replicas, NOW)

    assert result.create_replicas == 2


def test_a_success_arriving_while_others_are_inconclusive_waits_for_the_validator():
    replicas = [
        success(1, ValidateState.INCONCLUSIVE),
        success(2, ValidateState.INCONCLUSIVE),
        success(3),  # the replica issued for the disagreement, just reported
    ]

    result = transition(unit(min_quorum=2, target_nresults=2, max_total_results=6), replicas, NOW)

    assert result.need_validate
    assert result.create_replicas == 0, "replica 3 may settle the quorum; issue more only if it does not"


# --- giving up ----------------------------------------------------------------------------


def test_too_many_errors_fail_the_unit_with_the_reason_and_cancel_unsent():
    replicas = [over(1, Outcome.CLIENT_ERROR), over(2, Outcome.NO_REPLY), unsent(3), out(4)]

    result = transition(unit(max_error_results=1), replicas, NOW)

    assert result.failure is FailureReason.TOO_MANY_ERRORS
    assert result.not_needed == (3,)
    assert result.create_replicas == 0
    assert result.timed_out == (), "the replica still out keeps its deadline"
    assert result.next_transition == NOW + HOUR


def test_errors_at_the_limit_are_still_reissued():
    replicas = [over(1, Outcome.CLIENT_ERROR), over(2, Outcome.CLIENT_ERROR), out(3)]

    result = transition(unit(max_error_results=2), replicas, NOW)

    assert (result.failure, result.create_replicas) == (None, 1)


def test_timeouts_found_now_count_towards_the_error_limit():
    replicas = [over(1, Outcome.CLIENT_ERROR), out(2, NOW - HOUR), unsent(3)]

    result = transition(unit(max_error_results=1), replicas, NOW)

    assert result.failure is FailureReason.TOO_MANY_ERRORS
    assert (result.timed_out, result.not_needed) == ((2,), (3,))


def test_the_total_limit_fails_the_unit_when_nothing_is_pending():
    replicas = [success(1), over(2, Outcome.CLIENT_ERROR), over(3, Outcome.CLIENT_ERROR)]

    result = transition(unit(max_total_results=3, max_error_results=5), replicas, NOW)

    assert result.failure is FailureReason.TOO_MANY_TOTAL
    assert result.create_replicas == 0


def test_the_total_limit_waits_while_a_replica_is_pending():
    replicas = [over(1, Outcome.CLIENT_ERROR), over(2, Outcome.CLIENT_ERROR), out(3)]

    result = transition(unit(max_total_results=3, max_error_results=5), replicas, NOW)

    assert (result.failure, result.create_replicas) == (None, 0)


def test_the_total_limit_caps_how_many_replicas_are_created():
    replicas = [over(1, Outcome.CLIENT_ERROR), over(2, Outcome.CLIENT_ERROR)]

    result = transition(unit(max_total_results=3, max_error_results=5), replicas, NOW)

    assert (result.failure, result.create_replicas) == (None, 1)


def test_the_total_limit_waits_for_a_pending_validation():
    replicas = [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE), success(3)]

    result = transition(unit(max_total_results=3), replicas, NOW)

    assert result.need_validate
    assert result.failure is None


def test_the_total_limit_fails_once_the_validator_stays_inconclusive():
    replicas = [success(i, ValidateState.INCONCLUSIVE) for i in (1, 2, 3)]

    result = transition(unit(max_total_results=3), replicas, NOW)

    assert result.failure is FailureReason.TOO_MANY_TOTAL


# --- finished units ---------------------------------------------------------------------


def test_a_canonical_unit_cancels_unsent_and_leaves_in_progress_running():
    replicas = [success(1, ValidateState.VALID), success(2, ValidateState.VALID), unsent(3), out(4)]

    result = transition(done_unit(), replicas, NOW)

    assert result.not_needed == (3,)
    assert (result.timed_out, result.create_replicas, result.failure) == ((), 0, None)
    assert result.next_transition == NOW + HOUR


def test_a_canonical_unit_times_out_in_progress_replicas_at_their_deadline():
    replicas = [success(1, ValidateState.VALID), success(2, ValidateState.VALID), out(3, NOW)]

    result = transition(done_unit(), replicas, NOW)

    assert result.timed_out == (3,)
    assert (result.create_replicas, result.failure) == (0, None), "a timeout after canonical is not reissued"


def test_a_canonical_unit_ignores_errors_past_the_limit():
    replicas = [success(1, ValidateState.VALID)] + [over(i, Outcome.CLIENT_ERROR) for i in (2, 3, 4, 5)]

    result = transition(done_unit(max_error_results=1), replicas, NOW)

    assert result == Transition()


def test_a_canonical_replica_finishes_the_unit_even_before_its_state_says_done():
    replicas = [success(1, ValidateState.VALID), over(2, Outcome.CLIENT_ERROR), unsent(3), success(4)]

    result = transition(unit(UnitState.ACTIVE, has_canonical=True, max_error_results=0), replicas, NOW)

    assert (result.create_replicas, result.failure, result.not_needed) == (0, None, (3,))
    assert result.need_validate, "the late success 4 is compared with the canonical one"


def test_a_late_success_after_canonical_needs_validation():
    replicas = [success(1, ValidateState.VALID), success(2, ValidateState.VALID), success(3)]

    result = transition(done_unit(), replicas, NOW)

    assert result.need_validate
    assert not result.changes_replicas


def test_a_canonical_unit_with_every_success_judged_needs_nothing():
    replicas = [
        success(1, ValidateState.VALID),
        success(2, ValidateState.VALID),
        success(3, ValidateState.INVALID),
    ]

    assert transition(done_unit(), replicas, NOW) == Transition()


def test_a_failed_unit_creates_nothing_and_cancels_unsent():
    replicas = [over(1, Outcome.CLIENT_ERROR), unsent(2), out(3)]

    result = transition(unit(UnitState.FAILED), replicas, NOW)

    assert (result.create_replicas, result.failure, result.not_needed) == (0, None, (2,))
    assert result.next_transition == NOW + HOUR


def test_a_failed_unit_does_not_validate_late_successes():
    replicas = [over(1, Outcome.CLIENT_ERROR), success(2), success(3)]

    result = transition(unit(UnitState.FAILED), replicas, NOW)

    assert result == Transition()


# --- scheduling -------------------------------------------------------------------------


def test_next_transition_is_the_earliest_in_progress_deadline():
    replicas = [out(1, NOW + 3 * HOUR), out(2, NOW + HOUR), out(3, NOW + 2 * HOUR), unsent(4)]

    result = transition(unit(target_nresults=4, min_quorum=2), replicas, NOW)

    assert result.next_transition == NOW + HOUR


def test_next_transition_is_none_when_nothing_is_out():
    result = transition(unit(), [unsent(1), success(2)], NOW)

    assert result.next_transition is None


def test_next_transition_skips_replicas_timed_out_now():
    replicas = [out(1, NOW - HOUR), out(2, NOW + 2 * HOUR)]

    result = transition(unit(), replicas, NOW)

    assert result.timed_out == (1,)
    assert result.next_transition == NOW + 2 * HOUR


def test_changes_replicas_is_true_for_any_replica_change_only():
    assert not Transition(need_validate=True, failure=FailureReason.TOO_MANY_TOTAL).changes_replicas
    assert Transition(create_replicas=1).changes_replicas
    assert Transition(timed_out=(1,)).changes_replicas
    assert Transition(not_needed=(1,)).changes_replicas


# --- disputes and audits (issue 13) -------------------------------------------------------


def test_replicas_made_for_a_dispute_are_reserved_and_fresh_ones_are_not():
    disputed = transition(
        unit(), [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE)], NOW
    )
    assert disputed.create_replicas == 1 and disputed.reserve_new
    fresh = transition(unit(), [], NOW)
    assert fresh.create_replicas == 2 and not fresh.reserve_new
    reopened = UnitView(id=1, policy=policy(), disputed=True)
    assert transition(reopened, [over(1, Outcome.CLIENT_ERROR), success(2)], NOW).reserve_new


def test_a_done_unit_wanting_an_audit_gets_one_reserved_replica_and_keeps_it():
    audited = UnitView(id=1, policy=policy(), state=UnitState.DONE, has_canonical=True, audit_wanted=True)
    agreed = [success(1, ValidateState.VALID), success(2, ValidateState.VALID)]

    first = transition(audited, agreed, NOW)
    assert (first.create_replicas, first.reserve_new) == (1, True)
    waiting = ReplicaView(3, ReplicaState.UNSENT, reserved=True)
    again = transition(audited, [*agreed, waiting, unsent(4)], NOW)
    assert again.create_replicas == 0 and again.not_needed == (4,), "the audit's replica stays"
    sent = ReplicaView(3, ReplicaState.IN_PROGRESS, deadline=NOW + HOUR, reserved=True)
    assert transition(audited, [*agreed, sent], NOW).create_replicas == 0
    failed = [over(n, Outcome.NO_REPLY) for n in range(3, 9)]
    assert transition(audited, [*agreed, *failed], NOW).create_replicas == 1
    assert transition(audited, [*agreed, *failed, over(9, Outcome.NO_REPLY)], NOW).create_replicas == 0, (
        "at most AUDIT_EXTRA_RESULTS beyond max_total_results"
    )
    assert transition(done_unit(), agreed, NOW).create_replicas == 0, "no audit wanted: nothing"


# --- the unit's state -----------------------------------------------------------------------


def test_a_canonical_replica_makes_an_active_unit_done():
    result = transition(unit(has_canonical=True), [success(1, ValidateState.VALID)], NOW)

    assert result.state is UnitState.DONE
    assert settled_state(unit(has_canonical=True)) is UnitState.DONE


def test_a_reopened_unit_is_active_again_and_asks_for_established_hosts():
    reopened = UnitView(1, policy(), UnitState.DONE, disputed=True)
    replicas = [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE)]

    result = transition(reopened, replicas, NOW)

    assert result.state is UnitState.ACTIVE
    assert (result.create_replicas, result.reserve_new) == (1, True)


def test_a_failing_unit_names_its_new_state_and_a_failed_one_stays_failed():
    errors = [over(i, Outcome.CLIENT_ERROR) for i in range(1, 5)]

    assert transition(unit(), errors, NOW).state is UnitState.FAILED
    assert transition(unit(UnitState.FAILED), errors, NOW).state is None
    assert settled_state(unit(UnitState.FAILED, has_canonical=True)) is UnitState.FAILED


def test_a_state_that_does_not_change_is_not_named():
    assert transition(unit(), [out(1), out(2)], NOW).state is None
    assert transition(done_unit(), [success(1, ValidateState.VALID)], NOW).state is None
