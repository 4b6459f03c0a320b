"""The claim's reads are planned once for any values: their states are spelled in the SQL,
where a plan for any values still sees them and the partial dispatch indexes they match, so
PostgreSQL stops planning them on every request (docs/benchmarks.md)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from coordinator.core.prepared import literal
from coordinator.scheduler.dispatch_sql import claim_context, too_big
from coordinator.scheduler.fairshare import standings
from coordinator.testing import make_app, make_host, make_units
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def plans(fragment: str) -> tuple[int, int]:
    """Generic and custom plans of this connection's prepared statement containing ``fragment``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        (found,) = cursor.fetchall()
    return found


def test_the_claims_context_the_shares_standing_and_the_queue_probe_stop_being_planned():
    """On a table the statistics know (a split's worth of replicas, most of them gone out):
    with a state as a parameter PostgreSQL kept planning each run anew."""
    app = make_app()
    make_units(app, 1500)
    Replica.objects.filter(pk__in=Replica.objects.order_by("pk").values("pk")[:1000]).update(
        state=ReplicaState.OVER, outcome=Outcome.NO_REPLY
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE work_replica, work_workunit")
    host, _ = make_host()
    now = timezone.now()
    for _ in range(10):
        claim_context(host, waited=now)
        standings(now)
        too_big(app_ids=[app.pk], memory_bytes=8 << 30, disk_bytes=None, speed=1e9)

    for fragment in ("load.by_volunteer", "COALESCE((SELECT SUM(u.fpops)", "MIN(head.rate)"):
        generic, custom = plans(fragment)
        assert custom == 5 and generic == 5, fragment  # planned for the first five runs only


def test_only_a_plain_word_is_spelled_in_the_sql():
    assert literal("in_progress") == "'in_progress'"
    for value in ("x'; DROP TABLE work_replica; --", "Unsent", ""):
        with pytest.raises(ValueError):
            literal(value)
