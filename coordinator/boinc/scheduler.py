"""A BOINC client's scheduler request, run through the same service as ours (docs/boinc.md).

The client is authenticated by its account key (``accounts.key_holder``), its host found or
made (a bearer host: ``Host.bearer``), and its request becomes a ``SchedulerRequest`` for
``scheduler.rpc.handle_scheduler_request``: the same reports, dispatch, uploads and credit as a
``tessera`` client's. What differs is only BOINC's manners: every reported result is
acknowledged, even one we cannot use (else the client sends it forever), a result the client
lost is sent again, and it gets BOINC's versions of the apps (runtime "boinc").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from coordinator.accounts.limits import check_host_figures, check_registration_rate, starting_quota
from coordinator.accounts.models import Host, Volunteer
from coordinator.boinc import accounts
from coordinator.boinc.models import BoincAccountKey, BoincHost
from coordinator.boinc.request import BoincRequest, ReportedResult
from coordinator.core import objects
from coordinator.scheduler.dispatch import Assignment, WorkRequest
from coordinator.scheduler.reports import ReportIn, Uploaded, is_called_off, is_reportable
from coordinator.scheduler.rpc import (
    HostInfo,
    RpcResult,
    SchedulerRequest,
    handle_scheduler_request,
    refuse_if_down,
)
from coordinator.scheduler.uploads import output_key, upload_key
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica

RESULT_SUFFIX = re.compile(r"_r(\d{1,18})$")
FILES_UPLOADED = 5  # BOINC's RESULT_FILES_UPLOADED: the task ran and its outputs went up
MAX_RESENDS = 50


def result_name(unit_name: str, replica_id: int) -> str:
    """The name a BOINC client knows a task by; the replica id is its suffix."""
    return f"{unit_name}_r{replica_id}"


def replica_of(name: str) -> int | None:
    found = RESULT_SUFFIX.search(name)
    return int(found.group(1)) if found else None


@dataclass
class BoincReply:
    """What the reply carries beyond ``RpcResult``: the host, whether it is new, the names to
    acknowledge and abort, the lost tasks sent again."""

    host: Host
    created: bool
    rpc: RpcResult | None
    acks: list[str] = field(default_factory=list)
    aborts: list[str] = field(default_factory=list)
    resent: list[Assignment] = field(default_factory=list)


def boinc_host(request: BoincRequest, *, network: str, now: datetime) -> tuple[Host, bool]:
    """The host this request comes from: the one named by ``hostid`` if it is the BOINC host
    of a volunteer this live key belongs to and its ``rpc_seqno`` did not go back (BOINC's
    sign of a copied client: a new host then), else a new bearer host."""
    known = _known_host(request) if request.hostid else None
    if known is not None and request.rpc_seqno >= known.boinc.rpc_seqno:
        BoincHost.objects.filter(pk=known.pk).update(
            rpc_seqno=request.rpc_seqno, client_version=request.client_version
        )
        return known, False
    key = accounts.key_holder(request.authenticator)
    return _new_host(request, key.volunteer, key, network=network, now=now), True


def _known_host(request: BoincRequest) -> Host | None:
    """The named bearer host with its volunteer and user, in one query joined on a live key of
    that volunteer (the hot path: a known host's every request)."""
    if not request.authenticator or len(request.authenticator) > accounts.MAX_KEY_LENGTH:
        return None
    return (
        Host.objects.filter(
            pk=request.hostid,
            bearer=True,
            volunteer__boinc_keys__key_hash=accounts.hash_key(request.authenticator),
            volunteer__boinc_keys__revoked=None,
            volunteer__user__is_active=True,
        )
        .select_related("boinc", "volunteer__user")
        .first()
    )


def _new_host(
    request: BoincRequest, volunteer: Volunteer, key: BoincAccountKey, *, network: str, now: datetime
) -> Host:
    check_host_figures(n_cpus=request.n_cpus, flops=request.flops)
    with transaction.atomic():
        list(Volunteer.objects.select_for_update().filter(pk=volunteer.pk).values_list("pk"))
        check_registration_rate(volunteer=volunteer, now=now)
        host = Host.objects.create(
            volunteer=volunteer,
            public_key=f"boinc:{secrets.token_hex(16)}",  # no key: it can never sign a request
            bearer=True,
            name=f"boinc-{(request.host_cpid or secrets.token_hex(4))[:8]}",
            platform=request.platforms[0],
            platforms=request.platforms,
            runtimes=["boinc"],
            n_cpus=request.n_cpus,
            memory_bytes=request.memory_bytes,
            flops=request.flops,
            daily_quota=starting_quota(volunteer=volunteer, now=now),
            registered_network=network,
            network=network,
            last_contact=now,
            **request.description,
        )
        BoincHost.objects.create(
            host=host,
            host_cpid=request.host_cpid,
            rpc_seqno=0,  # the client starts counting again from 0 when it gets its hostid
            key=key,
            client_version=request.client_version,
        )
    return host


def handle(request: BoincRequest, *, network: str, now: datetime) -> BoincReply:
    """The whole request: nothing at all while the project is down for maintenance."""
    refuse_if_down()
    host, created = boinc_host(request, network=network, now=now)
    _adopt_cross_project_id(host.volunteer, request.cross_project_id)
    uploaded: Uploaded = {}
    reports = _reports(host, request.results, uploaded)
    in_progress = [rid for name in request.other_results if (rid := replica_of(name)) is not None]
    rpc = handle_scheduler_request(
        host=host,
        request=SchedulerRequest(
            reports=reports,
            work=WorkRequest(seconds=request.work_seconds),
            host_info=HostInfo(
                flops=request.flops or None,
                n_cpus=request.n_cpus,
                memory_bytes=request.memory_bytes,
                description={**request.description, "platforms": request.platforms},
            ),
            in_progress=in_progress,
            network=network,
            uploaded=uploaded,
        ),
        now=now,
    )
    names = {result.name for result in request.results}
    reply = BoincReply(host=host, created=created, rpc=rpc, acks=sorted(names))
    by_id = {rid: name for name in request.other_results if (rid := replica_of(name)) is not None}
    reply.aborts = [by_id[rid] for rid in rpc.abort if rid in by_id]
    holding = set(by_id) | {r.replica for r in reports} | {a.replica_id for a in rpc.assignments}
    reply.resent = lost_results(host, holding=holding, now=now)
    return reply


def _adopt_cross_project_id(volunteer: Volunteer, theirs: str) -> None:
    """BOINC's cross-project id follows a volunteer from project to project, so that stats
    sites add up their credit (the CPID of the stats export): a volunteer without one yet
    takes the one their client brings; one we have already published stays."""
    if theirs and not volunteer.cross_project_id:
        Volunteer.objects.filter(pk=volunteer.pk, cross_project_id="").update(cross_project_id=theirs)
        volunteer.cross_project_id = theirs


def _reports(host: Host, results: list[ReportedResult], uploaded: Uploaded) -> list[ReportIn]:
    """The results this host may still report, as ``ReportIn``; the others (unknown, another
    host's, already reported or called off) are only acknowledged. The outputs sealed on the
    way go into ``uploaded``, as ``uploads.check_uploads`` would have made it."""
    wanted = {rid: result for result in results if (rid := replica_of(result.name)) is not None}
    rows = (
        Replica.objects.filter(pk__in=wanted, host=host)
        .select_related("app_version")
        .only("id", "workunit_id", "state", "outcome", "app_version__max_output_bytes")
    )
    return [
        _report(row, wanted[row.pk], uploaded)
        for row in rows
        if is_reportable(row) and not is_called_off(row)
    ]


def _report(row: Replica, result: ReportedResult, uploaded: Uploaded) -> ReportIn:
    """A finished BOINC result: a success only when it exited 0 and its output went up, with
    the output as sealed by the upload handler's file (measured here, not claimed)."""
    message = result.stderr[-1000:]
    if result.exit_status == 0 and result.state == FILES_UPLOADED:
        limit = row.app_version.max_output_bytes if row.app_version else 0
        try:
            sealed = objects.seal(
                upload_key(row.workunit_id, row.pk), into=output_key(row.workunit_id, row.pk), max_bytes=limit
            )
        except (objects.ObjectTooLarge, objects.ObjectChanged):
            sealed = None
            message = "the uploaded output is over its limit"
        if sealed is not None:
            uploaded[row.pk] = sealed
            return ReportIn(
                replica=row.pk,
                status=Outcome.SUCCESS,
                cpu_time=result.cpu_time,
                output_sha256=sealed.sha256,
                output_size=sealed.size,
                elapsed=result.elapsed or None,
            )
        message = message or "the output was not uploaded"
    return ReportIn(
        replica=row.pk,
        status=Outcome.CLIENT_ERROR,
        cpu_time=result.cpu_time,
        exit_code=result.exit_status if result.exit_status else -1,
        message=message,
    )


def lost_results(host: Host, *, holding: set[int], now: datetime) -> list[Assignment]:
    """Tasks this host holds by our records but not by its own request (BOINC's
    ``resend_lost_results``): sent again while their deadline is ahead."""
    lost_ids = list(  # ids first, by the volunteer's in-progress index: cheap, and nearly always none
        Replica.objects.filter(
            volunteer_id=host.volunteer_id, host=host, state=ReplicaState.IN_PROGRESS, deadline__gt=now
        )
        .exclude(pk__in=holding)
        .order_by("deadline")
        .values_list("pk", flat=True)[:MAX_RESENDS]
    )
    if not lost_ids:
        return []
    lost = (
        Replica.objects.filter(pk__in=lost_ids)
        .select_related("workunit__app", "app_version__app")
        .order_by("deadline")
    )
    return [
        Assignment(replica.pk, replica.workunit, replica.app_version, replica.deadline)
        for replica in lost
        if replica.app_version is not None and replica.deadline is not None
    ]
