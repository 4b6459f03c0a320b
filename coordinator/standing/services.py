"""Writes to a host's and volunteer's standing: credit totals, RAC, credit per day,
reputation, quota; the one place they change.

Rows are locked in one fixed order (volunteers, teams, hosts, each by id; then credit days,
reputations and quotas) and updated once per validation pass with what the pure rules in
``credit`` and ``reputation`` compute. The locks leave the key alone (``FOR NO KEY
UPDATE``): a host's signed request burns its nonce, a row that refers to the host, while a
validation pass holds the host's figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import connection
from django.db.models import Case, F, Value, When

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.core.bulk import update_rows
from coordinator.core.compiled import CompiledReadMany
from coordinator.core.prepared import prepared_cursor
from coordinator.standing import credit
from coordinator.standing.models import CreditDay, HostAppReputation, HostAppVersion
from coordinator.standing.reputation import (
    Establishment,
    Event,
    Reputation,
    after,
    is_established,
    quota_after,
)
from coordinator.work.signals import TimedOut

CREDIT_FIELDS = ["total_credit", "rac", "rac_time", "rac_rank"]
# What an event changes in its host's own row.
HOST_EVENT_FIELDS = [
    "consecutive_valid",
    "valid_count",
    "invalid_count",
    "error_count",
    "daily_quota",
    "independent_valid",
    "caught_at",
]


@dataclass(frozen=True)
class Grant:
    """Credit for one valid replica, or, negative, credit taken back from one.

    ``granted_at`` is when the credit was granted, None for now. For a negative amount it is
    the reversed grant's time: the standing takes back that grant's decayed RAC share and
    its amount from that day's credit. The validation app's ledger records each one.
    """

    volunteer_id: int
    host_id: int
    replica_id: int
    unit_id: int
    credit: Decimal
    granted_at: datetime | None = None
    fuel: int | None = None  # the fuel a wasm replica is credited for, kept in its ledger entry


_Credited = TypeVar("_Credited", Volunteer, Team, Host)


def _locking(model: type[_Credited]) -> CompiledReadMany[_Credited]:
    """Rows of ``model`` by key, locked in key order (``FOR NO KEY UPDATE``), compiled once."""
    return CompiledReadMany(
        lambda ids: model.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk")
    )


_VOLUNTEERS, _TEAMS, _HOSTS = _locking(Volunteer), _locking(Team), _locking(Host)


def _credit_rows(
    locked: CompiledReadMany[_Credited], grants: dict[int, list[Grant]], now: datetime
) -> list[_Credited]:
    rows = locked.many(sorted(grants))
    for row in rows:
        _credit(row, grants[row.pk], now)
    return rows


def _credit(row: Volunteer | Team | Host, grants: list[Grant], now: datetime) -> None:
    granted = sum((g.credit for g in grants if g.credit > 0), Decimal(0))
    row.total_credit += granted
    row.rac = credit.rac_after_grant(row.rac, row.rac_time, float(granted), now)
    for taken in (g for g in grants if g.credit < 0):
        row.total_credit += taken.credit
        row.rac = credit.rac_after_reversal(row.rac, now, float(-taken.credit), taken.granted_at or now, now)
    row.rac_time = now
    row.rac_rank = credit.rac_rank_key(row.rac, row.rac_time)


def _add_credit_days(by_volunteer: dict[int, list[Grant]], now: datetime) -> None:
    """Credit per day counts the credit that stands: a reversal comes off its grant's day."""
    amounts: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    for volunteer_id, grants in by_volunteer.items():
        for grant in grants:
            amounts[(volunteer_id, (grant.granted_at or now).date())] += grant.credit
    if connection.vendor == "postgresql":
        _upsert_credit_days(amounts)
        return
    existing = {
        (row.volunteer_id, row.day): row
        for row in CreditDay.objects.select_for_update()
        .filter(volunteer_id__in=by_volunteer, day__in={day for _, day in amounts})
        .order_by("volunteer_id", "day")
    }
    changed = [row for key, row in existing.items() if key in amounts]
    for row in changed:
        row.credit += amounts[(row.volunteer_id, row.day)]
    update_rows(CreditDay, changed, ["credit"])
    CreditDay.objects.bulk_create(
        CreditDay(volunteer_id=v, day=day, credit=amount)
        for (v, day), amount in amounts.items()
        if (v, day) not in existing
    )


CREDIT_DAYS = CreditDay._meta.db_table
UPSERT_CREDIT_DAYS = f"""
INSERT INTO {CREDIT_DAYS} (volunteer_id, day, credit)
SELECT v, d, c FROM unnest(%s::integer[], %s::date[], %s::numeric(20, 6)[]) AS a(v, d, c) ORDER BY v, d
ON CONFLICT (volunteer_id, day) DO UPDATE SET credit = {CREDIT_DAYS}.credit + EXCLUDED.credit
"""


def _upsert_credit_days(amounts: dict[tuple[int, date], Decimal]) -> None:
    """Each day's amount added to its row, made where missing, in one statement that locks
    the rows in (volunteer, day) order: reading them first and building a model for each
    cost a validation pass more than the write (numeric sums stay exact in PostgreSQL)."""
    if not amounts:
        return
    keys = sorted(amounts)
    with prepared_cursor() as cursor:
        cursor.execute(
            UPSERT_CREDIT_DAYS,
            [[v for v, _ in keys], [d for _, d in keys], [amounts[key] for key in keys]],
        )


def add_credit(grants: Iterable[Grant], *, now: datetime) -> None:
    """Add granted credit to the totals and RAC of volunteers, their teams and hosts.

    A negative amount takes credit back (``reversal.reverse_credit``): from the totals of the
    volunteer, their current team and the host, from their RAC the share that grant still
    holds (never below 0), and from the credit of the grant's day.
    """
    settle(list(grants), [], now=now)


def settle(grants: list[Grant], events: list[HostEvent], *, now: datetime) -> None:
    """What a validation pass did to the standing: ``grants`` as :func:`add_credit` adds
    them, then ``events`` as :func:`record_events` folds them, each host read, locked and
    written once (a pass's grants and events are mostly on the same hosts). Rows are locked
    volunteers, teams, hosts, credit days, then reputations and quotas."""
    by_volunteer: dict[int, list[Grant]] = defaultdict(list)
    by_host: dict[int, list[Grant]] = defaultdict(list)
    for grant in grants:
        by_volunteer[grant.volunteer_id].append(grant)
        by_host[grant.host_id].append(grant)
    if by_volunteer:
        volunteers = _credit_rows(_VOLUNTEERS, by_volunteer, now)
        by_team: dict[int, list[Grant]] = defaultdict(list)
        for volunteer in volunteers:
            if volunteer.team_id is not None:
                by_team[volunteer.team_id] += by_volunteer[volunteer.pk]
        update_rows(Volunteer, volunteers, CREDIT_FIELDS)
        if by_team:
            update_rows(Team, _credit_rows(_TEAMS, by_team, now), CREDIT_FIELDS)
    host_ids = set(by_host) | {e.host_id for e in events}
    if not host_ids:
        return
    hosts = {h.pk: h for h in _HOSTS.many(sorted(host_ids))}
    for host_id, host_grants in by_host.items():
        if host_id in hosts:  # a host deleted meanwhile has no totals left to add to
            _credit(hosts[host_id], host_grants, now)
    if by_volunteer:
        _add_credit_days(by_volunteer, now)
    if events:
        _fold_events(events, hosts, now)
    fields = [*(CREDIT_FIELDS if by_host else []), *(HOST_EVENT_FIELDS if events else [])]
    update_rows(Host, list(hosts.values()), fields)


def establishment() -> Establishment:
    return Establishment(
        min_age_seconds=settings.TESSERA["ESTABLISHED_AGE_SECONDS"],
        min_independent_valid=settings.TESSERA["ESTABLISHED_MIN_VALID"],
    )


def host_is_established(host: Host, now: datetime) -> bool:
    """Old enough, with enough results unrelated hosts agreed with since last caught."""
    return is_established(
        age_seconds=(now - host.created).total_seconds(),
        independent_valid=host.independent_valid,
        rule=establishment(),
    )


def _reputation(row: HostAppReputation) -> Reputation:
    return Reputation(row.consecutive_valid, row.valid, row.invalid, row.errors, row.error_rate)


@dataclass(frozen=True)
class HostEvent:
    """Something a host's result earned: valid (and how independently), invalid, or an error."""

    host_id: int
    app_id: int
    app_version_id: int | None
    event: Event


def _fold_host(host: Host, event: Event, now: datetime) -> None:
    """The host's own figures: trust over all apps, and what makes it established."""
    host.consecutive_valid = (
        host.consecutive_valid + (event is Event.VALID_CONFIRMED) if event.is_valid else 0
    )
    host.valid_count += event.is_valid
    host.invalid_count += event is Event.INVALID
    host.error_count += event is Event.ERROR
    if event in (Event.VALID_INDEPENDENT, Event.VALID_CONFIRMED):
        host.independent_valid += 1
    if event is Event.INVALID:  # caught: no longer established, and new versions start at 1
        host.independent_valid, host.caught_at, host.daily_quota = 0, now, 1


# A host's rows per app and per app version, locked, read by host alone (a host runs a few
# apps): one prepared statement serves every pass, and the rows are made only when missing.
_REPUTATIONS = CompiledReadMany(
    lambda ids: HostAppReputation.objects.select_for_update().filter(host_id__in=ids).order_by("pk")
)
_QUOTAS = CompiledReadMany(
    lambda ids: HostAppVersion.objects.select_for_update().filter(host_id__in=ids).order_by("pk")
)
_Row = TypeVar("_Row", HostAppReputation, HostAppVersion)


def _locked_rows(
    model: type[_Row],
    read: CompiledReadMany[_Row],
    pairs: set[tuple[int, int]],
    key: Callable[[_Row], tuple[int, int]],
    make: Callable[[int, int], _Row],
) -> dict[tuple[int, int], _Row]:
    """The row of each (host, app or version) pair, locked; those missing made first (two
    passes may make one at once: the second one's insert does nothing)."""
    hosts = sorted({host_id for host_id, _ in pairs})
    rows = {key(row): row for row in read.many(hosts)}
    if not pairs <= rows.keys():
        model.objects.bulk_create(
            [make(*pair) for pair in sorted(pairs - rows.keys())], ignore_conflicts=True
        )
        rows = {key(row): row for row in read.many(hosts)}
    return {pair: rows[pair] for pair in pairs}


def _quota_rows(events: list[HostEvent], hosts: dict[int, Host]) -> dict[tuple[int, int], HostAppVersion]:
    pairs = {(e.host_id, e.app_version_id) for e in events if e.app_version_id is not None}
    if not pairs:
        return {}
    return _locked_rows(
        HostAppVersion,
        _QUOTAS,
        pairs,
        lambda row: (row.host_id, row.app_version_id),
        lambda h, v: HostAppVersion(host_id=h, app_version_id=v, daily_quota=hosts[h].daily_quota),
    )


def _fold(
    events: list[HostEvent],
    hosts: dict[int, Host],
    reputations: dict[tuple[int, int], HostAppReputation],
    quotas: dict[tuple[int, int], HostAppVersion],
    now: datetime,
) -> None:
    """Each event, in order, into the locked rows it changes."""
    cap = settings.TESSERA["DEFAULT_DAILY_QUOTA"]
    for e in events:
        row = reputations[(e.host_id, e.app_id)]
        updated = after(_reputation(row), e.event)
        row.consecutive_valid, row.valid, row.invalid = (
            updated.consecutive_valid,
            updated.valid,
            updated.invalid,
        )
        row.errors, row.error_rate = updated.errors, updated.error_rate
        _fold_host(hosts[e.host_id], e.event, now)
        if e.app_version_id is not None:
            quota = quotas[(e.host_id, e.app_version_id)]
            quota.daily_quota = quota_after(quota.daily_quota, e.event, cap)


def record_events(events: list[HostEvent], *, now: datetime) -> None:
    """Fold valid, invalid and error events into each host's reputation (overall and per
    app) and its daily quota per app version, in the order they happened."""
    settle([], events, now=now)


def _fold_events(events: list[HostEvent], hosts: dict[int, Host], now: datetime) -> None:
    """The events into the locked hosts, and into their reputation and quota rows, made
    where missing and locked here."""
    reputations = _locked_rows(
        HostAppReputation,
        _REPUTATIONS,
        {(e.host_id, e.app_id) for e in events},
        lambda row: (row.host_id, row.app_id),
        lambda h, a: HostAppReputation(host_id=h, app_id=a),
    )
    quotas = _quota_rows(events, hosts)
    _fold(events, hosts, reputations, quotas, now)
    update_rows(
        HostAppReputation,
        list(reputations.values()),
        ["consecutive_valid", "valid", "invalid", "errors", "error_rate"],
    )
    update_rows(HostAppVersion, list(quotas.values()), ["daily_quota"])


def record_timeouts(sender: object, *, timed_out: list[TimedOut], now: datetime, **kwargs: object) -> None:
    """A missed deadline is its host's error (connected to ``work.signals.replicas_timed_out``)."""
    record_events([HostEvent(t.host_id, t.app_id, t.app_version_id, Event.ERROR) for t in timed_out], now=now)


SPEED_MEMORY = 19  # the running mean of a host's speed weighs the past as this many samples


@dataclass(frozen=True)
class Sample:
    """One success's figures for its host and version: speed (floating-point operations per
    second of elapsed time) and turnaround (seconds from sending to its report)."""

    flops: float
    turnaround: float


def record_speeds(*, host: Host, samples: dict[int, list[Sample]]) -> None:
    """Fold measured speeds and turnarounds into the host's rows per app version (BOINC's
    host_app_version elapsed-time and turnaround statistics): running means that forget
    slowly, one statement per version."""
    for version_id, measured in samples.items():
        weight = Case(
            When(speed_samples__lt=SPEED_MEMORY, then=F("speed_samples")), default=Value(SPEED_MEMORY)
        )
        count = len(measured)
        speed = sum(sample.flops for sample in measured) / count
        turnaround = sum(sample.turnaround for sample in measured) / count
        HostAppVersion.objects.filter(host=host, app_version_id=version_id).update(
            speed_flops=(F("speed_flops") * weight + Value(speed * count)) / (weight + Value(count)),
            turnaround=(F("turnaround") * weight + Value(turnaround * count)) / (weight + Value(count)),
            speed_samples=F("speed_samples") + count,
        )
