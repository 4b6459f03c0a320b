"""Reads about work: counts for status pages, the units due a transition, and the
lifecycle's views of units and replicas."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.db import connection
from django.db.models import Count, Exists, Expression, OuterRef

from coordinator.core.bulk import any_of
from coordinator.core.compiled import CompiledReadMany
from coordinator.core.prepared import literal, prepared_cursor
from coordinator.work import lifecycle, plan_classes
from coordinator.work.lifecycle import Outcome, ReplicaState, UnitState
from coordinator.work.models import AppVersion, Batch, BatchState, PlanClass, Replica, WorkUnit
from coordinator.work.plan_classes import Spec


def unit_counts() -> dict[str, int]:
    counts = dict(WorkUnit.objects.values_list("state").annotate(n=Count("id")).order_by())
    return {state.value: counts.get(state.value, 0) for state in UnitState}


def units_awaiting_validation() -> int:
    return WorkUnit.objects.filter(need_validate=True).count()


def no_active_unit() -> Expression:
    """A filter on batches: none of its units is active. One probe of ``unit_active_by_batch``
    per batch, whatever its size."""
    return ~Exists(WorkUnit.objects.filter(batch=OuterRef("pk"), state=UnitState.ACTIVE))


def finished_batches(unit_ids: Iterable[int]) -> list[int]:
    """The running batches of these units that have no active unit left: ready to assimilate.
    Every report's message asks it, so it is one prepared statement (``no_active_unit``'s
    probe written out), not a query set compiled each time."""
    among, params = any_of("id", list(unit_ids))
    sql = (
        f"SELECT b.id FROM {Batch._meta.db_table} b WHERE b.state = {literal(BatchState.RUNNING)}"
        f" AND b.id IN (SELECT batch_id FROM {_UNITS} WHERE {among} AND batch_id IS NOT NULL)"
        f" AND NOT EXISTS (SELECT 1 FROM {_UNITS} a WHERE a.batch_id = b.id"
        f" AND a.state = {literal(UnitState.ACTIVE)}) ORDER BY b.id"
    )
    return _ids(sql, params)


MARKED = CompiledReadMany(
    lambda ids: WorkUnit.objects.filter(id__in=ids, need_validate=True).values_list("id", flat=True)
)


def marked_for_validation(unit_ids: list[int]) -> list[int]:
    """Those of ``unit_ids`` the lifecycle has marked for the validator."""
    return MARKED.many(unit_ids)


def replica_counts() -> dict[str, int]:
    counts = dict(Replica.objects.values_list("state").annotate(n=Count("id")).order_by())
    return {state.value: counts.get(state.value, 0) for state in ReplicaState}


def unit_view(unit: WorkUnit, *, cancelled: bool = False, tail: bool = False) -> lifecycle.UnitView:
    return lifecycle.UnitView(
        id=unit.pk,
        policy=lifecycle.Policy(
            min_quorum=unit.min_quorum,
            target_nresults=unit.target_nresults,
            max_error_results=unit.max_error_results,
            max_total_results=unit.max_total_results,
            delay_bound=unit.delay_bound,
        ),
        state=UnitState(unit.state),
        has_canonical=unit.canonical_replica_id is not None,
        need_validate=unit.need_validate,
        cancelled=cancelled,
        disputed=unit.disputed,
        audit_wanted=unit.audit_wanted,
        tail=tail,
    )


@dataclass(frozen=True)
class BatchFlags:
    """What the transitioner needs of ``units``' batches."""

    cancelled: set[int]
    tail: set[int]  # in their tail (docs/batches.md)
    share_of: dict[int, int | None]  # batch id -> the share its new replicas carry


_FLAGS = CompiledReadMany(
    lambda ids: Batch.objects.filter(pk__in=ids).values_list("pk", "state", "tail_since", "share_id")
)


def batch_flags(units: list[WorkUnit]) -> BatchFlags:
    """The cancelled batches, those in their tail, and every batch's share, among ``units``'
    batches (one query, none without batches)."""
    batch_ids = {unit.batch_id for unit in units if unit.batch_id is not None}
    flags = BatchFlags(set(), set(), {})
    if not batch_ids:
        return flags
    for pk, state, tail_since, share_id in _FLAGS.many(sorted(batch_ids)):
        flags.share_of[pk] = share_id
        if state == BatchState.CANCELLED:
            flags.cancelled.add(pk)
        elif tail_since is not None:
            flags.tail.add(pk)
    return flags


def tail_reached(batch: Batch, *, fraction: float) -> bool:
    """Whether ``fraction`` of the batch's units are finished: it reads at most the share
    still active that would mean it is (one index range, however large the batch)."""
    room = batch.units_created - math.ceil(batch.units_created * fraction - 1e-9)  # active it may have
    active = WorkUnit.objects.filter(batch=batch, state=UnitState.ACTIVE).values("id")[: room + 1].count()
    return batch.units_created > 0 and active <= room


def last_block_sent(batch: Batch, *, block_units: int) -> bool:
    """Whether none of the batch's last ``block_units`` units has a replica waiting to be sent:
    dispatch hands a share's fresh work out block by block, so then all of it is out, and the
    batch only waits for what hosts hold (one bounded read, however large the batch)."""
    start = max(0, batch.units_created - block_units)
    waiting = Replica.objects.filter(
        workunit__batch=batch, workunit__batch_index__gte=start, state=lifecycle.ReplicaState.UNSENT
    )
    return batch.units_created > 0 and not waiting.exists()


REPLICA_VIEW_FIELDS = (
    "id",
    "state",
    "outcome",
    "validate_state",
    "deadline",
    "trusted_single",
    "reserved",
    "overdue_at",
)


# The lifecycle's views of the replicas of some units, with each one's unit (``workunit_id``).
REPLICA_ROWS = CompiledReadMany(
    lambda unit_ids: Replica.objects.filter(workunit_id__in=unit_ids).values(
        "workunit_id", *REPLICA_VIEW_FIELDS
    )
)


def replica_view(row: dict) -> lifecycle.ReplicaView:
    """The lifecycle's view of a replica, from ``values(*REPLICA_VIEW_FIELDS)`` or a model."""
    return lifecycle.ReplicaView(
        id=row["id"],
        state=ReplicaState(row["state"]),
        outcome=Outcome(row["outcome"]),
        validate_state=lifecycle.ValidateState(row["validate_state"]),
        deadline=row["deadline"],
        trusted_single=row["trusted_single"],
        reserved=row["reserved"],
        overdue_at=row["overdue_at"],
    )


def units_due_by_time(*, now: datetime, limit: int) -> list[int]:
    """Units whose transition time has come (reports mark theirs now), oldest first. Every
    report's message asks, so this and :func:`still_due` are prepared statements."""
    sql = f"SELECT id FROM {_UNITS} WHERE transition_time <= %s ORDER BY transition_time LIMIT %s"
    return _ids(sql, [connection.ops.adapt_datetimefield_value(now), limit])


def still_due(unit_ids: list[int], *, now: datetime) -> list[int]:
    """Those of ``unit_ids`` whose transition time has come: a report marks its units due,
    and a pass that took them sets their next time, so a later message for the same units
    finds nothing to do."""
    if not unit_ids:
        return []
    among, params = any_of("id", unit_ids)
    sql = f"SELECT id FROM {_UNITS} WHERE {among} AND transition_time <= %s"
    return _ids(sql, [*params, connection.ops.adapt_datetimefield_value(now)])


_UNITS = WorkUnit._meta.db_table


def _ids(sql: str, params: list[Any]) -> list[int]:
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def due_unit_ids(*, now: datetime, limit: int) -> list[int]:
    """Units whose transition time has come, or with a replica past its deadline."""
    past_deadline = Replica.objects.filter(state=ReplicaState.IN_PROGRESS, deadline__lte=now)
    ids = set(units_due_by_time(now=now, limit=limit))
    ids.update(past_deadline.order_by("deadline").values_list("workunit_id", flat=True)[:limit])
    return sorted(ids)[:limit]


# -- plan classes and live app versions: read on every scheduler RPC, changed rarely -----------
CACHE_SECONDS = 30.0  # other processes see an admin's edit or a publish within this


class ProcessCache:
    """A value read from the database at most every CACHE_SECONDS in this process, and again at
    once after this process changed its rows (``forget``, wired to the models' signals) or
    when ``fingerprint`` (a cheap query) changes: another process published a version."""

    def __init__(self, read: Callable[[], Any], fingerprint: Callable[[], Any] | None = None) -> None:
        self.read, self.fingerprint = read, fingerprint
        self.value, self.read_at, self.seen = None, -math.inf, None

    def get(self) -> Any:
        seen = self.fingerprint() if self.fingerprint is not None else None
        if time.monotonic() - self.read_at > CACHE_SECONDS or seen != self.seen:
            self.value, self.read_at, self.seen = self.read(), time.monotonic(), seen
        return self.value

    def forget(self, *args: Any, **kwargs: Any) -> None:
        self.read_at = -math.inf


def newest_versions(versions: Iterable[AppVersion]) -> list[AppVersion]:
    """The newest version of each app for each platform, plan class and runtime: older ones
    stop being sent once a newer one is published (their tasks in progress finish)."""
    seen: dict[tuple[int, str, str, str], AppVersion] = {}
    for version in versions:
        key = (version.app_id, version.platform, version.plan_class, version.runtime)
        if key not in seen or version.version > seen[key].version:
            seen[key] = version
    return list(seen.values())


PLAN_SPECS = ProcessCache(
    lambda: {**plan_classes.STANDARD, **{row.name: spec_of(row) for row in PlanClass.objects.all()}}
)
LIVE_VERSIONS = ProcessCache(
    lambda: newest_versions(AppVersion.objects.select_related("app")),
    # A version published by another process (publish_app) is sent at once: one index-only read.
    fingerprint=lambda: _versions_fingerprint(),
)


def _versions_fingerprint() -> tuple[int, int | None]:
    """How many versions there are and the newest's id: one index-only read, in SQL (read on
    every claim, and the ORM's aggregate cost more to build than to run)."""
    with prepared_cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), MAX(id) FROM {AppVersion._meta.db_table}")
        count, last = cursor.fetchone()
    return count, last


def plan_specs() -> dict[str, Spec]:
    """The plan classes by name (the built-in ones unless a row overrides them)."""
    return cast(dict[str, Spec], PLAN_SPECS.get())


def live_versions() -> list[AppVersion]:
    """The app versions the scheduler sends (``newest_versions`` of all), with their apps."""
    return cast(list[AppVersion], LIVE_VERSIONS.get())


def forget_caches(*args: Any, **kwargs: Any) -> None:
    """After an edit (a signal's receiver) and at the start of every test."""
    PLAN_SPECS.forget()
    LIVE_VERSIONS.forget()


def spec_of(row: PlanClass) -> Spec:
    return Spec(
        name=row.name,
        kind=row.kind,
        min_cores=row.min_cores,
        max_cores=row.max_cores,
        cpu_features=plan_classes.features(row.cpu_features or []),
        gpu_vendor=row.gpu_vendor,
        gpu_api=row.gpu_api,
        min_gpu_memory_bytes=row.min_gpu_memory_bytes,
        min_driver_version=row.min_driver_version,
        min_compute_capability=row.min_compute_capability,
        gpu_speedup=row.gpu_speedup,
        cpu_per_gpu_task=row.cpu_per_gpu_task,
    )
