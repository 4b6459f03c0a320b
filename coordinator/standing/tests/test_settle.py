"""A validation pass's credit and reputation in one go: the same rows as adding its credit and
then recording its events, with each host read, locked and written once instead of twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.standing.models import CreditDay, HostAppReputation, HostAppVersion
from coordinator.standing.reputation import Event
from coordinator.standing.services import (
    CREDIT_FIELDS,
    HOST_EVENT_FIELDS,
    Grant,
    HostEvent,
    add_credit,
    record_events,
    settle,
)
from coordinator.testing import make_app, make_host
from coordinator.work.models import AppVersion

pytestmark = pytest.mark.django_db
HOST_FIELDS = [*CREDIT_FIELDS, *HOST_EVENT_FIELDS]


def standing() -> dict[str, list[tuple]]:
    """Every row the standing writes, as plain values."""
    return {
        "hosts": list(Host.objects.order_by("pk").values_list("pk", *HOST_FIELDS)),
        "volunteers": list(
            Volunteer.objects.order_by("pk").values_list("pk", "total_credit", "rac", "rac_time")
        ),
        "teams": list(Team.objects.order_by("pk").values_list("pk", "total_credit", "rac")),
        "days": list(
            CreditDay.objects.order_by("volunteer_id", "day").values_list("volunteer_id", "day", "credit")
        ),
        "reputations": list(
            HostAppReputation.objects.order_by("host_id", "app_id").values_list(
                "host_id", "app_id", "valid", "invalid", "errors", "consecutive_valid", "error_rate"
            )
        ),
        "quotas": list(
            HostAppVersion.objects.order_by("host_id", "app_version_id").values_list(
                "host_id", "app_version_id", "daily_quota"
            )
        ),
    }


def a_pass() -> tuple[list[Grant], list[HostEvent]]:
    """Grants and events on three hosts: two credited and judged, one only judged (an error)."""
    app = make_app()
    version = AppVersion.objects.filter(app=app).first()
    (first, _), (second, _), (third, _) = make_host(), make_host(), make_host()
    Host.objects.filter(pk=first.pk).update(rac=4.0, rac_time=timezone.now() - timedelta(days=1))
    grants = [
        Grant(first.volunteer_id, first.pk, 1, 1, Decimal("10.5")),
        Grant(second.volunteer_id, second.pk, 2, 1, Decimal("10.5")),
        Grant(first.volunteer_id, first.pk, 3, 2, Decimal("2.25")),
    ]
    events = [
        HostEvent(first.pk, app.pk, version.pk, Event.VALID_INDEPENDENT),
        HostEvent(second.pk, app.pk, version.pk, Event.INVALID),
        HostEvent(third.pk, app.pk, version.pk, Event.ERROR),
        HostEvent(first.pk, app.pk, version.pk, Event.VALID_CONFIRMED),
    ]
    return grants, events


def test_settling_a_pass_writes_what_crediting_then_recording_it_writes():
    grants, events = a_pass()
    now = timezone.now()
    with transaction.atomic():
        add_credit(grants, now=now)
        record_events(events, now=now)
        one_after_the_other = standing()
        transaction.set_rollback(True)

    settle(grants, events, now=now)

    assert standing() == one_after_the_other
    assert one_after_the_other["hosts"][0][1] == Decimal("12.75")  # it wrote something to compare


def test_settling_a_pass_reads_locks_and_writes_each_host_once():
    grants, events = a_pass()
    with CaptureQueriesContext(connection) as queries:
        settle(grants, events, now=timezone.now())
    statements = [q["sql"] for q in queries.captured_queries]
    on_hosts = [sql.split()[0] for sql in statements if '"accounts_host"' in sql.split(" WHERE ")[0]]
    assert on_hosts == ["SELECT", "UPDATE"]


def test_a_hosts_rows_per_app_are_made_only_when_missing_and_only_its_pairs_change():
    """A pass reads a host's reputation and quota rows by host, and inserts none when they all
    exist; a host's row for another app is read along but left as it was."""
    first, other = make_app(), make_app()
    (host, _) = make_host()
    version = AppVersion.objects.filter(app=first).first()
    elsewhere = AppVersion.objects.filter(app=other).first()
    record_events([HostEvent(host.pk, other.pk, elsewhere.pk, Event.ERROR)], now=timezone.now())
    record_events([HostEvent(host.pk, first.pk, version.pk, Event.VALID_INDEPENDENT)], now=timezone.now())
    before = standing()

    with CaptureQueriesContext(connection) as queries:
        record_events([HostEvent(host.pk, first.pk, version.pk, Event.VALID_CONFIRMED)], now=timezone.now())

    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert inserts == [], "every row existed"
    after = standing()
    assert after["reputations"][1] == before["reputations"][1], "the other app's row is untouched"
    (_, _, valid, *_), (_, _, valid_before, *_) = after["reputations"][0], before["reputations"][0]
    assert (valid, valid_before) == (2, 1)
    assert len(after["quotas"]) == 2


def test_credit_days_add_up_exactly_over_passes_and_a_reversal_comes_off_its_grants_day():
    (host, _), (other, _) = make_host(), make_host()
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    add_credit([Grant(host.volunteer_id, host.pk, 1, 1, Decimal("0.000001"))], now=now)
    add_credit(
        [
            Grant(host.volunteer_id, host.pk, 2, 2, Decimal("10.123456")),
            Grant(host.volunteer_id, host.pk, 3, 3, Decimal("1.5"), granted_at=yesterday),
            Grant(other.volunteer_id, other.pk, 4, 4, Decimal("7")),
        ],
        now=now,
    )
    with CaptureQueriesContext(connection) as queries:
        add_credit([Grant(host.volunteer_id, host.pk, 3, 3, Decimal("-1.5"), granted_at=yesterday)], now=now)

    assert standing()["days"] == [
        (host.volunteer_id, yesterday.date(), Decimal("0.000000")),
        (host.volunteer_id, now.date(), Decimal("10.123457")),
        (other.volunteer_id, now.date(), Decimal("7.000000")),
    ]
    on_days = [q["sql"] for q in queries.captured_queries if CreditDay._meta.db_table in q["sql"]]
    assert len(on_days) == (1 if connection.vendor == "postgresql" else 2)  # one upsert; a read and a write
