"""Whether any replica waits to be sent: right for plain and reserved replicas, and on
PostgreSQL one read of each dispatch index even when the statistics say every replica waits
(as a batch's split leaves them) and none does any more."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from coordinator.scheduler.dispatch_sql import ANY_UNSENT, any_unsent
from coordinator.testing import make_app
from coordinator.work.lifecycle import Outcome, Policy, ReplicaState
from coordinator.work.models import Replica
from coordinator.work.services import UnitSpec, create_work_units

pytestmark = pytest.mark.django_db


def split(units: int) -> None:
    create_work_units(
        app=make_app(),
        specs=[UnitSpec(f"wait-{i}", b"x", i) for i in range(units)],
        now=timezone.now(),
        policy=Policy(min_quorum=1, target_nresults=2),
    )


def all_sent() -> None:
    Replica.objects.update(state=ReplicaState.OVER, outcome=Outcome.NO_REPLY)


def test_it_sees_a_plain_or_a_reserved_replica_waiting_and_none_once_all_went():
    assert not any_unsent()
    split(3)
    assert any_unsent()

    all_sent()
    assert not any_unsent()

    Replica.objects.filter(pk=Replica.objects.order_by("pk").values("pk")[:1]).update(
        state=ReplicaState.UNSENT, outcome=Outcome.INIT, reserved=True
    )
    assert any_unsent()


@pytest.mark.postgres
def test_it_reads_the_dispatch_indexes_even_when_the_statistics_say_everything_waits():
    split(1500)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE work_replica")  # as the split's refresh does: every replica unsent
        all_sent()

        cursor.execute("EXPLAIN " + ANY_UNSENT)
        plan = "\n".join(line for (line,) in cursor.fetchall())

    assert "Seq Scan" not in plan, plan
    assert "replica_dispatch_by_share" in plan and "replica_dispatch_reserved" in plan, plan
    assert not any_unsent()
