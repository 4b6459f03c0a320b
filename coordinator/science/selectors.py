"""Reads for scientists: how far a batch has come, how fast, and which units failed why."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.files.storage import default_storage
from django.db.models import Count, Q

import workunits
from coordinator.core.errors import NotFound
from coordinator.work.lifecycle import Outcome, ReplicaState, UnitState, ValidateState
from coordinator.work.models import Batch, BatchState, Replica

THROUGHPUT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class BatchProgress:
    """Every planned unit is in exactly one of waiting, in progress, validated or failed."""

    planned: int
    waiting: int  # not split yet, or no replica out
    in_progress: int  # a replica out on a host, or a result waiting for the validator
    validated: int
    failed: int
    per_hour: float  # units validated per hour, lately
    seconds_left: float | None  # at that pace; None while nothing has been validated

    @property
    def fraction_done(self) -> float:
        return (self.validated + self.failed) / self.planned if self.planned else 0.0


def batch_progress(batch: Batch, *, now: datetime) -> BatchProgress:
    """Three counting queries over the batch's units (they are indexed by batch); none for
    an assimilated batch, whose counts were kept when it finished."""
    if batch.state == BatchState.DONE and batch.finished is not None:
        validated = batch.units_created - batch.units_failed
        hours = max((batch.finished - batch.created).total_seconds(), 1.0) / 3600
        return BatchProgress(batch.units_created, 0, 0, validated, batch.units_failed, validated / hours, 0.0)
    by_state = dict(batch.units.values_list("state").annotate(n=Count("id")).order_by())
    validated, failed = by_state.get(UnitState.DONE, 0), by_state.get(UnitState.FAILED, 0)
    out = Q(state=ReplicaState.IN_PROGRESS) | Q(
        state=ReplicaState.OVER, outcome=Outcome.SUCCESS, validate_state=ValidateState.INIT
    )
    in_progress = (
        Replica.objects.filter(out, workunit__batch=batch, workunit__state=UnitState.ACTIVE)
        .values("workunit_id")
        .distinct()
        .count()
    )
    planned = max(batch.units_planned, batch.units_created)
    waiting = max(0, planned - validated - failed - in_progress)
    per_hour = _validated_per_hour(batch, validated, now)
    left = planned - validated - failed
    if batch.state in (BatchState.DONE, BatchState.CANCELLED):
        seconds_left: float | None = 0.0
    else:
        seconds_left = left / per_hour * 3600 if per_hour > 0 else None
    return BatchProgress(planned, waiting, in_progress, validated, failed, per_hour, seconds_left)


def _validated_per_hour(batch: Batch, validated: int, now: datetime) -> float:
    """The last hour's pace; for a batch younger than that, its pace since it started."""
    age = (now - batch.created).total_seconds()
    if age <= 0 or validated == 0:
        return 0.0
    if age < THROUGHPUT_WINDOW.total_seconds():
        return validated / age * 3600
    recent = batch.units.filter(
        state=UnitState.DONE, canonical_replica__received_at__gte=now - THROUGHPUT_WINDOW
    ).count()
    return recent / THROUGHPUT_WINDOW.total_seconds() * 3600


@dataclass(frozen=True)
class FailedUnit:
    index: int | None
    name: str
    reason: str
    last_error: str  # what the last host that failed it said, if any


def failed_units(batch: Batch, *, limit: int = 100, offset: int = 0) -> list[FailedUnit]:
    """The batch's failed units in unit order, each with its reason and the last error a host
    reported for it (one query for the units, one for their errors)."""
    units = list(
        batch.units.filter(state=UnitState.FAILED)
        .order_by("batch_index", "id")
        .values_list("id", "batch_index", "name", "failure_reason")[offset : offset + limit]
    )
    errors: dict[int, str] = {}
    reported = (
        Replica.objects.filter(workunit_id__in=[u[0] for u in units], outcome=Outcome.CLIENT_ERROR)
        .exclude(message="")
        .order_by("received_at")
        .values_list("workunit_id", "message")
    )
    for unit_id, message in reported:
        errors[unit_id] = message  # the latest wins
    return [FailedUnit(index, name, reason, errors.get(pk, "")) for pk, index, name, reason in units]


def corrected_units(batch: Batch, *, limit: int = 1000) -> list[int]:
    """The places in the split of the batch's units whose canonical result a correction
    replaced (a caught cheater's answer was overturned), in unit order."""
    indexes = (
        batch.units.filter(corrected_at__isnull=False)
        .order_by("batch_index", "id")
        .values_list("batch_index", flat=True)[:limit]
    )
    return cast("list[int]", list(indexes))  # a batch's units all have their place


def has_preview(batch: Batch) -> bool:
    return callable(getattr(science_app(batch.app.name), "preview", None))


def preview_picture(batch: Batch) -> bytes | None:
    """The app's picture of the batch so far (an image batch growing tile by tile), or None
    for an app without a preview."""
    if not has_preview(batch):
        return None
    return science_app(batch.app.name).preview(batch.parameters, canonical_outputs(batch))


def science_app(name: str) -> Any:
    try:
        return workunits.load(name)
    except LookupError as error:
        raise NotFound(str(error), code="unknown_app") from error


def canonical_outputs(batch: Batch) -> Generator[tuple[int, bytes], None, None]:
    """The canonical output of every done unit of ``batch``, in unit order, a page at a time."""
    units = (
        batch.units.filter(state=UnitState.DONE)
        .order_by("batch_index")
        .values_list("batch_index", "canonical_replica__output_inline", "canonical_replica__output_file")
    )
    for index, inline, stored in units.iterator(chunk_size=2000):
        assert index is not None  # a batch's units all have their place
        if inline is not None:
            yield index, bytes(inline)
        else:
            with default_storage.open(stored, "rb") as handle:
                yield index, handle.read()
