"""A batch's tail (docs/batches.md, "Tail acceleration"): when it begins, and what it does to
the batch's replicas then and while it lasts. The transitioner's sweep calls this first."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q

from coordinator.work import lifecycle
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Batch, BatchState, Replica, WorkUnit
from coordinator.work.selectors import last_block_sent, tail_reached

# A tail's replicas out are held to the app's usual turnaround again when it has fallen
# below this share of the one they were held to (or when none was known then).
RECAP_SHARE = 0.8


def mark_batch_tails(*, now: datetime) -> list[int]:
    """Running batches that just reached their tail (``TAIL_FRACTION`` of their units
    finished, or their fresh work all sent): marked, their unsent replicas accelerated, and
    their active units due now, so the transitioner backs up what is overdue. Batches in
    their tail are held to the app's usual turnaround once it is known or has fallen (see
    ``hold_to_usual_time``), and at TAIL_FINAL_FRACTION get the ``final_call``. Returns the
    batches marked."""
    fraction = settings.TESSERA["TAIL_FRACTION"]
    block = settings.TESSERA["DISPATCH_BLOCK_UNITS"]
    marked = []
    for batch in Batch.objects.filter(state=BatchState.RUNNING).select_related("app"):
        if batch.tail_since is not None:
            hold_to_usual_time(batch, now)
            final_call(batch, now)
            continue
        in_tail = tail_reached(batch, fraction=fraction) or last_block_sent(batch, block_units=block)
        # Conditional, so that of two sweeps at once only one marks it.
        if in_tail and Batch.objects.filter(pk=batch.pk, tail_since=None).update(tail_since=now):
            _active_replicas(batch).filter(
                state=ReplicaState.UNSENT, reserved=False, reliable_until=None
            ).update(reliable_until=reliable_until(batch.delay_bound, now))
            WorkUnit.objects.filter(batch=batch, state=lifecycle.UnitState.ACTIVE).update(transition_time=now)
            hold_to_usual_time(batch, now)
            marked.append(batch.pk)
    return marked


def final_call(batch: Batch, now: datetime) -> bool:
    """Once TAIL_FINAL_FRACTION of the batch's units are finished, make every replica still
    out overdue now, once: each gets one backup (the lifecycle's rule for an overdue replica),
    so the batch's last units wait for the faster of two hosts, not for the slowest of all.
    The backups keep their own overdue times. In ``bench.simulate`` (10,000 hosts) it took the
    large batch from 11.2 to 8.1 hours. Whether it was done now."""
    if batch.final_call_since is not None:
        return False
    if not tail_reached(batch, fraction=settings.TESSERA["TAIL_FINAL_FRACTION"]):
        return False
    if not Batch.objects.filter(pk=batch.pk, final_call_since=None).update(final_call_since=now):
        return False  # another sweep made the call
    batch.final_call_since = now
    later = Q(overdue_at__gt=now) | Q(overdue_at=None)
    moved = _active_replicas(batch).filter(later, state=ReplicaState.IN_PROGRESS).update(overdue_at=now)
    if moved:
        WorkUnit.objects.filter(batch=batch, state=lifecycle.UnitState.ACTIVE).update(transition_time=now)
    return True


def hold_to_usual_time(batch: Batch, now: datetime) -> bool:
    """Make the tail's replicas out overdue, at the latest, TAIL_OVERDUE_FACTOR times the
    app's usual turnaround after they were sent (``App.turnaround``), so a replica on a slow
    host, or one sent before anything was measured, is backed up when a usual one would be.
    Done when the tail begins and again when the usual turnaround is first known or falls
    below RECAP_SHARE of the one used (``Batch.tail_turnaround``). Whether it was done."""
    usual, held = batch.app.turnaround, batch.tail_turnaround
    if usual <= 0 or (held > 0 and usual >= RECAP_SHARE * held):
        return False
    latest = timedelta(seconds=settings.TESSERA["TAIL_OVERDUE_FACTOR"] * usual)
    moved = (
        _active_replicas(batch)
        .filter(state=ReplicaState.IN_PROGRESS, overdue_at__gt=F("sent_at") + latest)
        .update(overdue_at=F("sent_at") + latest)
    )
    Batch.objects.filter(pk=batch.pk).update(tail_turnaround=usual)
    if moved:  # their units look again now (a backup is due at once for those now overdue)
        WorkUnit.objects.filter(batch=batch, state=lifecycle.UnitState.ACTIVE).update(transition_time=now)
    return True


def _active_replicas(batch: Batch):
    return Replica.objects.filter(workunit__batch=batch, workunit__state=lifecycle.UnitState.ACTIVE)


def reliable_until(delay_bound: int, now: datetime) -> datetime:
    """Until when an accelerated replica (a reissue, or tail work) waits for a reliable host:
    a share of its unit's delay bound, at most ACCELERATED_WAIT_SECONDS (docs/batches.md)."""
    tessera = settings.TESSERA
    wait = min(tessera["ACCELERATED_WAIT_SECONDS"], tessera["ACCELERATED_WAIT_SHARE"] * delay_bound)
    return now + timedelta(seconds=wait)
