"""Writes for apps and work units, and the transitioner that applies the lifecycle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from nacl.signing import SigningKey
from tessera_client.signing import b64encode, bundle_message

from coordinator.core.bulk import insert_columns, insert_rows, update_rows
from coordinator.core.compiled import CompiledReadMany
from coordinator.core.errors import InvalidInput
from coordinator.work import lifecycle, plan_classes, tails
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import (
    App,
    AppVersion,
    Batch,
    PlanClass,
    Replica,
    WorkUnit,
    dispatch_key,
)
from coordinator.work.selectors import (
    REPLICA_ROWS,
    batch_flags,
    due_unit_ids,
    finished_batches,
    replica_view,
    still_due,
    unit_view,
    units_due_by_time,
)
from coordinator.work.signals import TimedOut, batches_finished, replicas_timed_out

# Added to the priority of replicas made after a unit's first ones (a timeout, an error, a
# disagreement): they go out before fresh work, as with BOINC's accelerated retries, so a
# unit in dispute is settled, and a cheater caught, within minutes instead of at the end of
# the batch (found by the scenario runner, docs/reliability.md). Batch priorities are -100
# to 100, so retries of every batch come first, in their batches' order.
RETRY_PRIORITY = 1000


DEFAULT_POLICY = lifecycle.Policy()  # frozen: one shared default


def register_app_version(
    *,
    app: App,
    version: int,
    bundle: bytes,
    signing_key: SigningKey,
    max_output_bytes: int = 1024 * 1024,
    platform: str = "any",
    runtime: str = "python",
    plan_class: str = "cpu",
    beta: bool = False,
    python: str = "",
) -> AppVersion:
    """Store a bundle with its SHA-256 and the project's Ed25519 signature of both.

    The signature covers the app's name, the version and platform with the hash
    (:func:`tessera_client.signing.bundle_message`), so it vouches for this version only.
    ``plan_class`` names a ``PlanClass`` (docs/platforms.md).
    """
    if plan_class not in plan_classes.STANDARD and not PlanClass.objects.filter(name=plan_class).exists():
        raise InvalidInput(
            f"no plan class {plan_class!r}: add it in the admin first", code="unknown_plan_class"
        )
    digest = hashlib.sha256(bundle).hexdigest()
    message = bundle_message(app=app.name, version=version, platform=platform, sha256=digest)
    app_version = AppVersion(
        app=app,
        version=version,
        platform=platform,
        bundle_sha256=digest,
        bundle_size=len(bundle),
        signature=b64encode(signing_key.sign(message).signature),
        max_output_bytes=max_output_bytes,
        runtime=runtime,
        plan_class=plan_class,
        beta=beta,
        python=python,
    )
    name = f"{app.name}-{version}-{platform}-{plan_class}-{runtime}.zip"  # one name per version
    app_version.bundle.save(name, ContentFile(bundle), save=False)
    app_version.save()
    return app_version


@dataclass(frozen=True)
class UnitSpec:
    """One unit to make: its name, input and, in a batch, its place in the split."""

    name: str
    input_data: bytes
    batch_index: int | None = None


@transaction.atomic
def create_work_units(
    *,
    app: App,
    specs: list[UnitSpec],
    now: datetime,
    policy: lifecycle.Policy = DEFAULT_POLICY,
    batch: Batch | None = None,
    priority: int = 0,
    memory_bytes: int = 0,
    disk_bytes: int = 0,
    fpops_estimate: float = 1e12,
    fuel_bound: int | None = None,
) -> list[WorkUnit]:
    """New units with their first replicas, in a few statements (``bulk_create``); the
    replicas come from the lifecycle, like every later one."""
    policy.check()
    units = []
    for spec in specs:
        unit = WorkUnit(
            app=app,
            batch=batch,
            batch_index=spec.batch_index,
            name=spec.name,
            input_sha256=hashlib.sha256(spec.input_data).hexdigest(),
            input_size=len(spec.input_data),
            min_quorum=policy.min_quorum,
            target_nresults=policy.target_nresults,
            max_error_results=policy.max_error_results,
            max_total_results=policy.max_total_results,
            delay_bound=policy.delay_bound,
            priority=priority,
            memory_bytes=memory_bytes,
            disk_bytes=disk_bytes,
            fpops_estimate=fpops_estimate,
            fuel_bound=fuel_bound,
            # What the lifecycle leaves a unit given its first replicas (nothing out yet to
            # time out): inserted so, its row needs no UPDATE in the same transaction.
            transition_time=None,
        )
        if len(spec.input_data) <= settings.TESSERA["INLINE_BYTES_MAX"]:
            unit.input_inline = spec.input_data
        else:
            unit.input_file.save(f"{spec.name}.in", ContentFile(spec.input_data), save=False)
        units.append(unit)
    insert_rows(WorkUnit, units)
    apply_transitions(units, now=now)
    return units


def create_work_unit(*, app: App, name: str, input_data: bytes, now: datetime, **options: Any) -> WorkUnit:
    """One new unit (see :func:`create_work_units`)."""
    return create_work_units(app=app, specs=[UnitSpec(name, input_data)], now=now, **options)[0]


# --- the transitioner ------------------------------------------------------------------


def _write_replica_changes(
    *,
    timed_out: list[int],
    not_needed: list[int],
    aborted: list[int],
    new_replicas: list[tuple[Any, ...]],
    now: datetime,
) -> None:
    """What the lifecycle asked of the units' replicas, each change conditional on the state
    it saw; a timed-out replica counts as an error against its host."""
    if timed_out:
        expired = Replica.objects.filter(id__in=timed_out, state=ReplicaState.IN_PROGRESS, deadline__lte=now)
        missed = [
            TimedOut(host_id, app_id, version_id)
            for host_id, app_id, version_id in expired.values_list(
                "host_id", "workunit__app_id", "app_version_id"
            )
        ]
        expired.update(state=ReplicaState.OVER, outcome=Outcome.NO_REPLY)
        replicas_timed_out.send(sender=Replica, timed_out=missed, now=now)
    if not_needed:
        Replica.objects.filter(id__in=not_needed, state=ReplicaState.UNSENT).update(
            state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED
        )
    if aborted:
        Replica.objects.filter(id__in=aborted, state=ReplicaState.IN_PROGRESS).update(
            state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED
        )
    if new_replicas:
        # Written in dispatch order, so that one claim's replicas lie on a few pages on disk.
        new_replicas.sort(key=lambda row: (-row[1], row[4]))
        insert_columns(Replica, dict(zip(NEW_REPLICA, zip(*new_replicas, strict=True), strict=True)))


def _apply_to_unit(unit: WorkUnit, result: lifecycle.Transition) -> bool:
    """Set what the lifecycle decided on the unit; whether its row is to be written. A unit
    whose replicas alone change (a new unit given its first ones) keeps its row as it is:
    each UPDATE of a unit writes a new version of the row into every one of its indexes."""
    before = (unit.need_validate, unit.state, unit.failure_reason, unit.transition_time)
    unit.need_validate = result.need_validate
    unit.transition_time = result.next_transition
    if result.state is not None:
        unit.state = result.state
    if result.failure is not None:
        unit.failure_reason = result.failure
    return before != (unit.need_validate, unit.state, unit.failure_reason, unit.transition_time)


@dataclass
class _Planned:
    """What the lifecycle asked of a pass's units, to be written in a few statements."""

    timed_out: list[int] = field(default_factory=list)
    not_needed: list[int] = field(default_factory=list)
    aborted: list[int] = field(default_factory=list)
    new_replicas: list[tuple[Any, ...]] = field(default_factory=list)  # rows of NEW_REPLICA
    changed_units: list[WorkUnit] = field(default_factory=list)  # their rows to write
    changed: int = 0  # units whose row or replicas change
    released: list[int] = field(default_factory=list)


def apply_transitions(
    units: list[WorkUnit], *, now: datetime, write_units: bool = True, leave_timeouts: bool = False
) -> int:
    """Run the lifecycle on locked ``units`` and write what it asks, in a few statements.

    The caller holds the units' rows (or SQLite's write lock). Replica updates are
    conditional on the state the lifecycle saw, so a replica a host just claimed or
    reported is never overwritten. Returns how many units changed.

    ``write_units=False``: the units' new fields are set on them, and the caller writes
    them with its own (the validator, in one UPDATE with its verdicts).
    ``leave_timeouts=True``: a unit with a replica past its deadline is left as it is, to
    the transitioner: a timeout is its host's error, and the validator takes the
    standing rows only after the ledger's head.
    """
    planned = _plan_transitions(units, now=now, leave_timeouts=leave_timeouts)
    _write_replica_changes(
        timed_out=planned.timed_out,
        not_needed=planned.not_needed,
        aborted=planned.aborted,
        new_replicas=planned.new_replicas,
        now=now,
    )
    if write_units and planned.changed_units:
        update_rows(
            WorkUnit, planned.changed_units, ["need_validate", "transition_time", "state", "failure_reason"]
        )
    if planned.released:
        WorkUnit.objects.filter(id__in=planned.released).update(
            hr_class="", pinned_version=None, homogeneous_until=None
        )
    return planned.changed


def _plan_transitions(units: list[WorkUnit], *, now: datetime, leave_timeouts: bool) -> _Planned:
    by_unit: dict[int, list[lifecycle.ReplicaView]] = {unit.pk: [] for unit in units}
    for row in REPLICA_ROWS.many(list(by_unit)):
        by_unit[row["workunit_id"]].append(replica_view(row))
    batches = batch_flags(units)
    planned = _Planned()
    for unit in units:
        view = unit_view(
            unit, cancelled=unit.batch_id in batches.cancelled, tail=unit.batch_id in batches.tail
        )
        result = lifecycle.transition(view, by_unit[unit.pk], now)
        if leave_timeouts and result.timed_out:
            continue
        planned.timed_out.extend(result.timed_out)
        planned.not_needed.extend(result.not_needed)
        planned.aborted.extend(result.aborted)
        share_id = batches.share_of.get(unit.batch_id) if unit.batch_id is not None else None
        retry = bool(by_unit[unit.pk])
        planned.new_replicas.extend(_new_replicas(unit, result, retry=retry, share_id=share_id, now=now))
        row_changes = _apply_to_unit(unit, result)
        if row_changes:
            planned.changed_units.append(unit)
        planned.changed += row_changes or result.changes_replicas
        if _lets_go_of_homogeneity(unit, by_unit[unit.pk], result):
            planned.released.append(unit.pk)
    return planned


# What a new replica is given; every other column is a new replica's default.
NEW_REPLICA = ("workunit_id", "priority", "reserved", "reliable_until", "dispatch_key", "share_id")


def _new_replicas(
    unit: WorkUnit, result: lifecycle.Transition, *, retry: bool, share_id: int | None, now: datetime
) -> list[tuple[Any, ...]]:
    """The replicas the lifecycle asked for, as rows of ``NEW_REPLICA``; a unit that already
    had replicas gets its new ones ahead of fresh work (within its share)."""
    if not result.create_replicas:
        return []
    block = settings.TESSERA["DISPATCH_BLOCK_UNITS"]
    priority = unit.priority + (RETRY_PRIORITY if retry else 0)
    reliable = tails.reliable_until(unit.delay_bound, now) if result.accelerate_new else None
    return [
        (unit.pk, priority, result.reserve_new, reliable, dispatch_key(unit.pk, block), share_id)
        for _ in range(result.create_replicas)
    ]


def _lets_go_of_homogeneity(
    unit: WorkUnit, replicas: list[lifecycle.ReplicaView], result: lifecycle.Transition
) -> bool:
    """A unit kept to one host class or app version with nothing of that class left to agree
    with: any class may take it now (docs/platforms.md)."""
    kept = bool(unit.hr_class or unit.pinned_version_id)
    return kept and not lifecycle.keeps_homogeneity(replicas, result.timed_out)


def announce_finished_batches(unit_ids: list[int]) -> list[int]:
    """Tell the layers above (``signals.batches_finished``) which running batches of these
    units have no active unit left, so they are assimilated now, not at the next sweep."""
    finished = finished_batches(unit_ids)
    if finished:
        batches_finished.send(sender=Batch, batch_ids=finished)
    return finished


# The units a pass takes, locked; those another worker holds are skipped.
LOCKED_UNITS = CompiledReadMany(
    lambda ids: (
        WorkUnit.objects.select_for_update(skip_locked=True, of=("self",)).filter(id__in=ids).order_by("id")
    )
)


def transition_units(*, unit_ids: list[int], now: datetime) -> tuple[int, int]:
    """Apply the lifecycle to these units; units another worker holds are left to it.

    Returns (units handled, units changed).
    """
    with transaction.atomic():
        units = LOCKED_UNITS.many(unit_ids)
        return len(units), (apply_transitions(units, now=now) if units else 0)


# A report stamps its units due by the web server's clock; a worker whose clock is behind by
# less than this still takes them at once (early, a transition is merely a pass with nothing to do).
CLOCK_SLACK = timedelta(seconds=60)


def transition_units_and_waiting(*, unit_ids: list[int], now: datetime, chunk: int = 200) -> list[int]:
    """Apply the lifecycle to those of ``unit_ids`` still due and, in the same pass, to up to
    ``chunk`` other due units; returns the units it asked for. Under load many reports wait
    in the queue: the first pass takes their units too and pays the pass's fixed cost once,
    and the messages behind it find their units no longer due and do nothing."""
    mine = still_due(unit_ids, now=now + CLOCK_SLACK)
    taken = sorted(set(mine).union(units_due_by_time(now=now, limit=chunk)))
    if taken:
        transition_units(unit_ids=taken, now=now)
    return taken


def transition_due_units(*, now: datetime, chunk: int = 500, max_chunks: int = 100) -> int:
    """The transitioner's sweep: batches reaching their tail marked, then every due unit, a
    chunk per transaction."""
    tails.mark_batch_tails(now=now)
    changed = 0
    for _ in range(max_chunks):
        ids = due_unit_ids(now=now, limit=chunk)
        if not ids:
            break
        handled, changed_now = transition_units(unit_ids=ids, now=now)
        changed += changed_now
        if handled == 0 or len(ids) < chunk:
            break  # the rest is held by another worker, or there is no more
    return changed
