"""Dispatch's SQL restates rules of the lifecycle; these tests keep the two from drifting."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection

from coordinator.scheduler.dispatch_sql import OUT_ALONE
from coordinator.work.lifecycle import Outcome, ReplicaState, ReplicaView, ValidateState, keeps_unit_alone

pytestmark = pytest.mark.django_db


def sql_keeps_unit_alone(replica: ReplicaView) -> bool:
    """``OUT_ALONE`` evaluated by the database on one replica's columns."""
    columns = "SELECT %s AS trusted_single, %s AS state, %s AS outcome, %s AS validate_state"
    row = [replica.trusted_single, replica.state.value, replica.outcome.value, replica.validate_state.value]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT CASE WHEN {OUT_ALONE} THEN 1 ELSE 0 END FROM ({columns}) kin", list(row))
        return cursor.fetchone()[0] == 1


def test_the_lone_replica_rule_in_sql_is_the_lifecycles_for_every_replica_state():
    cases = [
        ReplicaView(id=1, state=state, outcome=outcome, validate_state=validate, trusted_single=trusted)
        for state, outcome, validate, trusted in itertools.product(
            ReplicaState, Outcome, ValidateState, (True, False)
        )
    ]
    disagreements = [case for case in cases if sql_keeps_unit_alone(case) != keeps_unit_alone(case)]

    assert disagreements == []
    assert any(keeps_unit_alone(case) for case in cases), "the rule keeps some units alone"
