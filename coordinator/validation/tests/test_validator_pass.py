"""The validator applies the lifecycle to its verdicts in its own pass: each judged unit's row
is written once, and no pass of the transitioner is needed after it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordinator.testing import SignedHost, make_app, make_host, make_units
from coordinator.validation.services import validate_due_units
from coordinator.validation.tests.test_validator import crunch, right
from coordinator.work.lifecycle import Outcome, ReplicaState, UnitState
from coordinator.work.models import Replica
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db


def unit_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "work_workunit"')]


def test_a_validated_unit_is_settled_in_the_validators_pass_its_row_written_once():
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=3)[0]
    first, second = SignedHost(*make_host()), SignedHost(*make_host())
    crunch(first, right)
    crunch(second, right)
    transition_due_units(now=timezone.now())

    with CaptureQueriesContext(connection) as queries:
        assert validate_due_units(now=timezone.now()) == 1

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.transition_time is None, "settled, not left due"
    leftover = unit.replicas.get(host=None)
    assert (leftover.state, leftover.outcome) == (ReplicaState.OVER, Outcome.DIDNT_NEED)
    assert len(unit_updates(queries)) == 1, unit_updates(queries)
    assert transition_due_units(now=timezone.now()) == 0, "nothing left for the transitioner"


def test_a_disagreement_gets_its_tie_breaker_in_the_validators_pass():
    unit = make_units(make_app(), 1)[0]
    crunch(SignedHost(*make_host()), right)
    crunch(SignedHost(*make_host()), lambda name: b"made up")
    transition_due_units(now=timezone.now())

    validate_due_units(now=timezone.now())

    assert unit.replicas.filter(state=ReplicaState.UNSENT).count() == 1, "one more replica, at once"
    unit.refresh_from_db()
    assert unit.state == UnitState.ACTIVE and unit.transition_time is None


def test_a_replica_past_its_deadline_at_validation_is_left_to_the_transitioner():
    """A timeout is its host's error, written to standing rows the validator may lock only
    after the ledger's head: the validator leaves that unit due instead."""
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=3)[0]
    crunch(SignedHost(*make_host()), right)
    crunch(SignedHost(*make_host()), right)
    late = SignedHost(*make_host())
    [task] = late.rpc(tasks=1).json()["tasks"]
    transition_due_units(now=timezone.now())
    Replica.objects.filter(pk=task["replica"]).update(deadline=timezone.now() - timedelta(seconds=1))

    now = timezone.now()
    validate_due_units(now=now)

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.transition_time == now, "judged, and left due"
    assert Replica.objects.get(pk=task["replica"]).state == ReplicaState.IN_PROGRESS

    transition_due_units(now=timezone.now())
    missed = Replica.objects.get(pk=task["replica"])
    assert (missed.state, missed.outcome) == (ReplicaState.OVER, Outcome.NO_REPLY)
    unit.refresh_from_db()
    assert unit.transition_time is None


def statements_of_a_pass(units: int) -> list[str]:
    app = make_app()
    make_units(app, units)
    hosts = [SignedHost(*make_host()) for _ in range(2)]
    for host in hosts:
        crunch(host, right, tasks=units)
    transition_due_units(now=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert validate_due_units(now=timezone.now()) == units
    return [q["sql"].split(" WHERE ")[0] for q in queries.captured_queries]


def test_a_pass_runs_the_same_statements_for_two_units_as_for_six():
    """No row read in a pass (a host's description left unread, say) costs a query of its own."""
    statements_of_a_pass(1)  # the first pass makes the ledger's head
    assert len(statements_of_a_pass(6)) == len(statements_of_a_pass(2))
