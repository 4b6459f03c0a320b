"""Tail acceleration in the pure lifecycle (docs/batches.md): in a batch's tail, a replica out
past its host's usual turnaround gets one backup; whichever valid result comes first counts and
the overdue one is then called off; reissues are accelerated. Examples, then hypothesis."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from coordinator.work.lifecycle import (
    Outcome,
    ReplicaState,
    ReplicaView,
    UnitState,
    UnitView,
    ValidateState,
    transition,
)
from coordinator.work.tests.test_lifecycle import HOUR, NOW, done_unit, out, over, success, unit
from coordinator.work.tests.test_lifecycle_properties import BOUNDED, T0, apply, check_idempotent, situations


def late(rid: int, overdue_by: timedelta = timedelta(minutes=1)) -> ReplicaView:
    """Out since long enough that its host is late: overdue ``overdue_by`` ago, deadline ahead."""
    return replace(out(rid), overdue_at=NOW - overdue_by)


def on_time(rid: int) -> ReplicaView:
    return replace(out(rid), overdue_at=NOW + timedelta(minutes=10))


def tail(view: UnitView) -> UnitView:
    return replace(view, tail=True)


def test_in_a_batchs_tail_an_overdue_replica_gets_one_accelerated_backup():
    result = transition(tail(unit()), [success(1), late(2)], NOW)

    assert result.create_replicas == 1 and result.accelerate_new
    assert not result.reserve_new and not result.timed_out and not result.aborted


def test_outside_the_tail_an_overdue_replica_just_waits_for_its_deadline():
    result = transition(unit(), [success(1), late(2)], NOW)

    assert result.create_replicas == 0
    assert result.next_transition == NOW + HOUR


def test_a_backup_is_made_once_however_often_the_unit_is_looked_at():
    view, replicas = tail(unit()), [success(1), late(2)]
    first = transition(view, replicas, NOW)
    again = transition(*apply(view, replicas, first), NOW)

    assert first.create_replicas == 1 and again.create_replicas == 0 and not again.not_needed


def test_each_overdue_replica_gets_its_own_backup_within_the_total_limit():
    assert transition(tail(unit()), [late(1), late(2)], NOW).create_replicas == 2
    assert transition(tail(unit(max_total_results=3)), [late(1), late(2)], NOW).create_replicas == 1


def test_the_unit_wakes_when_a_replica_becomes_overdue_before_its_deadline():
    result = transition(tail(unit()), [success(1), on_time(2)], NOW)

    assert result.create_replicas == 0
    assert result.next_transition == NOW + timedelta(minutes=10)


def test_once_done_the_overdue_replica_is_called_off_and_the_others_run_on():
    replicas = [success(1, ValidateState.VALID), success(3, ValidateState.VALID), late(2), on_time(4)]
    result = transition(tail(done_unit()), replicas, NOW)

    assert result.aborted == (2,), "the first valid results won: the late one is never credited"
    assert result.create_replicas == 0


def test_an_overdue_audit_is_never_called_off():
    audit = replace(late(5), reserved=True)
    replicas = [success(1, ValidateState.VALID), success(3, ValidateState.VALID), audit]

    assert transition(tail(done_unit()), replicas, NOW).aborted == ()


def test_reissues_are_accelerated_first_replicas_and_dispute_replicas_only_in_a_tail():
    assert not transition(unit(), [], NOW).accelerate_new
    assert transition(unit(), [success(1), over(2, Outcome.CLIENT_ERROR)], NOW).accelerate_new
    disputed = [success(1, ValidateState.INCONCLUSIVE), success(2, ValidateState.INCONCLUSIVE)]
    result = transition(unit(), disputed, NOW)
    assert result.create_replicas == 1 and result.reserve_new and not result.accelerate_new
    in_tail = transition(tail(unit()), disputed, NOW)
    assert in_tail.create_replicas == 1 and in_tail.reserve_new and in_tail.accelerate_new


def test_a_late_replica_of_a_finished_unit_that_failed_is_not_backed_up():
    failed = replace(tail(unit()), state=UnitState.FAILED)

    assert transition(failed, [late(1)], NOW).create_replicas == 0


# --- properties ------------------------------------------------------------------------------


@st.composite
def tail_situations(draw: st.DrawFn) -> tuple[UnitView, list[ReplicaView]]:
    """Any situation of the lifecycle's own properties, in a tail, its replicas out given times
    at which they are overdue (past, future, or after their deadline)."""
    view, replicas = draw(situations())
    timed = []
    for replica in replicas:
        if replica.state is ReplicaState.IN_PROGRESS and draw(st.booleans()):
            replica = replace(replica, overdue_at=T0 + timedelta(minutes=draw(st.integers(-90, 90))))
        timed.append(replica)
    return replace(view, tail=True), timed


def overdue_out(replicas: list[ReplicaView]) -> list[ReplicaView]:
    return [
        r
        for r in replicas
        if r.state is ReplicaState.IN_PROGRESS
        and r.overdue_at is not None
        and r.overdue_at <= T0
        and r.deadline is not None
        and r.deadline > T0
    ]


@BOUNDED
@given(tail_situations())
def test_backups_stay_within_the_total_and_a_second_look_asks_nothing(situation):
    view, replicas = situation
    result = transition(view, replicas, T0)

    assert 0 <= result.create_replicas <= max(0, view.policy.max_total_results - len(replicas))
    assert set(result.aborted) <= {r.id for r in overdue_out(replicas) if not r.reserved}
    if result.aborted:
        assert view.has_canonical, "only a result already won calls a late replica off"
    check_idempotent(view, replicas, T0, result)


@BOUNDED
@given(tail_situations())
def test_the_unit_wakes_at_the_first_deadline_or_overdue_time_ahead_of_what_still_runs(situation):
    view, replicas = situation
    result = transition(view, replicas, T0)
    out_now = [
        r
        for r in replicas
        if r.state is ReplicaState.IN_PROGRESS
        and r.deadline
        and r.deadline > T0
        and r.id not in result.aborted
    ]
    ahead = [r.deadline for r in out_now] + [
        r.overdue_at for r in out_now if r.overdue_at and r.overdue_at > T0
    ]
    if not view.cancelled:
        assert result.next_transition == (min(ahead) if ahead else None)
