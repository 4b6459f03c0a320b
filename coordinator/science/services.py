"""Batches: submitted with the app's parameters, checked whole, then split in chunks.

A batch is checked by running the app's splitter over every unit once, keeping only the
count (bounded memory, whatever the size), so a bad parameter refuses the batch before
anything is made. Splitting then makes ``SPLIT_CHUNK`` units per transaction (the first
chunk smaller, so volunteers start at once), each table written in one statement
(``core.bulk.insert_rows``); each chunk advances ``units_created`` in the same transaction,
so a killed worker resumes exactly where the last chunk ended, and a unit exists once per
index.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q

from coordinator.core import statistics
from coordinator.core.errors import Conflict, InvalidInput, NotFound, PermissionRefused
from coordinator.science.access import is_scientist
from coordinator.science.parameters import locate_in_table
from coordinator.science.selectors import canonical_outputs, science_app
from coordinator.shares.services import share_of
from coordinator.work.lifecycle import Policy, UnitState
from coordinator.work.models import App, Batch, BatchState, Replica, WorkUnit
from coordinator.work.selectors import no_active_unit
from coordinator.work.services import UnitSpec, apply_transitions, create_work_units

logger = logging.getLogger(__name__)

SPLIT_CHUNK = 1000
# A batch's first chunk is small: its units are out to volunteers within a fraction of a
# second, instead of after a whole chunk, while the rest splits at full size (under load the
# first 1,000 units took about 2 s, and a hundred hosts asked in vain meanwhile).
SPLIT_FIRST_CHUNK = 100
# What an assimilator raises when an output it is given is not what it expects. A colluding
# quorum can make any output canonical, so this ends the batch with the error for the
# scientist to see instead of failing every sweep. Anything else (storage, database) is
# retried by the next sweep.
APP_ERRORS = (ValueError, TypeError, LookupError, ArithmeticError)
ASSIMILATION_ERROR_CHARS = 2000
MAX_UNITS_PER_BATCH = 10_000_000


def count_units(app: Any, parameters: Any) -> int:
    """Run the splitter through once: the number of units, or a clear refusal."""
    count = 0
    try:
        for count, _ in enumerate(app.split(parameters), start=1):
            if count > MAX_UNITS_PER_BATCH:
                raise InvalidInput(f"a batch may hold at most {MAX_UNITS_PER_BATCH} units")
    except (ValueError, TypeError, KeyError) as error:
        raise InvalidInput(f"the parameters do not work for {app.MANIFEST.name}: {error}") from error
    if count == 0:
        raise InvalidInput("these parameters make no work units")
    return count


@transaction.atomic
@dataclass(frozen=True)
class Submission:
    """A batch checked whole and ready to record: nothing is written until ``record_batch``."""

    owner: Any
    app: App
    name: str
    parameters: Any
    planned: int
    policy: Policy
    priority: int


def check_submission(
    *,
    owner: Any,
    app_name: str,
    name: str,
    parameters: Any,
    policy: Policy | None = None,
    priority: int = 0,
    table_lines: list[int] | None = None,
) -> Submission:
    """Check the parameters whole, writing nothing (a form's ``clean`` may call it).
    ``table_lines`` (from a CSV upload) lets a refusal name the file's line, not an index."""
    if owner is not None and not is_scientist(owner):
        raise PermissionRefused(f"{owner} is not in the scientists group", code="not_a_scientist")
    module = science_app(app_name)
    policy = policy or Policy()
    policy.check()
    if not -100 <= priority <= 100:
        raise InvalidInput("priority must be from -100 to 100")
    app = App.objects.filter(name=app_name).first()
    if app is None or not app.versions.exists():
        raise InvalidInput(f"{app_name} has no published version yet: run manage.py publish_app {app_name}")
    try:
        planned = count_units(module, parameters)
    except InvalidInput as error:
        if table_lines:
            raise InvalidInput(locate_in_table(error.message, module.MANIFEST, table_lines)) from error
        raise
    return Submission(owner, app, name, parameters, planned, policy, priority)


def record_batch(submission: Submission) -> Batch:
    """Record a checked batch for the splitter."""
    return Batch.objects.create(
        name=submission.name,
        app=submission.app,
        owner=submission.owner,
        share=share_of(submission.owner),
        state=BatchState.SPLITTING,
        parameters=submission.parameters,
        units_planned=submission.planned,
        priority=submission.priority,
        **asdict(submission.policy),  # the batch keeps the policy's fields under the same names
    )


def submit_batch(
    *,
    owner: Any,
    app_name: str,
    name: str,
    parameters: Any,
    policy: Policy | None = None,
    priority: int = 0,
    table_lines: list[int] | None = None,
) -> Batch:
    """Check a batch whole (``check_submission``) and record it."""
    checked = check_submission(
        owner=owner,
        app_name=app_name,
        name=name,
        parameters=parameters,
        policy=policy,
        priority=priority,
        table_lines=table_lines,
    )
    return record_batch(checked)


CANCEL_CHUNK = 1000
CANCEL_REQUEST_SECONDS = 5.0  # what a cancel request spends calling units off before it answers


@transaction.atomic
def cancel_batch(*, batch_id: int, now: datetime) -> Batch:
    """Mark a batch cancelled: splitting stops at once, and from now on the lifecycle calls
    its units off (:func:`call_off_units`). Cancelling twice is harmless."""
    batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(f"batch {batch_id} does not exist", code="unknown_batch")
    if batch.state == BatchState.DONE:
        raise Conflict(f"batch {batch_id} is done: there is nothing left to cancel", code="batch_finished")
    if batch.state != BatchState.CANCELLED:
        batch.state, batch.finished = BatchState.CANCELLED, now
        batch.save(update_fields=["state", "finished"])
    return batch


def call_off_units(*, batch_id: int, now: datetime, budget_seconds: float | None = None) -> tuple[int, bool]:
    """Run the lifecycle over a cancelled batch's units, a chunk per transaction: unsent
    replicas are withdrawn, replicas out on hosts are called off (the host hears it at its
    next call), unfinished units fail as cancelled. Chunks go in unit order, the order
    dispatch sends them in, and faster than it sends (docs/benchmarks.md), so little more
    goes out once a cancel starts. Returns (units changed, whether every unit was seen)."""
    started, last, changed = time.monotonic(), 0, 0
    while True:
        with transaction.atomic():
            units = list(
                WorkUnit.objects.select_for_update(of=("self",))
                .filter(batch_id=batch_id, pk__gt=last)
                .order_by("pk")[:CANCEL_CHUNK]
            )
            if not units:
                return changed, True
            changed += apply_transitions(units, now=now)
        last = units[-1].pk
        if budget_seconds is not None and time.monotonic() - started > budget_seconds:
            return changed, False


def batch_policy(batch: Batch) -> Policy:
    return Policy(**{field.name: getattr(batch, field.name) for field in fields(Policy)})


class SplitCursor:
    """The app's splitter, kept open across chunks: without it every chunk would run the
    splitter again from the first unit to reach its own, and a batch would split in
    quadratic time. It follows the batch's counter, so a resumed or shared batch re-aligns."""

    def __init__(self) -> None:
        self.position = -1
        self.inputs: Iterator[bytes] = iter(())

    def take(self, module: Any, parameters: Any, start: int, count: int) -> list[bytes]:
        if self.position != start:
            self.inputs = itertools.islice(module.split(parameters), start, None)
            self.position = start
        taken = list(itertools.islice(self.inputs, count))
        self.position += len(taken)
        return taken


@transaction.atomic
def split_next_chunk(
    *, batch_id: int, now: datetime, chunk: int | None = None, cursor: SplitCursor | None = None
) -> int:
    """Make the next ``chunk`` (default ``SPLIT_CHUNK``, the batch's first ``SPLIT_FIRST_CHUNK``)
    units of a splitting batch; returns how many were made."""
    batch = Batch.objects.select_for_update(of=("self",)).select_related("app").filter(pk=batch_id).first()
    if batch is None or batch.state != BatchState.SPLITTING:
        return 0
    module = science_app(batch.app.name)
    start = batch.units_created
    size = chunk or (min(SPLIT_FIRST_CHUNK, SPLIT_CHUNK) if start == 0 else SPLIT_CHUNK)
    inputs = (cursor or SplitCursor()).take(module, batch.parameters, start, size)
    specs = [
        UnitSpec(f"{batch.app.name}-{batch.pk}-{start + i}", data, start + i) for i, data in enumerate(inputs)
    ]
    manifest = module.MANIFEST
    create_work_units(
        app=batch.app,
        specs=specs,
        now=now,
        policy=batch_policy(batch),
        batch=batch,
        priority=batch.priority,
        memory_bytes=manifest.memory_bytes,
        fpops_estimate=manifest.fpops_per_unit,
        fuel_bound=getattr(manifest, "fuel_bound", 0) or None,  # wasm apps only
    )
    batch.units_created = start + len(specs)
    if batch.units_created >= batch.units_planned:
        batch.state = BatchState.RUNNING
    batch.save(update_fields=["units_created", "state"])
    return len(specs)


def split_batch(*, batch_id: int, now: datetime, budget_seconds: float = 60.0) -> int:
    """Split chunk after chunk for at most ``budget_seconds``; the sweep carries on later."""
    made, unanalyzed, started, cursor = 0, 0, time.monotonic(), SplitCursor()
    while time.monotonic() - started < budget_seconds:
        step = split_next_chunk(batch_id=batch_id, now=now, cursor=cursor)
        if step == 0:
            break
        made, unanalyzed = made + step, unanalyzed + step
        # Dispatch plans on these tables while the batch splits.
        if statistics.refresh_if_outgrown(WorkUnit, unanalyzed, alongside=(Replica,)):
            unanalyzed = 0
    return made


def split_due_batches(*, now: datetime, budget_seconds: float = 60.0) -> int:
    """Every batch still splitting (the sweep: a lost message delays a batch, never loses it)."""
    made = 0
    for batch_id in Batch.objects.filter(state=BatchState.SPLITTING).values_list("pk", flat=True):
        made += split_batch(batch_id=batch_id, now=now, budget_seconds=budget_seconds)
    return made


@transaction.atomic
def assimilate_batch(*, batch_id: int, now: datetime) -> bool:
    """Once no unit of a running batch is active, hand its canonical outputs to the app's
    assimilator and keep the result; returns whether the batch finished now. A done batch
    whose canonical results a correction changed is assimilated again the same way."""
    batch = Batch.objects.select_for_update(of=("self",)).select_related("app").filter(pk=batch_id).first()
    if batch is None or batch.units.filter(state=UnitState.ACTIVE).exists():
        return False
    if batch.state == BatchState.DONE and batch.reassimilate:
        batch.revision += 1
        batch.reassimilate = False
        batch.assimilation_error = ""
        batch.save(update_fields=["revision", "reassimilate", "assimilation_error"])
    elif batch.state != BatchState.RUNNING:
        return False
    module = science_app(batch.app.name)
    batch.units_failed = batch.units.filter(state=UnitState.FAILED).count()
    if batch.units_failed < batch.units_created:
        try:
            with closing(canonical_outputs(batch)) as outputs:  # its cursor too, if the app raises
                result = module.assimilate(outputs)
        except APP_ERRORS as error:
            logger.warning("batch %s: the assimilator refused its outputs: %r", batch.pk, error)
            batch.assimilation_error = f"{type(error).__name__}: {error}"[:ASSIMILATION_ERROR_CHARS]
        else:
            if batch.result:
                batch.result.delete(save=False)  # a revision replaces the earlier result
            batch.result.save(f"{batch.pk}-{module.MANIFEST.result_name}", ContentFile(result), save=False)
    batch.state, batch.finished = BatchState.DONE, batch.finished or now
    batch.save(update_fields=["state", "finished", "result", "units_failed", "assimilation_error"])
    return True


def assimilate_due_batches(*, now: datetime) -> int:
    """Every running batch whose units are all done or failed (the assimilator's sweep). A
    batch that fails for a passing reason (storage, database) waits for the next sweep
    without holding up the others."""
    due = Q(state=BatchState.RUNNING) | Q(state=BatchState.DONE, reassimilate=True)
    running = Batch.objects.filter(due).filter(no_active_unit())
    finished = 0
    for pk in running.values_list("pk", flat=True):
        try:
            finished += assimilate_batch(batch_id=pk, now=now)
        except Exception:
            logger.exception("batch %s: assimilation failed; the next sweep tries again", pk)
    return finished
