"""Dispatch: which unsent replicas a host gets, and how many (BOINC's send logic).

Who receives a unit's other replicas is the coordinator's choice, never a consequence of
who asks next: replicas sit in the queue in a random order within each block of 2,048
consecutive units (``work.models.dispatch_key``), so siblings are far apart; a host never gets a unit
that a related host holds (``accounts.relation``); and replicas made to settle a dispute
are reserved for established hosts. Limits on tasks in progress (per host, per core, per
volunteer) and daily quotas per host app version stop anyone from hoarding a batch.

Claims lock the volunteer's row first, so two hosts of one volunteer never both take a
replica of one unit (the unique constraint on (unit, volunteer) backs that up), then claim
candidates with ``SELECT … FOR UPDATE SKIP LOCKED``. The reads every claim makes, and the
rules on related holders within them, are plain SQL in ``dispatch_sql``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings

from coordinator.accounts.models import Host, Volunteer
from coordinator.accounts.relation import Holder
from coordinator.core.errors import Conflict
from coordinator.scheduler.dispatch_sql import Candidate, ClaimContext, QuotaRow, candidates, claim_context
from coordinator.standing.models import HostAppReputation, HostAppVersion
from coordinator.standing.reputation import Reputation, send_single
from coordinator.standing.services import host_is_established
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import AppVersion, Replica, WorkUnit

DEFAULT_FLOPS = 1e9  # assumed speed of a host that has not measured itself
# The candidate read rules out the volunteer's units and related holders' itself; only a
# unit's two replicas in one read, or a spent quota, waste a candidate: read twice as many.
CANDIDATES_PER_TASK = 2
# Spot checks are drawn at random; tests may replace this with a seeded generator.
draw = random.random


@dataclass(frozen=True)
class WorkRequest:
    tasks: int = 0
    seconds: float = 0.0

    @property
    def wants_work(self) -> bool:
        return self.tasks > 0 or self.seconds > 0


@dataclass(frozen=True)
class Assignment:
    """A replica handed to a host, with everything it needs to run it."""

    replica_id: int
    unit: WorkUnit
    app_version: AppVersion
    deadline: datetime


def current_app_versions(platform: str) -> dict[int, AppVersion]:
    """The newest version of each app that runs on ``platform``."""
    versions: dict[int, AppVersion] = {}
    for version in (
        AppVersion.objects.select_related("app")
        .filter(platform__in=["any", platform])
        .order_by("app_id", "-version")
    ):
        versions.setdefault(version.app_id, version)
    return versions


def in_progress_room(host: Host, context: ClaimContext) -> int:
    """Tasks the host may still take: per core and per host (BOINC's max_jobs_in_progress),
    and per volunteer, whatever number of hosts it registers."""
    limits = settings.TESSERA
    per_host = min(
        limits["MAX_IN_PROGRESS_PER_CPU"] * max(1, host.n_cpus), limits["MAX_IN_PROGRESS_PER_HOST"]
    )
    per_volunteer = limits["MAX_IN_PROGRESS_PER_VOLUNTEER"]
    return max(0, min(per_host - context.held_by_host, per_volunteer - context.held_by_volunteer))


def quota_left(
    host: Host, versions: dict[int, AppVersion], quotas: dict[int, QuotaRow], today: date
) -> dict[int, int]:
    """Replicas each app version may still go to this host today (by app version id); a
    version without a quota row yet starts at the host's starting quota."""
    return {
        version.pk: quotas[version.pk].left(today) if version.pk in quotas else host.daily_quota
        for version in versions.values()
    }


def _record_quota_use(host: Host, used: dict[int, int], quotas: dict[int, QuotaRow], today: date) -> None:
    """Count today's dispatches per app version (quota rows read under the volunteer's lock)."""
    for version_id, count in used.items():
        row = quotas.get(version_id)
        mine = HostAppVersion.objects.filter(host=host, app_version_id=version_id)
        if row is None:  # the first dispatch of this version to the host makes its row
            made = HostAppVersion(host=host, app_version_id=version_id, daily_quota=host.daily_quota)
            HostAppVersion.objects.bulk_create([made], ignore_conflicts=True)
            mine.update(quota_day=today, quota_used=count)
        else:
            already = row.used if row.day == today.isoformat() else 0
            mine.update(quota_day=today, quota_used=already + count)


def _reputations_of(host: Host) -> dict[int, Reputation]:
    rows = HostAppReputation.objects.filter(host=host).values_list(
        "app_id", "consecutive_valid", "valid", "invalid", "errors", "error_rate"
    )
    return {
        app_id: Reputation(cv, valid, invalid, errors, rate)
        for app_id, cv, valid, invalid, errors, rate in rows
    }


@dataclass
class _Choice:
    """What one claim has picked so far."""

    limit: int
    seconds_wanted: float
    speed: float
    quota: dict[int, int]  # app version id -> replicas left today
    version_of_app: dict[int, int]
    chosen: list[Candidate]
    seconds: float = 0.0

    @property
    def full(self) -> bool:
        return len(self.chosen) >= self.limit or (
            self.seconds_wanted > 0 and self.seconds >= self.seconds_wanted
        )

    def take(self, candidates: list[Candidate]) -> None:
        units = {c.unit_id for c in self.chosen}
        for candidate in candidates:
            if self.full:
                return
            version_id = self.version_of_app[candidate.app_id]
            if candidate.unit_id in units or self.quota[version_id] <= 0:
                continue
            units.add(candidate.unit_id)
            self.quota[version_id] -= 1
            self.chosen.append(candidate)
            self.seconds += candidate.fpops / self.speed


def _pick(
    *, host: Host, holder: Holder, reserved: bool, choice: _Choice, made_before: datetime | None = None
) -> None:
    apps = [app for app, version in choice.version_of_app.items() if choice.quota[version] > 0]
    if not apps or choice.full:
        return
    choice.take(
        candidates(
            holder=holder,
            memory_bytes=host.memory_bytes,
            reserved=reserved,
            app_ids=apps,
            count=(choice.limit - len(choice.chosen)) * CANDIDATES_PER_TASK,
            made_before=made_before,
        )
    )


def _sent_elsewhere(unit_ids: list[int], chosen: list[int]) -> set[int]:
    """Units already sent to another host: they keep their quorum whoever is trusted (a unit
    goes alone only to its first host)."""
    if not unit_ids:
        return set()
    return set(
        Replica.objects.filter(workunit_id__in=unit_ids)
        .exclude(state=ReplicaState.UNSENT)
        .exclude(id__in=chosen)
        .values_list("workunit_id", flat=True)
    )


def _alone(host: Host, chosen: list[Candidate], established: bool) -> set[int]:
    """The chosen replicas that go out as their unit's only one (adaptive replication): never
    a reserved one, and only from an established host that earned trust on the app."""
    if not established:
        return set()
    reputations = _reputations_of(host)
    alone = {
        c.replica_id: c.unit_id
        for c in chosen
        if not c.reserved and send_single(reputations.get(c.app_id, Reputation()), draw(), established=True)
    }
    shared = _sent_elsewhere(list(alone.values()), [c.replica_id for c in chosen])
    return {replica_id for replica_id, unit_id in alone.items() if unit_id not in shared}


def _assign(
    host: Host, chosen: list[Candidate], versions: dict[int, AppVersion], alone: set[int], now: datetime
) -> list[Assignment]:
    units = WorkUnit.objects.in_bulk([c.unit_id for c in chosen])
    groups: dict[tuple[int, int, bool], list[int]] = {}
    for candidate in chosen:
        unit = units[candidate.unit_id]
        key = (unit.delay_bound, versions[unit.app_id].pk, candidate.replica_id in alone)
        groups.setdefault(key, []).append(candidate.replica_id)
    unit_of = {c.replica_id: units[c.unit_id] for c in chosen}
    assignments: list[Assignment] = []
    for (delay_bound, version_id, single), replica_ids in groups.items():
        deadline = now + timedelta(seconds=delay_bound)
        updated = Replica.objects.filter(id__in=replica_ids, state=ReplicaState.UNSENT).update(
            state=ReplicaState.IN_PROGRESS,
            host=host,
            volunteer_id=host.volunteer_id,
            app_version_id=version_id,
            sent_at=now,
            deadline=deadline,
            trusted_single=single,
        )
        if updated != len(replica_ids):
            raise Conflict("work was claimed concurrently; ask again", code="retry")
        for replica_id in replica_ids:
            unit = unit_of[replica_id]
            assignments.append(Assignment(replica_id, unit, versions[unit.app_id], deadline))
    return assignments


def _holder(host: Host) -> Holder:
    return Holder.of(
        host_id=host.pk,
        volunteer_id=host.volunteer_id,
        network=host.network,
        registered_network=host.registered_network,
        signup_network=host.volunteer.signup_network,
        signup_burst=host.volunteer.signup_burst,
    )


def _choose(
    host: Host, choice: _Choice, context: ClaimContext, *, established: bool, waited: datetime
) -> None:
    """Disputes first, for established hosts only (or any host, for those none took within
    DISPUTE_WAIT_SECONDS: a young project has no established host), then fresh work."""
    holder = _holder(host)
    if established and context.reserved_waiting:
        _pick(host=host, holder=holder, reserved=True, choice=choice)
    elif context.reserved_waited:
        _pick(host=host, holder=holder, reserved=True, choice=choice, made_before=waited)
    _pick(host=host, holder=holder, reserved=False, choice=choice)


def claim_work(*, host: Host, request: WorkRequest, now: datetime) -> list[Assignment]:
    """Claim unsent replicas for ``host``: by priority, then in dispatch order, one per unit,
    none a related host holds, within the limits on tasks in progress and the daily quotas."""
    cap = settings.TESSERA["MAX_TASKS_PER_RPC"]
    list(Volunteer.objects.select_for_update().filter(pk=host.volunteer_id).values_list("pk"))
    waited = now - timedelta(seconds=settings.TESSERA["DISPUTE_WAIT_SECONDS"])
    context = claim_context(host, waited=waited)  # fresh figures, now that the volunteer is locked
    today = now.date()
    versions = current_app_versions(host.platform)
    choice = _Choice(
        limit=min(cap, in_progress_room(host, context), request.tasks if request.tasks > 0 else cap),
        seconds_wanted=request.seconds if request.tasks <= 0 else 0.0,
        speed=(host.flops or DEFAULT_FLOPS) * max(1, host.n_cpus),
        quota=quota_left(host, versions, context.quotas, today),
        version_of_app={app_id: version.pk for app_id, version in versions.items()},
        chosen=[],
    )
    established = host_is_established(host, now)
    if choice.limit > 0 and any(choice.quota.values()):
        _choose(host, choice, context, established=established, waited=waited)
    Host.objects.filter(pk=host.pk).update(last_contact=now)
    if not choice.chosen:
        return []
    _record_quota_use(host, _count_by_version(choice), context.quotas, today)
    return _assign(host, choice.chosen, versions, _alone(host, choice.chosen, established), now)


def _count_by_version(choice: _Choice) -> dict[int, int]:
    used: dict[int, int] = {}
    for candidate in choice.chosen:
        version_id = choice.version_of_app[candidate.app_id]
        used[version_id] = used.get(version_id, 0) + 1
    return used
