"""The claim's two reads, in plain SQL: they run on every scheduler RPC, and building them
with the ORM cost more CPU than the database spent on them (docs/benchmarks.md).

``claim_context`` reads, once the volunteer is locked, what limits the claim: the host's
figures, its tasks in progress and its volunteer's, whether replicas reserved for
established hosts wait, and its daily quota rows. ``candidates`` reads and locks the unsent
replicas the host may get, in dispatch order. Both run on PostgreSQL and SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from coordinator.accounts.models import Host, Volunteer
from coordinator.accounts.relation import Holder
from coordinator.accounts.selectors import related_sql
from coordinator.core.prepared import literal, prepared_cursor
from coordinator.standing.models import HostAppVersion
from coordinator.work.lifecycle import Outcome, ReplicaState, ValidateState
from coordinator.work.models import Replica, WorkUnit

# A unit goes to a host only if the chosen version would finish it within this share of its
# delay bound at the host's speed: the rest is for the host being off, busy or behind.
DEADLINE_SHARE = 0.5
PROBE_UNITS = 200  # queued replicas read to tell a host that got nothing why
REPLICAS = Replica._meta.db_table
UNITS = WorkUnit._meta.db_table
HOSTS = Host._meta.db_table
VOLUNTEERS = Volunteer._meta.db_table
QUOTAS = HostAppVersion._meta.db_table

# The host's figures that may have changed since it was authenticated; one row per quota row
# (or one with NULLs when it has none), each with the same load figures.
CONTEXT = f"""
SELECT h.n_cpus, h.flops, h.memory_bytes, h.daily_quota, h.independent_valid,
       load.by_host, load.by_volunteer,
       EXISTS (SELECT 1 FROM {REPLICAS} WHERE state = {literal(ReplicaState.UNSENT)} AND reserved),
       EXISTS (SELECT 1 FROM {REPLICAS} WHERE state = {literal(ReplicaState.UNSENT)} AND reserved
               AND created <= %s),
       q.app_version_id, q.daily_quota, q.quota_day, q.quota_used, q.speed_flops, q.speed_samples,
       q.turnaround
FROM {HOSTS} h
CROSS JOIN (SELECT COUNT(*) FILTER (WHERE host_id = %s) AS by_host, COUNT(*) AS by_volunteer
            FROM {REPLICAS} WHERE state = {literal(ReplicaState.IN_PROGRESS)} AND volunteer_id = %s) load
LEFT JOIN {QUOTAS} q ON q.host_id = h.id
WHERE h.id = %s
"""


@dataclass(frozen=True)
class QuotaRow:
    daily_quota: int
    day: str  # ISO date of quota_used, "" when never used
    used: int
    speed_flops: float = 0.0  # the host's measured speed on the version
    speed_samples: int = 0
    turnaround: float = 0.0  # the host's usual seconds from sending to a success on the version

    def left(self, today: date) -> int:
        return max(0, self.daily_quota - (self.used if self.day == today.isoformat() else 0))


@dataclass(frozen=True)
class ClaimContext:
    held_by_host: int
    held_by_volunteer: int
    reserved_waiting: bool  # replicas reserved for established hosts are unsent
    reserved_waited: bool  # and one of them has waited DISPUTE_WAIT_SECONDS
    quotas: dict[int, QuotaRow]  # by app version id; a version may have none yet


def claim_context(host: Host, *, waited: datetime) -> ClaimContext:
    """What limits this claim, in one statement; the host's changing figures are refreshed
    on ``host`` (read under the volunteer's lock, after authentication read them)."""
    params = [connection.ops.adapt_datetimefield_value(waited), host.pk, host.volunteer_id, host.pk]
    with prepared_cursor() as cursor:
        cursor.execute(CONTEXT, params)
        rows = cursor.fetchall()
    if not rows:
        raise Host.DoesNotExist(f"host {host.pk} is gone")
    first = rows[0]
    host.n_cpus, host.flops, host.memory_bytes, host.daily_quota, host.independent_valid = first[:5]
    quotas = {
        version_id: QuotaRow(
            daily, str(day) if day is not None else "", used, speed or 0.0, samples or 0, turnaround or 0.0
        )
        for *_, version_id, daily, day, used, speed, samples, turnaround in rows
        if version_id is not None
    }
    return ClaimContext(first[5], first[6], bool(first[7]), bool(first[8]), quotas)


# A candidate's unit is not for this host when one of the unit's other replicas is the
# volunteer's own; or is a trusted host's lone replica whose result is neither invalid nor
# disputed (adaptive replication; a disputed one needs others to settle it), unless the
# candidate is accelerated (a backup or a reissue the lifecycle asked for); or is held by a
# host related to this one (accounts.relation). One index probe per candidate reads the
# unit's replicas once for all three; "LIMIT 1 OFFSET 0" keeps it a probe: without it
# PostgreSQL may turn NOT EXISTS into an anti-join that reads every replica the volunteer
# ever held (docs/benchmarks.md).
MINE = "kin.volunteer_id = %s"
_SETTLED_AGAINST = f"{literal(ValidateState.INVALID)}, {literal(ValidateState.INCONCLUSIVE)}"
OUT_ALONE = (
    f"(kin.trusted_single AND (kin.state = {literal(ReplicaState.IN_PROGRESS)}"
    f" OR (kin.outcome = {literal(Outcome.SUCCESS)} AND kin.validate_state NOT IN ({_SETTLED_AGAINST}))))"
)


def unit_not_for(holder: Holder, *, reserved: bool) -> tuple[str, list[Any]]:
    """SQL true when the candidate ``r``'s unit is not for this host (see ``MINE``), with its
    parameters. A reserved replica checks a result (a dispute, an audit), and a trusted
    host's lone result is what it may have to check: the lone-replica rule is not for it."""
    tests: list[str] = [MINE]
    params: list[Any] = [holder.volunteer_id]
    if not reserved:
        # Not for an accelerated replica: the lifecycle made it to back up (or replace) the
        # lone replica, which may be on a host that went away.
        tests.append(f"(r.reliable_until IS NULL AND {OUT_ALONE})")
    related, related_params = related_sql(holder, host="kin_host", volunteer="kin_volunteer")
    if related:
        # A lookup by primary key per replica held, whatever the number of hosts (without
        # "LIMIT 1 OFFSET 0" PostgreSQL may hash every related host in the project first).
        tests.append(
            f"EXISTS (SELECT 1 FROM {HOSTS} kin_host"
            f" JOIN {VOLUNTEERS} kin_volunteer ON kin_volunteer.user_id = kin_host.volunteer_id"
            f" WHERE kin_host.id = kin.host_id AND {related} LIMIT 1 OFFSET 0)"
        )
        params.extend(related_params)
    sql = (
        f"NOT EXISTS (SELECT 1 FROM {REPLICAS} kin"
        f" WHERE kin.workunit_id = r.workunit_id AND ({' OR '.join(tests)}) LIMIT 1 OFFSET 0)"
    )
    return sql, params


@dataclass(frozen=True)
class Candidate:
    replica_id: int
    unit_id: int
    app_id: int
    fpops: float
    reserved: bool
    # The unit's homogeneous-redundancy hold as read (dispatch._homogeneous checks it again).
    hr_class: str = ""
    pinned_version: int | None = None
    held_until: datetime | None = None
    delay_bound: int = 0
    accelerated: bool = False  # a reissue or tail work (scheduler.acceleration)
    share_id: int | None = None  # its batch's share (shares.policy); None: the project's own


def as_datetime(value: Any) -> datetime | None:
    """A timestamp column read by a raw cursor: PostgreSQL gives an aware datetime, SQLite a
    naive one or text, in UTC."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AppFilter:
    """Which units of one app this host may get (docs/platforms.md): those it can finish in
    time at the chosen version's speed, of its homogeneous-redundancy class or version."""

    app_id: int
    speed: float  # floating-point operations per second of the version it would run
    hr_class: str = ""  # "" when the app has no homogeneous redundancy
    pinned_version: int | None = None  # the version, when the app pins one per unit
    now: str | None = None  # the database's form of now: a class or version holds until homogeneous_until


def app_condition(
    filters: list[AppFilter], *, holds_waived_before: str | None = None
) -> tuple[str, list[Any]]:
    """SQL true for a unit ``u`` of one of these apps that this host may get. With
    ``holds_waived_before`` (reserved replicas), a replica ``r`` made by then ignores its
    unit's homogeneous-redundancy hold: an audit or a dispute waits that long for a host of
    the unit's kind, then goes to any host that may take it, so a kind of host made up by
    colluders cannot keep their units from being checked (docs/platforms.md)."""
    parts: list[str] = []
    params: list[Any] = []
    waived = " OR r.created <= %s" if holds_waived_before is not None else ""
    for item in filters:
        tests = ["u.app_id = %s", "u.fpops_estimate <= %s * u.delay_bound"]
        params += [item.app_id, item.speed * DEADLINE_SHARE]
        if item.hr_class:
            tests.append(f"(u.hr_class IN ('', %s) OR u.homogeneous_until < %s{waived})")
            params += [item.hr_class, item.now, *([holds_waived_before] if waived else [])]
        if item.pinned_version is not None:
            tests.append(
                "(u.pinned_version_id IS NULL OR u.pinned_version_id = %s"
                f" OR u.homogeneous_until < %s{waived})"
            )
            params += [item.pinned_version, item.now, *([holds_waived_before] if waived else [])]
        parts.append(f"({' AND '.join(tests)})")
    return f"({' OR '.join(parts)})", params


def _narrowing(
    disk_bytes: int | None, made_before: datetime | None, unreliable_at: datetime | None, queue: Queue | None
) -> tuple[str, list[Any]]:
    """The candidates' optional conditions (see ``candidates``), with their parameters."""
    adapt = connection.ops.adapt_datetimefield_value
    extra = ""
    params: list[Any] = []
    if disk_bytes is not None:
        extra += " AND u.disk_bytes <= %s"
        params.append(disk_bytes)
    if made_before is not None:
        extra += " AND r.created <= %s"
        params.append(adapt(made_before))
    if unreliable_at is not None:
        extra += " AND (r.reliable_until IS NULL OR r.reliable_until <= %s)"
        params.append(adapt(unreliable_at))
    if queue is not None and queue.share_id is None:
        extra += " AND r.share_id IS NULL"
    elif queue is not None:
        extra += " AND r.share_id = %s"
        params.append(queue.share_id)
    return extra, params


@dataclass(frozen=True)
class Queue:
    """One share's unsent replicas (fair share reads them share by share)."""

    share_id: int | None  # None: work outside batches, the project's own


def candidates(
    *,
    holder: Holder,
    memory_bytes: int,
    disk_bytes: int | None,
    reserved: bool,
    apps: list[AppFilter],
    count: int,
    made_before: datetime | None = None,
    holds_waived_before: datetime | None = None,
    unreliable_at: datetime | None = None,
    queue: Queue | None = None,
) -> list[Candidate]:
    """Up to ``count`` unsent replicas, reserved or not, of these apps that fit in
    ``memory_bytes`` and ``disk_bytes`` (None: not known), by priority then dispatch key,
    locked (``FOR UPDATE SKIP LOCKED``: concurrent claims pass over each other's); reserved
    ones only if made by ``made_before``, and free of HR holds if made by ``holds_waived_before``.
    For a host that is not reliable, ``unreliable_at`` is now: accelerated replicas only once
    they have waited for a reliable host (``Replica.reliable_until``). With ``queue``, only
    that share's replicas, by its index (``shares.policy`` chooses the order of shares)."""
    not_for, not_for_params = unit_not_for(holder, reserved=reserved)
    adapt = connection.ops.adapt_datetimefield_value
    waived = None if holds_waived_before is None else adapt(holds_waived_before)
    condition, condition_params = app_condition(apps, holds_waived_before=waived)
    params: list[Any] = [memory_bytes, *condition_params]
    extra, extra_params = _narrowing(disk_bytes, made_before, unreliable_at, queue)
    params += extra_params
    # A share's queue is read in its index's order (the share first, fixed by the test above).
    order = "r.share_id, r.priority DESC, r.dispatch_key" if queue else "r.priority DESC, r.dispatch_key"
    lock = " FOR UPDATE OF r SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    sql = f"""
        SELECT r.id, r.workunit_id, u.app_id, u.fpops_estimate,
               u.hr_class, u.pinned_version_id, u.homogeneous_until, u.delay_bound,
               r.reliable_until IS NOT NULL, r.share_id
        FROM {REPLICAS} r JOIN {UNITS} u ON u.id = r.workunit_id
        WHERE r.state = {literal(ReplicaState.UNSENT)} AND {"r.reserved" if reserved else "NOT r.reserved"}
          AND u.memory_bytes <= %s AND {condition}{extra} AND {not_for}
        ORDER BY {order}
        LIMIT %s{lock}"""
    with prepared_cursor() as cursor:
        cursor.execute(sql, [*params, *not_for_params, count])
        return [
            Candidate(r, u, a, f, reserved, hr, pinned, as_datetime(until), delay, bool(fast), share)
            for r, u, a, f, hr, pinned, until, delay, fast, share in cursor.fetchall()
        ]


# Whether any replica waits to be sent, one probe of each dispatch index. A claim never makes
# replicas, so when none waits no claim can give anything, and a request for work is answered
# without one (BOINC's scheduler answers from its feeder's empty shared memory so). The
# state is spelled in the SQL: a partial index matches a literal, not a bound parameter.
# Each probe reads its index in the index's order, not as an EXISTS: a batch's split analyzes
# the table while all its replicas wait (core.statistics), and on those statistics the
# planner answered an EXISTS with a sequential scan that would meet a waiting row at once; once
# they had all gone out it read the whole table instead, 2-8 ms a request for work while the
# last results came back (bench.throughput). An ordered read with a LIMIT keeps the index.
_UNSENT = f"FROM {REPLICAS} WHERE state = {literal(ReplicaState.UNSENT)}"
ANY_UNSENT = f"""
SELECT (SELECT 1 {_UNSENT} AND NOT reserved
        ORDER BY share_id, priority DESC, dispatch_key LIMIT 1) IS NOT NULL
    OR (SELECT 1 {_UNSENT} AND reserved ORDER BY priority DESC, dispatch_key LIMIT 1) IS NOT NULL"""


def any_unsent() -> bool:
    """Whether any replica waits to be sent, to anyone."""
    with prepared_cursor() as cursor:
        cursor.execute(ANY_UNSENT)
        return bool(cursor.fetchone()[0])


@dataclass(frozen=True)
class TooBig:
    """What the head of the queue needs that this host lacks."""

    memory: bool
    disk: bool
    speed: bool  # it could not finish them by their deadlines


def too_big(*, app_ids: list[int], memory_bytes: int, disk_bytes: int | None, speed: float) -> TooBig:
    """Whether the next units in the queue of these apps need more memory, more disk, or more
    speed (``speed``: the host's operations per second towards deadlines, its fastest version
    at its availability) than the host has: to tell a host that got nothing why. It reads the
    head of the queue only (PROBE_UNITS, share by share in dispatch order, by the index every
    claim uses), so a host that asks again and again cannot make it scan the queue."""
    if not app_ids:
        return TooBig(False, False, False)
    apps = ", ".join(["%s"] * len(app_ids))
    sql = f"""
        SELECT MAX(head.memory_bytes), MAX(head.disk_bytes), MIN(head.rate) FROM (
            SELECT u.memory_bytes, u.disk_bytes, u.fpops_estimate / u.delay_bound AS rate
            FROM {REPLICAS} r JOIN {UNITS} u ON u.id = r.workunit_id
            WHERE r.state = {literal(ReplicaState.UNSENT)} AND NOT r.reserved AND u.app_id IN ({apps})
            ORDER BY r.share_id, r.priority DESC, r.dispatch_key
            LIMIT {PROBE_UNITS:d}) head"""
    with prepared_cursor() as cursor:
        cursor.execute(sql, app_ids)
        memory, disk, rate = cursor.fetchone()
    return TooBig(
        memory=(memory or 0) > memory_bytes,
        disk=disk_bytes is not None and (disk or 0) > disk_bytes,
        speed=rate is not None and rate > speed * DEADLINE_SHARE,
    )
