"""Clean-up after batches: BOINC's file deleter and database purger, for Tessera's batches.

Once a batch is assimilated, the outputs of its non-canonical replicas are of no more use
and go. ``BATCH_RETENTION_DAYS`` after a batch finished (done or cancelled), every input
and output of its units goes too; the rows stay (the credit ledger refers to them) and so
does the batch's assimilated result.

Files are deleted before the rows that name them are cleared: a crash in between leaves a
row naming a missing file, which the next run clears (deleting a missing file is a no-op),
never a file that nothing names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q

from coordinator.science.services import call_off_units
from coordinator.work.lifecycle import Outcome, ReplicaState, UnitState, ValidateState
from coordinator.work.models import Batch, BatchState, Replica, WorkUnit

CHUNK = 2000
HAS_OUTPUT = Q(output_inline__isnull=False) | ~Q(output_file="")
# A late success waits for the validator, which compares its output with the canonical one.
AWAITS_VALIDATION = Q(outcome=Outcome.SUCCESS, validate_state=ValidateState.INIT)
# A unit being settled again (reopened, or waiting for an audit), or that nobody vouched for
# yet (the correction sweep will audit it): its replicas' outputs may be judged again, and
# one of them may become canonical (validation.correction). Purging takes them in the end.
MAY_BE_JUDGED_AGAIN = (
    Q(workunit__state=UnitState.ACTIVE)
    | Q(workunit__audit_wanted=True)
    | Q(workunit__state=UnitState.DONE, workunit__vouched_by__isnull=True, workunit__min_quorum__gte=2)
)


def _delete_files(names: Iterable[str]) -> None:
    for name in names:
        if name:
            default_storage.delete(name)


def _unit_chunks(batch_id: int) -> Iterable[Sequence[tuple[int, int | None]]]:
    """(unit id, canonical replica id) pairs of a batch, a chunk at a time, by id."""
    last = 0
    while True:
        chunk = list(
            WorkUnit.objects.filter(batch_id=batch_id, pk__gt=last)
            .order_by("pk")
            .values_list("pk", "canonical_replica_id")[:CHUNK]
        )
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0]


def clean_batch_outputs(*, batch_id: int) -> int:
    """Delete the outputs of an assimilated batch's non-canonical replicas; returns how many."""
    removed = 0
    for chunk in _unit_chunks(batch_id):
        canonical = {replica for _, replica in chunk if replica is not None}
        spare = (
            Replica.objects.filter(HAS_OUTPUT, workunit_id__in=[unit for unit, _ in chunk])
            .exclude(pk__in=canonical)
            .exclude(AWAITS_VALIDATION)
            .exclude(MAY_BE_JUDGED_AGAIN)
        )
        rows = list(spare.values_list("pk", "output_file"))
        _delete_files(name for _, name in rows)
        Replica.objects.filter(pk__in=[pk for pk, _ in rows]).update(output_inline=None, output_file="")
        removed += len(rows)
    Batch.objects.filter(pk=batch_id).update(cleaned=True)
    return removed


def clean_assimilated_batches() -> int:
    """Every assimilated batch not cleaned yet (the sweep)."""
    ids = Batch.objects.filter(state=BatchState.DONE, cleaned=False).values_list("pk", flat=True)
    return sum(clean_batch_outputs(batch_id=pk) for pk in list(ids))


def finish_cancelled_batches(*, now: datetime, budget_seconds: float = 60.0) -> int:
    """Cancelled batches whose units are not all called off yet: carry on, then clean up."""
    changed = 0
    for pk in list(
        Batch.objects.filter(state=BatchState.CANCELLED, cleaned=False).values_list("pk", flat=True)
    ):
        done_now, finished = call_off_units(batch_id=pk, now=now, budget_seconds=budget_seconds)
        changed += done_now
        if finished:
            clean_batch_outputs(batch_id=pk)
    return changed


def purge_batch_files(*, batch_id: int, now: datetime) -> int:
    """Delete every input and output of a retired batch's units; returns how many files."""
    removed = 0
    for chunk in _unit_chunks(batch_id):
        unit_ids = [unit for unit, _ in chunk]
        inputs = list(
            WorkUnit.objects.filter(pk__in=unit_ids)
            .exclude(input_file="")
            .values_list("input_file", flat=True)
        )
        outputs = list(
            Replica.objects.filter(workunit_id__in=unit_ids)
            .exclude(output_file="")
            .values_list("output_file", flat=True)
        )
        _delete_files([*inputs, *outputs])
        with transaction.atomic():
            WorkUnit.objects.filter(pk__in=unit_ids).update(input_inline=None, input_file="")
            Replica.objects.filter(HAS_OUTPUT, workunit_id__in=unit_ids).update(
                output_inline=None, output_file=""
            )
        removed += len(inputs) + len(outputs)
    Batch.objects.filter(pk=batch_id).update(purged=now, cleaned=True)
    return removed


def retired_batches(*, now: datetime) -> list[int]:
    """Batches finished longer ago than the retention period, with no replica still out
    (a late host's output is compared with the canonical one, which must still be there)."""
    cutoff = now - timedelta(days=settings.BATCH_RETENTION_DAYS)
    candidates = Batch.objects.filter(
        state__in=[BatchState.DONE, BatchState.CANCELLED], finished__lte=cutoff, purged__isnull=True
    ).values_list("pk", flat=True)
    return [
        pk
        for pk in candidates
        if not Replica.objects.filter(workunit__batch_id=pk, state=ReplicaState.IN_PROGRESS).exists()
    ]


def purge_retired_batches(*, now: datetime) -> int:
    return sum(purge_batch_files(batch_id=pk, now=now) for pk in retired_batches(now=now))
