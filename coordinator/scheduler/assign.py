"""The claim's last step: the chosen replicas written as sent, with their deadlines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coordinator.accounts.models import Host
from coordinator.core.compiled import CompiledReadMany
from coordinator.core.errors import Conflict
from coordinator.scheduler import acceleration
from coordinator.scheduler.claim_writes import SentAs, mark_sent
from coordinator.scheduler.dispatch_sql import Candidate, QuotaRow
from coordinator.scheduler.versions import Chosen
from coordinator.work.models import AppVersion, WorkUnit
from coordinator.work.plan_classes import Usage

ONE_CORE = Usage(cores=1.0)
# What a task's description (the JSON reply's and BOINC's) and its deadline need of its unit:
# the rest of the row (its lifecycle's and validation's columns) is neither read nor converted.
TASK_FIELDS = (
    "app",
    "name",
    "input_inline",
    "input_file",
    "input_sha256",
    "input_size",
    "delay_bound",
    "fpops_estimate",
    "memory_bytes",
    "disk_bytes",
    "fuel_bound",
)
UNITS = CompiledReadMany(lambda ids: WorkUnit.objects.filter(pk__in=ids).only(*TASK_FIELDS))


@dataclass(frozen=True)
class Assignment:
    """A replica handed to a host, with everything it needs to run it."""

    replica_id: int
    unit: WorkUnit
    app_version: AppVersion
    deadline: datetime
    usage: Usage = ONE_CORE  # the cores (and GPU) one task of that version uses here


@dataclass(frozen=True)
class Sending:
    """How the chosen replicas go out: each app's version, those sent alone, and what sets
    their deadlines (``acceleration.timing``)."""

    versions: dict[int, Chosen]
    alone: set[int]
    quotas: dict[int, QuotaRow]
    reliable: bool
    rules: acceleration.Rules
    availability: float = 1.0  # the share of the time the host crunches (dispatch.availability)
    queued_per_core: float = 0.0  # tasks it holds per core, this claim's included (one at least)


def _timing(
    sent: Sending,
    running: Chosen,
    version_id: int,
    delay_bound: int,
    accelerated: bool,
    fpops: float,
    now: datetime,
) -> acceleration.Timing:
    """Deadline and overdue time (``acceleration.timing``) from the host's figures on the version."""
    speed = running.speed * sent.availability
    return acceleration.timing(
        now=now,
        delay_bound=delay_bound,
        accelerated=accelerated,
        reliable=sent.reliable,
        turnaround=sent.quotas[version_id].turnaround if version_id in sent.quotas else 0.0,
        rules=sent.rules,
        expected=fpops / speed * max(1.0, sent.queued_per_core) if speed > 0 else 0.0,
        typical=running.version.app.turnaround,
    )


def assign(host: Host, chosen: list[Candidate], sent: Sending, now: datetime) -> list[Assignment]:
    """Write the chosen replicas as sent to ``host``, a statement per kind (deadline, version,
    alone or not, accelerated or not); a replica someone else took meanwhile refuses it all."""
    units = {unit.pk: unit for unit in UNITS.many([c.unit_id for c in chosen])}
    groups: dict[tuple[int, int, bool, bool, float], list[int]] = {}
    for candidate in chosen:
        unit = units[candidate.unit_id]
        version_id = sent.versions[unit.app_id].version.pk
        single, fast = candidate.replica_id in sent.alone, candidate.accelerated
        key = (unit.delay_bound, version_id, single, fast, unit.fpops_estimate)
        groups.setdefault(key, []).append(candidate.replica_id)
    unit_of = {c.replica_id: units[c.unit_id] for c in chosen}
    assignments: list[Assignment] = []
    for (delay_bound, version_id, single, accelerated, fpops), replica_ids in groups.items():
        running = sent.versions[unit_of[replica_ids[0]].app_id]
        timing = _timing(sent, running, version_id, delay_bound, accelerated, fpops, now)
        updated = mark_sent(
            replica_ids,
            SentAs(host.pk, host.volunteer_id, version_id, now, timing.deadline, timing.overdue_at, single),
        )
        if updated != len(replica_ids):
            raise Conflict("work was claimed concurrently; ask again", code="retry")
        for replica_id in replica_ids:
            chosen_version = sent.versions[unit_of[replica_id].app_id]
            assignments.append(
                Assignment(
                    replica_id,
                    unit_of[replica_id],
                    chosen_version.version,
                    timing.deadline,
                    chosen_version.usage,
                )
            )
    return assignments
