"""BOINC's scheduler request as one service: reports in, work out, the reply's standing.

``handle_scheduler_request`` is the whole request, independent of the wire format: the JSON
view parses into a ``SchedulerRequest`` and serializes the ``RpcResult``; another protocol
endpoint does the same with its own format. The steps are modules of their own: ``uploads``
(checked before the transaction), ``reports``, ``dispatch``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from coordinator.accounts.limits import check_host_figures
from coordinator.accounts.models import Host
from coordinator.core.errors import InvalidInput, Unavailable
from coordinator.core.hints import hint
from coordinator.core.metrics import DISPATCHED, REPORTED
from coordinator.scheduler.claim_writes import touch_host
from coordinator.scheduler.dispatch import Assignment, WorkRequest, claim_work, why_no_work
from coordinator.scheduler.dispatch_sql import any_unsent
from coordinator.scheduler.idle_hosts import back_up_for_idle_host
from coordinator.scheduler.reports import NOTHING_RECORDED, ReportAck, ReportIn, Uploaded, record_reports
from coordinator.scheduler.tasks import after_reports
from coordinator.scheduler.uploads import check_uploads, forget_uploads
from coordinator.standing.credit import rac_now
from coordinator.standing.services import record_events
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica


@dataclass(frozen=True)
class HostInfo:
    """What a host measured about itself (``tessera benchmark``), sent with a scheduler RPC."""

    flops: float | None = None
    n_cpus: int | None = None
    memory_bytes: int | None = None
    # The Host fields of what it says it is (accounts.host_description.host_fields).
    description: dict[str, Any] = field(default_factory=dict)

    def changes(self) -> dict[str, Any]:
        figures = {"flops": self.flops, "n_cpus": self.n_cpus, "memory_bytes": self.memory_bytes}
        return {**{name: value for name, value in figures.items() if value is not None}, **self.description}


@dataclass(frozen=True)
class SchedulerRequest:
    """A host's scheduler request, whatever format it came in."""

    reports: list[ReportIn] = field(default_factory=list)
    work: WorkRequest = field(default_factory=WorkRequest)
    host_info: HostInfo | None = None
    in_progress: list[int] = field(default_factory=list)  # replicas it still crunches
    network: str | None = None  # where it came from (accounts.relation.network_of)
    # The outputs already checked and sealed by the caller (the BOINC endpoint seals them as
    # it reads the reports); None: ``uploads.check_uploads`` does it here.
    uploaded: Uploaded | None = None


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
    touched_units: list[int]  # units reported on or backed up: they need a transition
    credit: CreditStanding | None = None
    abort: list[int] = field(default_factory=list)  # replicas the host must stop crunching
    messages: list[str] = field(default_factory=list)  # for the volunteer: why no work came


def handle_scheduler_request(*, host: Host, request: SchedulerRequest, now: datetime) -> RpcResult:
    """The whole request: uploads checked outside the transaction, the transaction, then the
    hosts' upload copies dropped, the touched units' transitions hinted, the counters. Down
    for maintenance (``MAINTENANCE``), nothing is read or written."""
    refuse_if_down()
    uploaded = (
        request.uploaded
        if request.uploaded is not None
        else check_uploads(host=host, reports=request.reports)
    )
    result = scheduler_rpc(
        host=host,
        reports=request.reports,
        work_request=request.work,
        host_info=request.host_info,
        in_progress=request.in_progress,
        uploaded=uploaded,
        network=request.network,
        now=now,
    )
    forget_uploads(uploaded)  # the reports are recorded: what was checked is kept
    if result.touched_units:
        hint(after_reports, result.touched_units)
    DISPATCHED.inc(len(result.assignments))
    for ack in result.acks:
        REPORTED.labels(ack.status).inc()
    return result


def refuse_if_down() -> None:
    """Unavailable, with a retry delay, while the project is down for maintenance."""
    if settings.TESSERA["MAINTENANCE"]:
        raise Unavailable(
            f"the project is down for maintenance: {settings.TESSERA['MAINTENANCE']}",
            code="maintenance",
            retry_after=settings.TESSERA["MAINTENANCE_RETRY_SECONDS"],
        )


def _apply_host_changes(host: Host, host_info: HostInfo | None, network: str | None) -> None:
    """Before dispatch, so the new speed, memory size and network shape the work handed out
    now; implausible figures refuse the request."""
    said = host_info.changes() if host_info is not None else {}
    if host_info is not None:
        check_host_figures(n_cpus=host_info.n_cpus, flops=host_info.flops)
    # Only what differs: most clients say the same each time, and an unchanged row costs an UPDATE.
    changes: dict[str, object] = {name: value for name, value in said.items() if getattr(host, name) != value}
    if network is not None and network != host.network:
        changes["network"] = network
    if changes:
        Host.objects.filter(pk=host.pk).update(**changes)
        for name, value in changes.items():
            setattr(host, name, value)


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
    """The request's transaction, all or nothing. ``in_progress`` names the replicas the host
    is still crunching; the reply says which of them to abort. ``uploaded`` is what
    ``uploads.check_uploads`` measured before this transaction."""
    if len(reports) > settings.TESSERA["MAX_REPORTS_PER_RPC"]:
        raise InvalidInput(f"at most {settings.TESSERA['MAX_REPORTS_PER_RPC']} reports per request")
    _apply_host_changes(host, host_info, network)
    recorded = (
        record_reports(host=host, reports=reports, now=now, uploaded=uploaded)
        if reports
        else NOTHING_RECORDED
    )
    assignments, backed_up = _work_for(host, work_request, now)
    touched = sorted({*recorded.touched_units, *backed_up}) if backed_up else recorded.touched_units
    messages = why_no_work(host) if work_request.wants_work and not assignments else []
    record_events(recorded.error_events, now=now)
    # A host whose idle cores just backed units up comes back soon to take the backups.
    delay = settings.TESSERA[
        "RPC_DELAY_WITH_WORK"
        if assignments or backed_up or not work_request.wants_work
        else "RPC_DELAY_NO_WORK"
    ]
    return RpcResult(
        acks=recorded.acks,
        assignments=assignments,
        next_rpc_seconds=delay,
        touched_units=touched,
        credit=credit_standing(host=host, now=now),
        abort=called_off(host=host, replica_ids=in_progress or []),
        messages=messages,
    )


def _work_for(host: Host, work_request: WorkRequest, now: datetime) -> tuple[list[Assignment], list[int]]:
    """The tasks claimed for the host, and the units its idle cores had backed up (only when
    it asked for work and nothing waits for anyone: then no claim could give anything)."""
    if work_request.wants_work and any_unsent():
        return claim_work(host=host, request=work_request, now=now), []
    touch_host(host, now)
    return [], back_up_for_idle_host(host, now=now) if work_request.wants_work else []


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
    """The host's and its volunteer's credit as authentication read them, this request (RAC
    decayed to ``now``): nothing in the request grants credit, so no second read."""
    volunteer = host.volunteer
    return CreditStanding(
        host_total=host.total_credit,
        host_rac=rac_now(host.rac, host.rac_time, now),
        volunteer_total=volunteer.total_credit,
        volunteer_rac=rac_now(volunteer.rac, volunteer.rac_time, now),
    )
