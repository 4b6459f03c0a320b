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
from django.db import connection

from coordinator.accounts.models import Host
from coordinator.accounts.relation import Holder
from coordinator.accounts.science_choice import Choice, choice_for
from coordinator.scheduler import acceleration, fairshare
from coordinator.scheduler.assign import Assignment, Sending, assign
from coordinator.scheduler.claim_choice import ClaimChoice, buffer_seconds
from coordinator.scheduler.claim_writes import lock_volunteer, set_quota_used, start_quota_use, touch_host
from coordinator.scheduler.dispatch_sql import (
    AppFilter,
    Candidate,
    ClaimContext,
    Queue,
    QuotaRow,
    candidates,
    claim_context,
    too_big,
)
from coordinator.scheduler.homogeneity import hold_alike
from coordinator.scheduler.versions import NOT_CHOSEN, Chosen, resources, usable_versions
from coordinator.shares.policy import rank
from coordinator.standing.models import HostAppReputation
from coordinator.standing.reputation import Reputation, send_single
from coordinator.standing.services import host_is_established
from coordinator.work import plan_classes
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica

# The candidate read rules out the volunteer's units and related holders' itself; only a
# unit's two replicas in one read, or a spent quota, waste a candidate: read twice as many.
CANDIDATES_PER_TASK = 2
MIN_AVAILABILITY = 0.01  # a host that says it never crunches still gets the smallest units
# Shares whose queues one claim reads, in fair-share order: a host that fits none of their
# work (its memory, say) and asks again and again costs at most this many reads a request.
SHARES_PER_CLAIM = 16
# Spot checks are drawn at random; tests may replace this with a seeded generator.
draw = random.random


@dataclass(frozen=True)
class WorkRequest:
    tasks: int = 0
    seconds: float = 0.0

    @property
    def wants_work(self) -> bool:
        return self.tasks > 0 or self.seconds > 0


def in_progress_room(host: Host, context: ClaimContext) -> int:
    """Tasks the host may still take: per core and per GPU, and per host whatever it claims
    (BOINC's max_jobs_in_progress), and per volunteer, whatever number of hosts it registers."""
    limits = settings.TESSERA
    per_resources = limits["MAX_IN_PROGRESS_PER_CPU"] * max(1, host.n_cpus) + limits[
        "MAX_IN_PROGRESS_PER_GPU"
    ] * plan_classes.gpu_count(resources(host))
    per_host = min(per_resources, limits["MAX_IN_PROGRESS_PER_HOST"])
    per_volunteer = limits["MAX_IN_PROGRESS_PER_VOLUNTEER"]
    return max(0, min(per_host - context.held_by_host, per_volunteer - context.held_by_volunteer))


def quota_left(
    host: Host, versions: dict[int, Chosen], quotas: dict[int, QuotaRow], today: date
) -> dict[int, int]:
    """Replicas each app version may still go to this host today (by app version id); a
    version without a quota row yet starts at the host's starting quota."""
    return {
        chosen.version.pk: quotas[chosen.version.pk].left(today)
        if chosen.version.pk in quotas
        else host.daily_quota
        for chosen in versions.values()
    }


def _record_quota_use(host: Host, used: dict[int, int], quotas: dict[int, QuotaRow], today: date) -> None:
    """Count today's dispatches per app version (quota rows read under the volunteer's lock)."""
    for version_id, count in used.items():
        row = quotas.get(version_id)
        if row is None:  # the first dispatch of this version to the host makes its row
            start_quota_use(host.pk, version_id, host.daily_quota, today, count)
        else:
            already = row.used if row.day == today.isoformat() else 0
            set_quota_used(host.pk, version_id, today, already + count)


def _reputations_of(host: Host) -> dict[int, Reputation]:
    rows = HostAppReputation.objects.filter(host=host).values_list(
        "app_id", "consecutive_valid", "valid", "invalid", "errors", "error_rate"
    )
    return {
        app_id: Reputation(cv, valid, invalid, errors, rate)
        for app_id, cv, valid, invalid, errors, rate in rows
    }


def _pick(
    *,
    host: Host,
    holder: Holder,
    reserved: bool,
    choice: ClaimChoice,
    made_before: datetime | None = None,
    holds_waived_before: datetime | None = None,
    queue: Queue | None = None,
) -> None:
    open_apps = {app for app, version in choice.version_of_app.items() if choice.quota[version] > 0}
    apps = [item for item in choice.filters if item.app_id in open_apps]
    if not apps or choice.full:
        return
    choice.take(
        candidates(
            holder=holder,
            memory_bytes=host.memory_bytes,
            disk_bytes=host.disk_free_bytes,
            reserved=reserved,
            apps=apps,
            count=(choice.limit - len(choice.chosen)) * CANDIDATES_PER_TASK,
            made_before=made_before,
            holds_waived_before=holds_waived_before,
            unreliable_at=choice.unreliable_at,
            queue=queue,
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
    a reserved one, and only from an established host that earned trust on the app; never
    from a BOINC client's host, which proves itself with a bearer key only (``Host.bearer``)."""
    if not established or host.bearer:
        return set()
    reputations = _reputations_of(host)
    alone = {
        c.replica_id: c.unit_id
        for c in chosen
        if not c.reserved and send_single(reputations.get(c.app_id, Reputation()), draw(), established=True)
    }
    shared = _sent_elsewhere(list(alone.values()), [c.replica_id for c in chosen])
    return {replica_id for replica_id, unit_id in alone.items() if unit_id not in shared}


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
    host: Host,
    choice: ClaimChoice,
    context: ClaimContext,
    *,
    established: bool,
    waited: datetime,
    now: datetime,
) -> None:
    """Disputes first, for established hosts only (or any host, for those none took within
    DISPUTE_WAIT_SECONDS: a young project has no established host; those also no longer wait
    for a host of their unit's HR kind), then fresh work, share by share in fair-share order
    (``shares.policy``), until the host has what it asked for."""
    holder = _holder(host)
    if established and context.reserved_waiting:
        _pick(host=host, holder=holder, reserved=True, choice=choice, holds_waived_before=waited)
    elif context.reserved_waited:
        _pick(
            host=host,
            holder=holder,
            reserved=True,
            choice=choice,
            made_before=waited,
            holds_waived_before=waited,
        )
    if choice.full:
        return
    for share_id in rank(fairshare.standings(now))[:SHARES_PER_CLAIM]:
        _pick(host=host, holder=holder, reserved=False, choice=choice, queue=Queue(share_id))
        if choice.full:
            return


def claim_work(*, host: Host, request: WorkRequest, now: datetime) -> list[Assignment]:
    """Claim unsent replicas for ``host``: by priority, then in dispatch order, one per unit,
    none a related host holds, each of an app version this host can run (the fastest for it,
    ``scheduler.versions``) and fitting its memory, disk and speed, within the limits on tasks
    in progress and the daily quotas."""
    cap = settings.TESSERA["MAX_TASKS_PER_RPC"]
    lock_volunteer(host.volunteer_id)
    waited = now - timedelta(seconds=settings.TESSERA["DISPUTE_WAIT_SECONDS"])
    context = claim_context(host, waited=waited)  # fresh figures, now that the volunteer is locked
    today = now.date()
    science = science_of(host)
    usable = usable_versions(
        host, speeds=_speeds(context.quotas), beta_ok=science.beta, draw=draw, apps=science.apps
    )
    versions = usable.chosen
    choice = ClaimChoice(
        limit=min(cap, in_progress_room(host, context), request.tasks if request.tasks > 0 else cap),
        seconds_wanted=request.seconds if request.tasks <= 0 else 0.0,
        cores=max(1, host.n_cpus),
        versions=versions,
        quota=quota_left(host, versions, context.quotas, today),
        filters=app_filters(host, versions, now),
        chosen=[],
        cores_wanted=float(max(0, request.tasks)),
        held=context.held_by_host,
        buffer_seconds=buffer_seconds(host),
    )
    established = host_is_established(host, now)
    rules = acceleration.Rules.of(settings.TESSERA)
    reliable = _is_reliable(host, context, versions, rules)
    choice.unreliable_at = None if reliable else now
    if choice.limit > 0 and any(choice.quota.values()):
        _choose(host, choice, context, established=established, waited=waited, now=now)
    touch_host(host, now)
    chosen = hold_alike(choice.chosen, choice.filters, now)
    if not chosen:
        return []
    choice.chosen = chosen
    _record_quota_use(host, choice.count_by_version(), context.quotas, today)
    fairshare.charge(host_id=host.pk, sent=_use_by_share(chosen), now=now)
    queued = (context.held_by_host + len(chosen)) / max(1, host.n_cpus)
    alone = _alone(host, chosen, established)
    sending = Sending(versions, alone, context.quotas, reliable, rules, availability(host), queued)
    return assign(host, chosen, sending, now)


def _is_reliable(
    host: Host, context: ClaimContext, versions: dict[int, Chosen], rules: acceleration.Rules
) -> bool:
    """``acceleration.is_reliable`` on the figures this claim read."""
    return acceleration.is_reliable(
        consecutive_valid=host.consecutive_valid,
        turnarounds=[row.turnaround for row in context.quotas.values()],
        rules=rules,
        typical=max((chosen.version.app.turnaround for chosen in versions.values()), default=0.0),
        availability=availability(host),
    )


def _speeds(quotas: dict[int, QuotaRow]) -> dict[int, tuple[float, int]]:
    return {version_id: (row.speed_flops, row.speed_samples) for version_id, row in quotas.items()}


def app_filters(host: Host, versions: dict[int, Chosen], now: datetime) -> list[AppFilter]:
    """Per app: the chosen version's speed at the host's availability (for deadlines), and
    the host's HR class or the version when the app keeps a unit's replicas alike
    (docs/platforms.md)."""
    described = resources(host)
    filters = []
    for app_id, chosen in versions.items():
        app = chosen.version.app
        filters.append(
            AppFilter(
                app_id=app_id,
                speed=chosen.speed * availability(host),
                hr_class=plan_classes.hr_class(described, app.hr_level),
                pinned_version=chosen.version.pk if app.homogeneous_app_version else None,
                now=connection.ops.adapt_datetimefield_value(now),
            )
        )
    return filters


def unsent_of(app_ids: list[int]) -> bool:
    """Whether any replica of these apps waits to be sent (asked only after a host got none)."""
    return Replica.objects.filter(state=ReplicaState.UNSENT, workunit__app_id__in=app_ids).exists()


def science_of(host: Host) -> Choice:
    """The apps (and beta versions) the host's volunteer chose for the host's venue."""
    return choice_for(host.volunteer.science, host.venue, host.volunteer.beta_work)


def availability(host: Host) -> float:
    """The share of wall-clock time the host crunches (BOINC's on_frac x active_frac, as its
    client measures them; 1 until it says), never taken below MIN_AVAILABILITY."""
    return max(MIN_AVAILABILITY, min(1.0, host.on_fraction * host.active_fraction))


def why_no_work(host: Host) -> list[str]:
    """What to tell a host that asked for work and got none, when it is something about the
    host: no version it can run, or units that need more memory, disk or time than it has."""
    science = science_of(host)
    usable = usable_versions(host, speeds={}, beta_ok=science.beta, draw=lambda: 1.0, apps=science.apps)
    messages = sorted(set(usable.refusals.values())) if not usable.chosen else []
    unchosen = [app_id for app_id, why in usable.refusals.items() if why == NOT_CHOSEN]
    if usable.chosen and unchosen and unsent_of(unchosen):
        messages.append(f"work is waiting only for apps {NOT_CHOSEN}")
    fastest = max((chosen.speed for chosen in usable.chosen.values()), default=0.0)
    lacks = too_big(
        app_ids=list(usable.chosen),
        memory_bytes=host.memory_bytes,
        disk_bytes=host.disk_free_bytes,
        speed=fastest * availability(host),
    )
    if lacks.memory:
        messages.append(f"some work needs more memory than this computer has ({host.memory_bytes >> 20} MiB)")
    if lacks.disk:
        free = (host.disk_free_bytes or 0) >> 20
        messages.append(f"some work needs more disk space than this computer lets us use ({free} MiB free)")
    if lacks.speed:
        messages.append(
            "some work could not finish by its deadline on this computer, at its speed and the "
            f"share of the time it crunches ({availability(host):.0%})"
        )
    return messages


def _use_by_share(chosen: list[Candidate]) -> dict[int, tuple[int, float]]:
    """Replicas and estimated operations sent per share (the project's own work is not counted)."""
    use: dict[int, tuple[int, float]] = {}
    for candidate in chosen:
        if candidate.share_id is not None:
            replicas, fpops = use.get(candidate.share_id, (0, 0.0))
            use[candidate.share_id] = (replicas + 1, fpops + candidate.fpops)
    return use
