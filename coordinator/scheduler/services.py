"""The scheduler RPC: record a host's reports and hand it work, in one transaction.

Reports lock their work units first (in id order) and then update replicas, the same
order the transitioner uses. Dispatch claims unsent replicas with
``SELECT … FOR UPDATE SKIP LOCKED`` after locking the volunteer's row, so two hosts of
one volunteer never both take a replica of the same unit; the unique constraint on
(work unit, volunteer) backs that up in the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from coordinator.accounts.limits import check_host_figures
from coordinator.accounts.models import Host
from coordinator.core import objects
from coordinator.core.errors import Conflict, InvalidInput, NotFound, PermissionRefused
from coordinator.scheduler.dispatch import Assignment, WorkRequest, claim_work
from coordinator.scheduler.report_writer import ReportRow, write_reports
from coordinator.validation.credit import rac_now
from coordinator.validation.reputation import Event
from coordinator.validation.standing import HostEvent, record_events
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica, WorkUnit

__all__ = ["Assignment", "WorkRequest", "claim_work", "scheduler_rpc"]

REPORTABLE = Q(state=ReplicaState.IN_PROGRESS) | Q(state=ReplicaState.OVER, outcome=Outcome.NO_REPLY)


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


# replica id → its uploaded output, measured and sealed by the coordinator
Uploaded = dict[int, objects.Sealed]


@dataclass(frozen=True)
class ReportAck:
    replica: int
    status: str  # "accepted", "duplicate", or "cancelled" (the project had called it off)


@dataclass(frozen=True)
class HostInfo:
    """What a host measured about itself (``tessera benchmark``), sent with a scheduler RPC."""

    flops: float | None = None
    n_cpus: int | None = None
    memory_bytes: int | None = None

    def changes(self) -> dict[str, float | int]:
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class CreditStanding:
    """Credit as BOINC's scheduler reply carries it, so a client can show it offline."""

    host_total: Decimal
    host_rac: float
    volunteer_total: Decimal
    volunteer_rac: float


@dataclass(frozen=True)
class RpcResult:
    acks: list[ReportAck]
    assignments: list[Assignment]
    next_rpc_seconds: int
    touched_units: list[int]  # units whose replicas were reported: they need a transition
    credit: CreditStanding | None = None
    abort: list[int] = field(default_factory=list)  # replicas the host must stop crunching


def _is_called_off(row: Replica) -> bool:
    """Sent, then called off because its batch was cancelled: a report of it is thanked for
    and dropped (the host could not know before its next call)."""
    return row.state == ReplicaState.OVER and row.outcome == Outcome.DIDNT_NEED


def _is_reportable(row: Replica) -> bool:
    """In progress, or timed out and still welcome (the Python twin of ``REPORTABLE``)."""
    return row.state == ReplicaState.IN_PROGRESS or (
        row.state == ReplicaState.OVER and row.outcome == Outcome.NO_REPLY
    )


def _is_same_report(row: Replica, report: ReportIn) -> bool:
    return row.outcome == report.status and row.output_sha256 == report.output_sha256


def upload_key(unit_id: int, replica_id: int) -> str:
    """Where a host uploads a replica's output: fixed by the upload policy, so a host can only
    ever write its own replica's object."""
    return f"uploads/{unit_id}/{replica_id}"


def output_key(unit_id: int, replica_id: int) -> str:
    """Where the checked output is kept (with its hash appended): no host can write here."""
    return f"outputs/{unit_id}/{replica_id}"


def check_uploads(*, host: Host, reports: list[ReportIn]) -> Uploaded:
    """Before the RPC's transaction: read once every uploaded output these reports name and
    the host may still report, for its size and SHA-256, and seal it (objects.seal). Nothing
    else is read, so a report cannot make the coordinator fetch objects not the host's own."""
    wanted = [r.replica for r in reports if r.status == Outcome.SUCCESS and r.output_inline is None]
    if not wanted:
        return {}
    rows = Replica.objects.filter(REPORTABLE, pk__in=wanted, host=host).values_list(
        "pk", "workunit_id", "app_version__max_output_bytes"
    )
    found: Uploaded = {}
    for pk, unit_id, limit in rows:
        try:
            sealed = objects.seal(upload_key(unit_id, pk), into=output_key(unit_id, pk), max_bytes=limit)
        except (objects.ObjectTooLarge, objects.ObjectChanged):
            sealed = objects.Sealed("", limit + 1, "", "")  # matches no report: refused as a mismatch
        if sealed is not None:
            found[pk] = sealed
    return found


def forget_uploads(uploaded: Uploaded) -> None:
    """After the reports committed: the hosts' own copies are no longer needed."""
    for sealed in uploaded.values():
        if sealed.upload:
            objects.delete(sealed.upload)


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
    )


@dataclass(frozen=True)
class Recorded:
    acks: list[ReportAck]
    touched_units: list[int]
    # Reputation events for reported errors: written after the claim, because hosts are
    # locked after volunteers everywhere (validation.standing).
    error_events: list[HostEvent]


def record_reports(
    *, host: Host, reports: list[ReportIn], now: datetime, uploaded: Uploaded | None = None
) -> Recorded:
    """Record finished replicas; a report repeated identically is acknowledged again.

    Returns the acknowledgements and the units whose replicas changed.

    Any report the host may not make (unknown replica, another host's, already reported
    differently, bad output) refuses the whole request: the caller's transaction rolls back.
    """
    ids = [report.replica for report in reports]
    if len(set(ids)) != len(ids):
        raise InvalidInput("a replica is reported twice in one request", code="duplicate_report")
    rows = {
        row.pk: row
        for row in Replica.objects.filter(id__in=ids).only(
            "id",
            "workunit_id",
            "host_id",
            "state",
            "outcome",
            "output_sha256",
            "output_size",
            "app_version_id",
        )
    }
    to_record: list[tuple[Replica, ReportIn]] = []
    acks: list[ReportAck] = []
    for report in reports:
        row = rows.get(report.replica)
        if row is None:
            raise NotFound(f"replica {report.replica} does not exist", code="unknown_replica")
        if row.host_id != host.pk:
            raise PermissionRefused(
                f"replica {report.replica} was not sent to this host", code="not_your_replica"
            )
        if _is_called_off(row):
            acks.append(ReportAck(report.replica, "cancelled"))
            continue
        if not _is_reportable(row):
            if _is_same_report(row, report):
                acks.append(ReportAck(report.replica, "duplicate"))
                continue
            raise Conflict(
                f"replica {report.replica} was already reported differently", code="already_reported"
            )
        _check_output(row, report, uploaded or {})
        to_record.append((row, report))
    if not to_record:
        return Recorded(acks, [], [])

    unit_ids = sorted({row.workunit_id for row, _ in to_record})
    app_of = dict(
        WorkUnit.objects.select_for_update()
        .filter(id__in=unit_ids)
        .order_by("id")
        .values_list("id", "app_id")
    )
    recorded = [report for _, report in to_record]
    rows_out = [_report_row(report, row, uploaded or {}) for row, report in to_record]
    updated = write_reports(host_id=host.pk, rows=rows_out, now=now)
    if updated != len(recorded):
        raise Conflict("a replica changed while it was being reported; send the reports again", code="retry")
    acks.extend(ReportAck(report.replica, "accepted") for report in recorded)
    errors = [
        HostEvent(host.pk, app_of[row.workunit_id], row.app_version_id, Event.ERROR)
        for row, r in to_record
        if r.status != Outcome.SUCCESS
    ]
    WorkUnit.objects.filter(id__in=unit_ids).update(transition_time=now)
    return Recorded(acks, unit_ids, errors)


@transaction.atomic
def scheduler_rpc(
    *,
    host: Host,
    reports: list[ReportIn],
    work_request: WorkRequest,
    now: datetime,
    host_info: HostInfo | None = None,
    in_progress: list[int] | None = None,
    uploaded: Uploaded | None = None,
    network: str | None = None,
) -> RpcResult:
    """BOINC's scheduler request: reports in, work out, all or nothing. ``in_progress`` names
    the replicas the host is still crunching; the reply says which of them to abort.
    ``uploaded`` is what :func:`check_uploads` measured before this transaction; ``network``
    is the network the request came from (``accounts.relation.network_of``)."""
    if len(reports) > settings.TESSERA["MAX_REPORTS_PER_RPC"]:
        raise InvalidInput(f"at most {settings.TESSERA['MAX_REPORTS_PER_RPC']} reports per request")
    changes: dict[str, object] = dict(host_info.changes()) if host_info is not None else {}
    check_host_figures(n_cpus=changes.get("n_cpus"), flops=changes.get("flops"))
    if network is not None and network != host.network:
        changes["network"] = network
    if changes:
        # Before dispatch, so the new speed, memory size and network shape the work handed out now.
        Host.objects.filter(pk=host.pk).update(**changes)
        for name, value in changes.items():
            setattr(host, name, value)
    recorded = (
        record_reports(host=host, reports=reports, now=now, uploaded=uploaded)
        if reports
        else Recorded([], [], [])
    )
    if work_request.wants_work:
        assignments = claim_work(host=host, request=work_request, now=now)
    else:
        Host.objects.filter(pk=host.pk).update(last_contact=now)
        assignments = []
    record_events(recorded.error_events, now=now)
    delay = settings.TESSERA[
        "RPC_DELAY_WITH_WORK" if assignments or not work_request.wants_work else "RPC_DELAY_NO_WORK"
    ]
    return RpcResult(
        acks=recorded.acks,
        assignments=assignments,
        next_rpc_seconds=delay,
        touched_units=recorded.touched_units,
        credit=credit_standing(host=host, now=now),
        abort=called_off(host=host, replica_ids=in_progress or []),
    )


def called_off(*, host: Host, replica_ids: list[int]) -> list[int]:
    """Which of these replicas, held by ``host``, the project no longer wants (BOINC's
    result_abort). Only the host's own replicas: it learns nothing about anyone else's."""
    if not replica_ids:
        return []
    called = Replica.objects.filter(
        id__in=replica_ids, host=host, state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED
    )
    return sorted(called.values_list("id", flat=True))


def credit_standing(*, host: Host, now: datetime) -> CreditStanding:
    """The host's and its volunteer's credit now, in one query (RAC decayed to ``now``)."""
    row = (
        Host.objects.filter(pk=host.pk)
        .values(
            "total_credit",
            "rac",
            "rac_time",
            "volunteer__total_credit",
            "volunteer__rac",
            "volunteer__rac_time",
        )
        .get()
    )
    return CreditStanding(
        host_total=row["total_credit"],
        host_rac=rac_now(row["rac"], row["rac_time"], now),
        volunteer_total=row["volunteer__total_credit"],
        volunteer_rac=rac_now(row["volunteer__rac"], row["volunteer__rac_time"], now),
    )


def _reportable_replica(*, host: Host, replica_id: int) -> Replica:
    replica = Replica.objects.select_related("app_version", "workunit").filter(pk=replica_id).first()
    if replica is None:
        raise NotFound(f"replica {replica_id} does not exist", code="unknown_replica")
    if replica.host_id != host.pk:
        raise PermissionRefused(f"replica {replica_id} was not sent to this host", code="not_your_replica")
    return replica


def upload_policy(*, host: Host, replica_id: int) -> objects.UploadPolicy:
    """A presigned POST policy for this replica's output, for the host that holds it: the key,
    the app's output limit and a short expiry are fixed, so the bytes go straight to storage."""
    replica = _reportable_replica(host=host, replica_id=replica_id)
    if not _is_reportable(replica):
        raise Conflict(f"replica {replica_id} is already reported", code="already_reported")
    return objects.presigned_post(
        upload_key(replica.workunit_id, replica.pk),
        max_bytes=replica.app_version.max_output_bytes,
        expires_in=settings.TESSERA["UPLOAD_POLICY_SECONDS"],
    )
