"""Outputs a host uploads straight to storage: the policy it may upload with, and the check,
before the scheduler RPC's transaction, of what it uploaded."""

from __future__ import annotations

from django.conf import settings

from coordinator.accounts.models import Host
from coordinator.core import objects
from coordinator.core.errors import Conflict, NotFound, PermissionRefused
from coordinator.scheduler.reports import REPORTABLE, ReportIn, Uploaded, is_reportable
from coordinator.work.lifecycle import Outcome
from coordinator.work.models import Replica


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


def _held_replica(*, host: Host, replica_id: int) -> Replica:
    replica = Replica.objects.select_related("app_version", "workunit").filter(pk=replica_id).first()
    if replica is None:
        raise NotFound(f"replica {replica_id} does not exist", code="unknown_replica")
    if replica.host_id != host.pk:
        raise PermissionRefused(f"replica {replica_id} was not sent to this host", code="not_your_replica")
    return replica


def upload_policy(*, host: Host, replica_id: int) -> objects.UploadPolicy:
    """A presigned POST policy for this replica's output, for the host that holds it: the key,
    the app's output limit and a short expiry are fixed, so the bytes go straight to storage."""
    replica = _held_replica(host=host, replica_id=replica_id)
    if not is_reportable(replica):
        raise Conflict(f"replica {replica_id} is already reported", code="already_reported")
    assert replica.app_version is not None  # set when the replica was sent to the host
    return objects.presigned_post(
        upload_key(replica.workunit_id, replica.pk),
        max_bytes=replica.app_version.max_output_bytes,
        expires_in=settings.TESSERA["UPLOAD_POLICY_SECONDS"],
    )
