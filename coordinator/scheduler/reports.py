"""Recording a host's reports: which it may make, checked against what it holds and what it
uploaded, then written in one statement (``report_writer``).

Reports lock their work units first (in id order) and then update replicas, the same order
the transitioner uses, so the two never deadlock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Q

from coordinator.accounts.models import Host
from coordinator.core import objects
from coordinator.core.compiled import CompiledReadMany
from coordinator.core.errors import Conflict, InvalidInput, NotFound, PermissionRefused
from coordinator.scheduler.report_writer import ReportRow, lock_and_mark_units, write_reports
from coordinator.standing.reputation import Event
from coordinator.standing.services import HostEvent, Sample, record_speeds
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica

REPORTABLE = Q(state=ReplicaState.IN_PROGRESS) | Q(state=ReplicaState.OVER, outcome=Outcome.NO_REPLY)
ROW_FIELDS = (
    "id",
    "workunit_id",
    "host_id",
    "state",
    "outcome",
    "output_sha256",
    "output_size",
    "app_version_id",
    "sent_at",  # for the turnaround measured at report
)
REPORTED_ROWS = CompiledReadMany(lambda ids: Replica.objects.filter(id__in=ids).only(*ROW_FIELDS))

# replica id → its uploaded output, measured and sealed by the coordinator (``uploads``)
Uploaded = dict[int, objects.Sealed]


MIN_ELAPSED = 0.01  # seconds: a shorter claim counts as this
MAX_SPEEDUP = 1000.0  # a version's speed is at most this many of the fastest plausible cores


@dataclass(frozen=True)
class ReportIn:
    """One finished replica as a host reports it (already well-formed)."""

    replica: int
    status: Outcome  # SUCCESS or CLIENT_ERROR
    cpu_time: float
    exit_code: int = 0
    output_sha256: str = ""
    output_size: int | None = None
    output_inline: bytes | None = None
    message: str = ""
    fuel: int | None = None  # a wasm task's fuel, as its host claims it
    elapsed: float | None = None  # seconds it ran (suspensions excluded): the host's speed on its version


@dataclass(frozen=True)
class ReportAck:
    replica: int
    status: str  # "accepted", "duplicate", or "cancelled" (the project had called it off)


@dataclass(frozen=True)
class Recorded:
    acks: list[ReportAck]
    touched_units: list[int]
    # Reputation events for reported errors: written after the claim, because hosts are
    # locked after volunteers everywhere (standing.services).
    error_events: list[HostEvent]


NOTHING_RECORDED = Recorded([], [], [])


def is_called_off(row: Replica) -> bool:
    """Sent, then called off because its batch was cancelled: a report of it is thanked for
    and dropped (the host could not know before its next call)."""
    return row.state == ReplicaState.OVER and row.outcome == Outcome.DIDNT_NEED


def is_reportable(row: Replica) -> bool:
    """In progress, or timed out and still welcome (the Python twin of ``REPORTABLE``)."""
    return row.state == ReplicaState.IN_PROGRESS or (
        row.state == ReplicaState.OVER and row.outcome == Outcome.NO_REPLY
    )


def _is_same_report(row: Replica, report: ReportIn) -> bool:
    return row.outcome == report.status and row.output_sha256 == report.output_sha256


def _check_output(row: Replica, report: ReportIn, uploaded: Uploaded) -> None:
    if report.status != Outcome.SUCCESS:
        return
    if report.output_inline is not None:
        if len(report.output_inline) != report.output_size or (
            hashlib.sha256(report.output_inline).hexdigest() != report.output_sha256
        ):
            raise InvalidInput(
                f"replica {row.pk}: the inline output does not match output_sha256 and output_size",
                code="output_mismatch",
            )
    elif row.pk not in uploaded:
        raise InvalidInput(f"replica {row.pk}: upload the output before reporting it", code="output_missing")
    elif (uploaded[row.pk].size, uploaded[row.pk].sha256) != (report.output_size, report.output_sha256):
        raise InvalidInput(
            f"replica {row.pk}: output_sha256 and output_size do not match the uploaded output",
            code="output_mismatch",
        )


def _report_row(report: ReportIn, row: Replica, uploaded: Uploaded) -> ReportRow:
    success = report.status == Outcome.SUCCESS
    stored = success and report.output_inline is None
    return (
        report.replica,
        report.status.value,
        report.cpu_time,
        report.exit_code,
        report.message[:1000],
        report.output_sha256 if success else "",
        report.output_size if success else None,
        report.output_inline,
        uploaded[row.pk].name if stored else "",
        uploaded[row.pk].sha256 if stored else "",
        report.fuel if success else None,
    )


def _sort_reports(
    host: Host, reports: list[ReportIn], uploaded: Uploaded
) -> tuple[list[ReportAck], list[tuple[Replica, ReportIn]]]:
    """Acknowledge what needs no writing (called off, repeated identically) and keep what
    does; any report the host may not make refuses the whole request."""
    ids = [report.replica for report in reports]
    if len(set(ids)) != len(ids):
        raise InvalidInput("a replica is reported twice in one request", code="duplicate_report")
    rows = {row.pk: row for row in REPORTED_ROWS.many(ids)}
    acks: list[ReportAck] = []
    to_record: list[tuple[Replica, ReportIn]] = []
    for report in reports:
        row = rows.get(report.replica)
        if row is None:
            raise NotFound(f"replica {report.replica} does not exist", code="unknown_replica")
        if row.host_id != host.pk:
            raise PermissionRefused(
                f"replica {report.replica} was not sent to this host", code="not_your_replica"
            )
        if is_called_off(row):
            acks.append(ReportAck(report.replica, "cancelled"))
        elif is_reportable(row):
            _check_output(row, report, uploaded)
            to_record.append((row, report))
        elif _is_same_report(row, report):
            acks.append(ReportAck(report.replica, "duplicate"))
        else:
            raise Conflict(
                f"replica {report.replica} was already reported differently", code="already_reported"
            )
    return acks, to_record


def record_reports(
    *, host: Host, reports: list[ReportIn], now: datetime, uploaded: Uploaded | None = None
) -> Recorded:
    """Record finished replicas; a report repeated identically is acknowledged again.

    Any report the host may not make (unknown replica, another host's, already reported
    differently, bad output) refuses the whole request: the caller's transaction rolls back.
    """
    acks, to_record = _sort_reports(host, reports, uploaded or {})
    if not to_record:
        return Recorded(acks, [], [])
    unit_ids = sorted({row.workunit_id for row, _ in to_record})
    units = lock_and_mark_units(unit_ids, now)  # due for the transitioner once this commits
    app_of = {unit_id: app_id for unit_id, (app_id, _) in units.items()}
    fpops_of = {unit_id: fpops for unit_id, (_, fpops) in units.items()}
    rows_out = [_report_row(report, row, uploaded or {}) for row, report in to_record]
    if write_reports(host_id=host.pk, rows=rows_out, now=now) != len(rows_out):
        raise Conflict("a replica changed while it was being reported; send the reports again", code="retry")
    acks.extend(ReportAck(report.replica, "accepted") for _, report in to_record)
    errors = [
        HostEvent(host.pk, app_of[row.workunit_id], row.app_version_id, Event.ERROR)
        for row, report in to_record
        if report.status != Outcome.SUCCESS
    ]
    record_speeds(host=host, samples=_speed_samples(to_record, fpops_of, now))
    return Recorded(acks, unit_ids, errors)


def _speed_samples(
    to_record: list[tuple[Replica, ReportIn]], fpops_of: dict[int, float], now: datetime
) -> dict[int, list[Sample]]:
    """By app version, for each success that says how long it ran: its floating-point
    operations per second (clamped: a host's claim only steers what it gets itself), and the
    seconds from sending to this report (measured here, not claimed)."""
    samples: dict[int, list[Sample]] = {}
    ceiling = settings.TESSERA["MAX_HOST_FLOPS"] * MAX_SPEEDUP
    for row, report in to_record:
        if report.status != Outcome.SUCCESS or not report.elapsed or row.app_version_id is None:
            continue
        speed = fpops_of[row.workunit_id] / max(report.elapsed, MIN_ELAPSED)
        turnaround = max(0.0, (now - row.sent_at).total_seconds()) if row.sent_at else 0.0
        samples.setdefault(row.app_version_id, []).append(Sample(min(speed, ceiling), turnaround))
    return samples
