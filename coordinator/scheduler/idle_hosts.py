"""A reliable host asks for work when none waits to be sent: its free cores back up the
units of the batches' tails that would come back last (docs/batches.md, "Backups for idle
hosts"), as MapReduce backs up its last tasks when it has idle workers. The choice is
``work.speculation``'s; this reads what it needs and writes what it chose."""

from __future__ import annotations

import random
from datetime import datetime

from django.conf import settings
from django.db.models import Max, Min

from coordinator.accounts.models import Host
from coordinator.scheduler import acceleration
from coordinator.scheduler.dispatch import availability
from coordinator.standing.models import HostAppVersion
from coordinator.work import speculation
from coordinator.work.lifecycle import Outcome, ReplicaState, UnitState
from coordinator.work.models import Batch, BatchState, Replica, WorkUnit

# At most this many units backed up for one request, whatever cores the host says it has.
MOST_PER_REQUEST = 8
# Active units of a tail read per free core, to choose its backups from: at 100,000 simulated
# hosts 16 did as well as 32 at three quarters of the simulator's time (docs/benchmarks.md).
SAMPLE_PER_CORE = 16


def back_up_for_idle_host(host: Host, *, now: datetime) -> list[int]:
    """When ``host`` is reliable (``acceleration.is_reliable``) and holds fewer tasks than it
    has cores, as the project counts them (not as its request says), back up the units its
    free cores would finish before their replicas out come back. Returns the units whose
    replicas were made overdue; the caller hints their transition, which makes the backups.
    A host whose recent results were not all valid costs no statement here."""
    rules = acceleration.Rules.of(settings.TESSERA)
    if host.consecutive_valid < rules.min_consecutive_valid:
        return []
    held = Replica.objects.filter(host_id=host.pk, state=ReplicaState.IN_PROGRESS).count()
    free = min(MOST_PER_REQUEST, host.n_cpus - held)
    if free <= 0:
        return []
    measured = list(
        HostAppVersion.objects.filter(host_id=host.pk, turnaround__gt=0).values_list(
            "turnaround", "app_version__app__turnaround"
        )
    )
    turnarounds = [own for own, _ in measured]
    reliable = acceleration.is_reliable(
        consecutive_valid=host.consecutive_valid,
        turnarounds=turnarounds,
        rules=rules,
        typical=max((usual for _, usual in measured), default=0.0),
        availability=availability(host),
    )
    if not reliable:
        return []
    units = units_out(tail_sample(SAMPLE_PER_CORE * free), host.pk)
    chosen = speculation.backups_for_idle_host(
        units,
        now=now.timestamp(),
        own_seconds=max(turnarounds),
        overdue_factor=rules.overdue_factor,
        count=free,
    )
    return make_overdue(chosen, units, now)


def make_overdue(chosen: list[int], units: list[speculation.UnitOut], now: datetime) -> list[int]:
    """The chosen replicas overdue now and their units due now, under the units' locks taken
    in id order, skipping units another request holds (their replicas are left as they are).
    Returns the units changed."""
    if not chosen:
        return []
    unit_of = {out.replica_id: unit.unit_id for unit in units for out in unit.out}
    locked = set(
        WorkUnit.objects.select_for_update(skip_locked=True)
        .filter(pk__in={unit_of[r] for r in chosen}, state=UnitState.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    replicas = [r for r in chosen if unit_of[r] in locked]
    moved = Replica.objects.filter(pk__in=replicas, state=ReplicaState.IN_PROGRESS, overdue_at__gt=now)
    if not moved.update(overdue_at=now):
        return []
    WorkUnit.objects.filter(pk__in=locked).update(transition_time=now)
    return sorted(locked)


def tail_sample(count: int) -> list[int]:
    """Up to ``count`` active units of one running batch in its tail, drawn by its size: from
    a random unit between its first and last active ones, the next active units by id,
    wrapping to the first. Probes of ``unit_active_by_batch`` (batch, id), however large the
    batch."""
    tails = list(
        Batch.objects.filter(state=BatchState.RUNNING, tail_since__isnull=False).values_list(
            "pk", "units_created"
        )
    )
    if not tails:
        return []
    batch_id = random.choices([pk for pk, _ in tails], [max(1, size) for _, size in tails])[0]
    active = WorkUnit.objects.filter(batch_id=batch_id, state=UnitState.ACTIVE)
    ends = active.aggregate(low=Min("pk"), high=Max("pk"))
    if ends["low"] is None:
        return []
    start = random.randint(ends["low"], ends["high"])
    found = list(active.filter(pk__gte=start).order_by("pk").values_list("pk", flat=True)[:count])
    if len(found) < count:
        found += active.filter(pk__lt=start).order_by("pk").values_list("pk", flat=True)[: count - len(found)]
    return found


def units_out(unit_ids: list[int], host_id: int) -> list[speculation.UnitOut]:
    """The active units' replicas out (with their hosts' usual turnaround on the version; the
    overdue ones too, as late) and the results each still needs; none of a unit ``host_id``
    holds or held a replica of."""
    if not unit_ids:
        return []
    fields = ("pk", "workunit_id", "host_id", "app_version_id", "state", "outcome", "validate_state")
    replicas = list(
        Replica.objects.filter(workunit_id__in=unit_ids).values_list(*fields, "sent_at", "overdue_at")
    )
    held = {row[1] for row in replicas if row[2] == host_id}
    out = [r for r in replicas if r[4] == ReplicaState.IN_PROGRESS and r[7] is not None and r[8] is not None]
    usual_on = _turnarounds({(row[2], row[3]) for row in out})
    judged: dict[int, list[str]] = {}
    for row in replicas:
        if row[4] == ReplicaState.OVER and row[5] == Outcome.SUCCESS:
            judged.setdefault(row[1], []).append(row[6])
    units = WorkUnit.objects.filter(pk__in=unit_ids, state=UnitState.ACTIVE).order_by("pk")
    return [
        speculation.UnitOut(
            unit_id,
            speculation.results_needed(quorum, judged.get(unit_id, [])),
            usual,
            tuple(
                speculation.Out(
                    row[0], row[7].timestamp(), row[8].timestamp(), usual_on.get((row[2], row[3]), 0.0)
                )
                for row in out
                if row[1] == unit_id
            ),
        )
        for unit_id, quorum, usual in units.values_list("pk", "min_quorum", "app__turnaround")
        if unit_id not in held
    ]


def _turnarounds(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Each (host, version)'s usual turnaround, where measured (HostAppVersion.turnaround)."""
    if not pairs:
        return {}
    hosts, versions = {h for h, _ in pairs}, {v for _, v in pairs}
    rows = HostAppVersion.objects.filter(host_id__in=hosts, app_version_id__in=versions, turnaround__gt=0)
    found = rows.values_list("host_id", "app_version_id", "turnaround")
    return {(h, v): t for h, v, t in found if (h, v) in pairs}
