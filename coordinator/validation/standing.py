"""A host's and volunteer's standing: credit totals, RAC, credit per day, reputation, quota.

Rows are locked in one fixed order (volunteers, teams, hosts, each by id) and updated once
per validation pass with what the pure rules in ``credit`` and ``reputation`` compute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Model

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.core.bulk import update_rows
from coordinator.validation import credit
from coordinator.validation.ledger import Grant
from coordinator.validation.models import CreditDay, HostAppReputation
from coordinator.validation.reputation import Event, Reputation, after, quota_after

CREDIT_FIELDS = ["total_credit", "rac", "rac_time", "rac_rank"]


def _credit_rows(model: type[Model], amounts: dict[int, Decimal], now: datetime) -> list[Model]:
    rows = list(model.objects.select_for_update().filter(pk__in=amounts).order_by("pk"))
    for row in rows:
        amount = amounts[row.pk]
        row.total_credit += amount
        row.rac = credit.rac_after_grant(row.rac, row.rac_time, float(amount), now)
        row.rac_time = now
        row.rac_rank = credit.rac_rank_key(row.rac, row.rac_time)
    return rows


def _add_credit_days(by_volunteer: dict[int, Decimal], now: datetime) -> None:
    day = now.date()
    existing = {
        row.volunteer_id: row
        for row in CreditDay.objects.select_for_update().filter(volunteer_id__in=by_volunteer, day=day)
    }
    for row in existing.values():
        row.credit += by_volunteer[row.volunteer_id]
    update_rows(CreditDay, list(existing.values()), ["credit"])
    CreditDay.objects.bulk_create(
        CreditDay(volunteer_id=v, day=day, credit=amount)
        for v, amount in by_volunteer.items()
        if v not in existing
    )


def add_credit(grants: Iterable[Grant], *, now: datetime) -> None:
    """Add granted credit to the totals and RAC of volunteers, their teams and hosts."""
    by_volunteer: dict[int, Decimal] = defaultdict(Decimal)
    by_host: dict[int, Decimal] = defaultdict(Decimal)
    for grant in grants:
        by_volunteer[grant.volunteer_id] += grant.credit
        by_host[grant.host_id] += grant.credit
    if not by_volunteer:
        return
    volunteers = _credit_rows(Volunteer, by_volunteer, now)
    by_team: dict[int, Decimal] = defaultdict(Decimal)
    for volunteer in volunteers:
        if volunteer.team_id is not None:
            by_team[volunteer.team_id] += by_volunteer[volunteer.pk]
    update_rows(Volunteer, volunteers, CREDIT_FIELDS)
    if by_team:
        update_rows(Team, _credit_rows(Team, by_team, now), CREDIT_FIELDS)
    update_rows(Host, _credit_rows(Host, by_host, now), CREDIT_FIELDS)
    _add_credit_days(by_volunteer, now)


def _reputation(row: HostAppReputation) -> Reputation:
    return Reputation(row.consecutive_valid, row.valid, row.invalid, row.errors, row.error_rate)


def record_events(events: list[tuple[int, int, Event]]) -> None:
    """Fold valid, invalid and error events into each host's reputation (overall and per
    app) and daily quota, in the order they happened."""
    if not events:
        return
    pairs = {(host_id, app_id) for host_id, app_id, _ in events}
    HostAppReputation.objects.bulk_create(
        [HostAppReputation(host_id=h, app_id=a) for h, a in pairs], ignore_conflicts=True
    )
    host_ids = sorted({host_id for host_id, _, _ in events})
    hosts = {h.pk: h for h in Host.objects.select_for_update().filter(pk__in=host_ids).order_by("pk")}
    reputations = {
        (r.host_id, r.app_id): r
        for r in HostAppReputation.objects.select_for_update()
        .filter(host_id__in=host_ids, app_id__in={a for _, a in pairs})
        .order_by("pk")
    }
    cap = settings.TESSERA["DEFAULT_DAILY_QUOTA"]
    for host_id, app_id, event in events:
        host, row = hosts[host_id], reputations[(host_id, app_id)]
        updated = after(_reputation(row), event)
        row.consecutive_valid, row.valid, row.invalid = (
            updated.consecutive_valid,
            updated.valid,
            updated.invalid,
        )
        row.errors, row.error_rate = updated.errors, updated.error_rate
        host.consecutive_valid = host.consecutive_valid + 1 if event is Event.VALID else 0
        host.valid_count += event is Event.VALID
        host.invalid_count += event is Event.INVALID
        host.error_count += event is Event.ERROR
        host.daily_quota = quota_after(host.daily_quota, event, cap)
    update_rows(
        HostAppReputation,
        list(reputations.values()),
        ["consecutive_valid", "valid", "invalid", "errors", "error_rate"],
    )
    update_rows(
        Host,
        list(hosts.values()),
        ["consecutive_valid", "valid_count", "invalid_count", "error_count", "daily_quota"],
    )
