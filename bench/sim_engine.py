"""The simulator's world: units, replicas, hosts and a clock, driven by the coordinator's own
policy code (``bench.simulate`` runs it; docs/batches.md, "The simulator").

What is ours and not modelled: the lifecycle (``work.lifecycle.transition``, every reissue,
time-out, backup and call-off), the quorum (``validation.quorum.find_quorum``), credit
(``standing.credit``), reputation, adaptive replication and daily quotas
(``standing.reputation``), who is established, reliable hosts and accelerated deadlines
(``scheduler.acceleration``) and fair share (``shares.policy.rank``). What is modelled: time
(an event queue), the network (instant), and the database's mechanics: the dispatch queue is
a heap per share in the dispatch index's order, read the way the candidates query reads it.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from coordinator.scheduler.acceleration import Rules, is_reliable, timing
from coordinator.shares.policy import Standing, rank
from coordinator.standing.reputation import (
    Establishment,
    Event,
    Reputation,
    after,
    is_established,
    quota_after,
    send_single,
)
from coordinator.work.lifecycle import (
    Outcome,
    Policy,
    ReplicaState,
    ReplicaView,
    UnitState,
    UnitView,
    ValidateState,
)

T0 = datetime(2027, 1, 1, tzinfo=UTC)
UNSENT, IN_PROGRESS, OVER = ReplicaState.UNSENT, ReplicaState.IN_PROGRESS, ReplicaState.OVER
CORRECT = 0  # every unit's right answer; wrong ones are other numbers
COLLUDED = -1  # the answer colluders agree on


@dataclass(frozen=True)
class Knobs:
    """The coordinator's settings the simulator runs with (``settings.TESSERA``)."""

    rules: Rules
    establishment: Establishment
    retry_priority: int
    tail_fraction: float
    final_fraction: float  # TAIL_FINAL_FRACTION
    window: float  # FAIR_SHARE_WINDOW_SECONDS
    dispute_wait: float
    deadline_share: float  # dispatch's DEADLINE_SHARE
    quota_cap: int
    block_units: int
    buffer_seconds: float = float("inf")  # WORK_BUFFER_SECONDS


@dataclass
class Batch:
    id: int
    share: int
    policy: Policy
    priority: int
    fpops: float
    first_unit: int
    units: int
    submitted: float
    finished: int = 0
    unsent: int = 0  # replicas of its last block's units in the dispatch queue
    last_block: int = 0  # the first unit of its last DISPATCH_BLOCK_UNITS
    created: int = 0  # its units made so far
    tail: bool = False
    tail_turnaround: float = 0.0  # the usual turnaround its tail was last held to
    final_call: bool = False  # its replicas out were all made overdue (tails.final_call)
    done_at: float | None = None
    percent99_at: float | None = None


class Unit:
    __slots__ = (
        "batch",
        "canonical",
        "disputed",
        "done_at",
        "first_sent",
        "id",
        "replicas",
        "state",
        "wake_at",
    )

    def __init__(self, unit_id: int, batch: Batch) -> None:
        self.id, self.batch = unit_id, batch
        self.replicas: list[int] = []
        self.state = UnitState.ACTIVE
        self.canonical: int | None = None
        self.disputed = False
        self.wake_at: float | None = None
        self.done_at: float | None = None
        self.first_sent: float | None = None


class Rep:
    __slots__ = (
        "claim",
        "created",
        "deadline",
        "host",
        "id",
        "outcome",
        "overdue_at",
        "received",
        "reliable_until",
        "reserved",
        "sent_at",
        "state",
        "trusted_single",
        "unit",
        "validate",
        "value",
    )  # fmt: skip

    def __init__(self, rep_id: int, unit: Unit, now: float, reserved: bool, reliable_until: float) -> None:
        self.id, self.unit, self.created = rep_id, unit, now
        self.state, self.outcome, self.validate = UNSENT, Outcome.INIT, ValidateState.INIT
        self.host = -1
        self.deadline = self.overdue_at = self.sent_at = 0.0
        self.reserved, self.trusted_single, self.reliable_until = reserved, False, reliable_until
        self.value, self.claim, self.received = CORRECT, 0.0, 0.0

    def view(self) -> ReplicaView:
        out = self.state is IN_PROGRESS
        return ReplicaView(
            self.id,
            self.state,
            self.outcome,
            self.validate,
            at(self.deadline) if out else None,
            self.trusted_single,
            self.reserved,
            at(self.overdue_at) if out else None,
        )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seconds_of(moment: datetime) -> float:
    return (moment - T0).total_seconds()


@dataclass
class Host:
    """What the coordinator knows of a host, and what the host holds."""

    index: int
    kind: str
    flops: float  # its true speed per core
    cores: int
    benchmark: float  # the speed it reports (claims are priced by it)
    established_from: float  # seconds (may be negative: it volunteered before the run)
    independent_valid: int = 0
    reputation: Reputation = field(default_factory=Reputation)
    consecutive_valid: int = 0
    turnaround: float = 0.0
    samples: int = 0
    quota: int = 100
    quota_day: int = -1
    quota_used: int = 0
    credit: float = 0.0
    honest_fpops: float = 0.0
    holds: int = 0  # tasks held (queued or running), this claim's included when it is sent
    on_fraction: float = 1.0  # the share of the time it crunches, as its client reports it
    gone: bool = False


class Queues:
    """The unsent replicas, as the dispatch indexes hold them: one heap per share ordered by
    (priority, dispatch key), and one of replicas reserved for established hosts."""

    def __init__(self, rng: random.Random, block_units: int) -> None:
        self.rng, self.block_units = rng, block_units
        self.by_share: dict[int, list[tuple[int, int, int]]] = {}
        self.reserved: list[tuple[int, int, int]] = []

    def push(self, rep: Rep, share: int, priority: int) -> None:
        key = ((rep.unit.id // self.block_units) << 32) | self.rng.getrandbits(32)
        heap = self.reserved if rep.reserved else self.by_share.setdefault(share, [])
        heapq.heappush(heap, (-priority, key, rep.id))

    def again(self, share: int | None, entries: list[tuple[int, int, int]]) -> None:
        heap = self.reserved if share is None else self.by_share[share]
        for entry in entries:
            heapq.heappush(heap, entry)


class Usage:
    """Each share's use by the minute over the fair-share window (``shares.Use`` rows)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.minutes: dict[int, deque[tuple[int, float]]] = {}
        self.sums: dict[int, float] = {}

    def add(self, share: int, now: float, fpops: float) -> None:
        minutes = self.minutes.setdefault(share, deque())
        minute = int(now // 60)
        if minutes and minutes[-1][0] == minute:
            minutes[-1] = (minute, minutes[-1][1] + fpops)
        else:
            minutes.append((minute, fpops))
        self.sums[share] = self.sums.get(share, 0.0) + fpops

    def used(self, share: int, now: float) -> float:
        minutes = self.minutes.get(share)
        if not minutes:
            return 0.0
        since = int((now - self.window) // 60)
        while minutes and minutes[0][0] < since:
            self.sums[share] -= minutes.popleft()[1]
        return max(0.0, self.sums[share])


def standings(queues: Queues, usage: Usage, weights: dict[int, float], now: float) -> list[int | None]:
    """The shares with unsent work in fair-share order (``fairshare.standings`` and ``rank``)."""
    waiting = [
        Standing(share, weights[share], usage.used(share, now))
        for share, heap in queues.by_share.items()
        if heap
    ]
    return rank(waiting)


def reliable(host: Host, knobs: Knobs, typical: float) -> bool:
    turnarounds = [host.turnaround] if host.samples else []
    return is_reliable(
        consecutive_valid=host.consecutive_valid,
        turnarounds=turnarounds,
        rules=knobs.rules,
        typical=typical,
        availability=host.on_fraction,
    )


def established(host: Host, now: float, knobs: Knobs) -> bool:
    return is_established(
        age_seconds=now - host.established_from,
        independent_valid=host.independent_valid,
        rule=knobs.establishment,
    )


def event_after(host: Host, event: Event, day: int, knobs: Knobs) -> None:
    """A result's verdict on its host: reputation, daily quota, and the host's standing."""
    host.reputation = after(host.reputation, event)
    host.consecutive_valid = host.reputation.consecutive_valid
    host.quota = quota_after(host.quota, event, knobs.quota_cap)
    if event is Event.VALID_CONFIRMED or event is Event.VALID_INDEPENDENT:
        host.independent_valid += 1
    elif not event.is_valid:
        host.independent_valid = 0 if event is Event.INVALID else host.independent_valid


def may_send_alone(host: Host, now: float, knobs: Knobs, draw: float) -> bool:
    return send_single(host.reputation, draw, established=established(host, now, knobs))


def deadline_of(
    *,
    now: float,
    batch: Batch,
    accelerated: bool,
    is_reliable_host: bool,
    host: Host,
    knobs: Knobs,
    typical: float,
) -> tuple[float, float]:
    """The replica's deadline and overdue time (``acceleration.timing``, as ``assign`` calls
    it), in seconds."""
    queued = max(1.0, host.holds / host.cores)
    when = timing(
        expected=batch.fpops / (host.benchmark * host.on_fraction) * queued,
        typical=typical,
        now=at(now),
        delay_bound=batch.policy.delay_bound,
        accelerated=accelerated,
        reliable=is_reliable_host,
        turnaround=host.turnaround,
        rules=knobs.rules,
    )
    return seconds_of(when.deadline), seconds_of(when.overdue_at)


def unit_view(unit: Unit) -> UnitView:
    batch = unit.batch
    return UnitView(
        unit.id,
        batch.policy,
        unit.state,
        has_canonical=unit.canonical is not None,
        disputed=unit.disputed,
        tail=batch.tail,
    )
