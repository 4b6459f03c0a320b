"""The simulator's event loop: hosts fetch, crunch and report; the coordinator's policy code
decides everything else (``bench.sim_engine`` says what is ours and what is modelled)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.sim_engine import (
    COLLUDED,
    CORRECT,
    IN_PROGRESS,
    OVER,
    UNSENT,
    Batch,
    Host,
    Knobs,
    Queues,
    Rep,
    Unit,
    Usage,
    at,
    deadline_of,
    established,
    event_after,
    may_send_alone,
    reliable,
    seconds_of,
    standings,
    unit_view,
)
from bench.sim_idle import IdleBackups
from coordinator.scheduler.buffer import buffer_room
from coordinator.standing.credit import claimed_credit, granted_credit
from coordinator.standing.reputation import Event
from coordinator.validation.quorum import Candidate, find_quorum, judge_against
from coordinator.work.lifecycle import Outcome, UnitState, ValidateState, effective_policy, transition
from coordinator.work.tails import RECAP_SHARE, reliable_until

BUFFER_PER_CORE = 2  # tasks a host keeps per core (its work buffer)
MAX_TASKS_PER_RPC = 100
CANDIDATES_PER_TASK = 2  # as dispatch: read twice what is wanted
BACKOFF = (60.0, 3600.0)  # a host that got nothing asks again after this, doubling up to the most
RANDOM_SPEEDUP = 20.0
TYPICAL_EVERY = 600.0  # a random cheater returns garbage this many times faster


def _eq(a: object, b: object) -> bool:
    return a == b


@dataclass
class Figures:
    """What the run measured, beyond the units' and batches' own times."""

    computed: float = 0.0  # operations hosts crunched, on every replica they ran
    useful: float = 0.0  # on replicas that ended valid
    abandoned: float = 0.0  # on replicas timed out, called off or returned after they were needed
    contended: dict[int, float] = field(default_factory=dict)  # sent while several shares waited
    events: int = 0


class World:
    def __init__(self, *, knobs: Knobs, hosts: list[Host], weights: dict[int, float], seed: int) -> None:
        self.knobs, self.hosts, self.weights = knobs, hosts, weights
        self.rng = random.Random(seed)
        self.queues = Queues(random.Random(seed + 1), knobs.block_units)
        self.room = (0, 0)  # the claim under way: what the host holds, and the most it may get
        self.usage = Usage(knobs.window)
        self.units: list[Unit] = []
        self.reps: list[Rep] = []
        self.batches: list[Batch] = []
        self.events: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.now = 0.0
        self.running: list[dict[int, tuple[float, float]]] = [{} for _ in hosts]  # rep -> (left, since)
        self.waiting: list[list[int]] = [[] for _ in hosts]
        self.on = [False] * len(hosts)
        self.backoff = [BACKOFF[0]] * len(hosts)
        self.fetching = [False] * len(hosts)
        self.figures = Figures()
        self.open_units = 0
        self.typical, self.typical_at = 0.0, -TYPICAL_EVERY
        self.idle = IdleBackups(self, seed)  # backups for idle hosts (work.speculation)

    # --- the clock ------------------------------------------------------------------------

    def at_time(self, when: float, kind: int, a: int, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, kind, a, b))

    def run(self, handlers: dict[int, Callable[[int, int], None]], *, until: Callable[[], bool]) -> None:
        events = self.events
        while events and not until():
            when, _, kind, a, b = heapq.heappop(events)
            self.now = when
            self.figures.events += 1
            handlers[kind](a, b)

    # --- work the scientists submit --------------------------------------------------------

    def submit(self, batch: Batch) -> None:
        batch.first_unit = len(self.units)
        batch.last_block = batch.first_unit + max(0, batch.units - self.knobs.block_units)
        self.batches.append(batch)
        self.idle.grow(batch.first_unit + batch.units)
        for _ in range(batch.units):
            unit = Unit(len(self.units), batch)
            self.units.append(unit)
            batch.created += 1
            self.touch(unit)
        self.open_units += batch.units

    def new_replica(self, unit: Unit, *, reserved: bool, accelerated: bool, retry: bool) -> None:
        until = self.reliable_until(unit.batch) if accelerated else 0.0
        rep = Rep(len(self.reps), unit, self.now, reserved, until)
        self.reps.append(rep)
        unit.replicas.append(rep.id)
        if unit.id >= unit.batch.last_block:
            unit.batch.unsent += 1
        self.queues.push(
            rep, unit.batch.share, unit.batch.priority + (self.knobs.retry_priority if retry else 0)
        )

    # --- the transitioner and the validator -------------------------------------------------

    def touch(self, unit: Unit) -> None:
        """Run the lifecycle on ``unit`` and write what it asks; validate when it says so."""
        for _ in range(3):  # transition, validate, transition again at most
            reps = [self.reps[r] for r in unit.replicas]
            result = transition(unit_view(unit), [r.view() for r in reps], at(self.now))
            self.apply(unit, reps, result)
            if not result.need_validate or not self.validate(unit, reps):
                return

    def apply(self, unit: Unit, reps: list[Rep], result) -> None:
        by_id = {r.id: r for r in reps}
        for rep_id in result.timed_out:
            rep = by_id[rep_id]
            rep.state, rep.outcome = OVER, Outcome.NO_REPLY
            self.verdict(rep, Event.ERROR)
        if unit.id >= unit.batch.last_block:
            unit.batch.unsent -= len(result.not_needed)
        for rep_id in result.not_needed + result.aborted:
            by_id[rep_id].state, by_id[rep_id].outcome = OVER, Outcome.DIDNT_NEED
        retry = bool(reps)
        for _ in range(result.create_replicas):
            self.new_replica(
                unit, reserved=result.reserve_new, accelerated=result.accelerate_new, retry=retry
            )
        if result.state is not None and result.state is not unit.state:
            self.settle(unit, result.state)
        wake = None if result.next_transition is None else seconds_of(result.next_transition)
        if wake is not None and wake != unit.wake_at:
            self.at_time(wake, WAKE, unit.id)
        unit.wake_at = wake

    def settle(self, unit: Unit, state: UnitState) -> None:
        finished_before = unit.state is not UnitState.ACTIVE
        unit.state = state
        finished_now = state is not UnitState.ACTIVE
        if finished_now == finished_before:
            return
        batch = unit.batch
        batch.finished += 1 if finished_now else -1
        self.open_units -= 1 if finished_now else -1
        if finished_now:
            self.idle.finished(unit.id)
        if finished_now and unit.done_at is None:
            unit.done_at = self.now
        if batch.percent99_at is None and batch.finished >= 0.99 * batch.units:
            batch.percent99_at = self.now
        if batch.finished >= batch.units and batch.done_at is None:
            batch.done_at = self.now
        if not batch.tail and batch.finished >= self.knobs.tail_fraction * batch.units:
            self.start_tail(batch)
        if batch.tail and not batch.final_call and batch.finished >= self.knobs.final_fraction * batch.units:
            self.final_call(batch)

    def reliable_until(self, batch: Batch) -> float:
        """``tails.reliable_until``, in virtual seconds."""
        return seconds_of(reliable_until(batch.policy.delay_bound, at(self.now)))

    def start_tail(self, batch: Batch) -> None:
        """``tails.mark_batch_tails``: its unsent replicas wait for reliable hosts first, its
        active units are due now, and its replicas out are held to the usual time."""
        batch.tail = True
        until = self.reliable_until(batch)
        for unit_id in range(batch.first_unit, batch.first_unit + batch.units):
            unit = self.units[unit_id]
            if unit.state is UnitState.ACTIVE:
                self.at_time(self.now, WAKE_TAIL, unit_id)
                for rep_id in unit.replicas:
                    rep = self.reps[rep_id]
                    if rep.state is UNSENT and not rep.reserved and rep.reliable_until == 0.0:
                        rep.reliable_until = until
        self.hold_to_usual_time(batch)

    def final_call(self, batch: Batch) -> None:
        """``tails.final_call``: every replica of the batch still out is overdue now, once."""
        batch.final_call = True
        for unit_id in range(batch.first_unit, batch.first_unit + batch.units):
            unit = self.units[unit_id]
            if unit.state is not UnitState.ACTIVE:
                continue
            for rep_id in unit.replicas:
                rep = self.reps[rep_id]
                if rep.state is IN_PROGRESS and rep.overdue_at > self.now:
                    rep.overdue_at = self.now
            self.at_time(self.now, WAKE_TAIL, unit_id)

    def hold_to_usual_time(self, batch: Batch) -> None:
        """``tails.hold_to_usual_time``: the tail's replicas out are overdue by the app's usual
        turnaround at the latest, once it is known, and again when it falls."""
        usual, held = self.typical, batch.tail_turnaround
        if usual <= 0 or (held > 0 and usual >= RECAP_SHARE * held):
            return
        latest = self.knobs.rules.overdue_factor * usual
        batch.tail_turnaround = usual
        for unit_id in range(batch.first_unit, batch.first_unit + batch.units):
            unit = self.units[unit_id]
            if unit.state is not UnitState.ACTIVE:
                continue
            moved = False
            for rep_id in unit.replicas:
                rep = self.reps[rep_id]
                if rep.state is IN_PROGRESS and rep.overdue_at > rep.sent_at + latest:
                    rep.overdue_at, moved = rep.sent_at + latest, True
            if moved:
                self.at_time(self.now, WAKE_TAIL, unit_id)

    def validate(self, unit: Unit, reps: list[Rep]) -> bool:
        """The validator's pass (``validation.quorum``): whether anything changed."""
        fresh = [r for r in reps if r.outcome is Outcome.SUCCESS and r.validate is ValidateState.INIT]
        if not fresh and unit.canonical is None:
            fresh = [
                r for r in reps if r.outcome is Outcome.SUCCESS and r.validate is ValidateState.INCONCLUSIVE
            ]
        if not fresh:
            return False
        if unit.canonical is not None:
            verdict = judge_against(
                Candidate(unit.canonical, self.reps[unit.canonical].value),
                [Candidate(r.id, r.value) for r in fresh],
                _eq,
            )
        else:
            alive = [
                r for r in reps if r.outcome is Outcome.SUCCESS and r.validate is not ValidateState.INVALID
            ]
            alive.sort(key=lambda r: r.received)
            quorum = effective_policy(unit.batch.policy, [r.view() for r in reps]).min_quorum
            verdict = find_quorum([Candidate(r.id, r.value) for r in alive], quorum, _eq, self.vouched)
            if len({r.value for r in alive}) > 1:
                unit.disputed = True
        return self.record(unit, verdict)

    def vouched(self, group: list[Candidate]) -> bool:
        return any(established(self.hosts[self.reps[c.id].host], self.now, self.knobs) for c in group)

    def record(self, unit: Unit, verdict) -> bool:
        for rep_id in verdict.inconclusive:
            self.reps[rep_id].validate = ValidateState.INCONCLUSIVE
        if verdict.canonical is None:
            return bool(verdict.inconclusive)
        unit.canonical = unit.canonical if unit.canonical is not None else verdict.canonical
        valid = [self.reps[r] for r in verdict.valid]
        grant = granted_credit([r.claim for r in valid])
        hosts = [r.host for r in valid]
        for rep in valid:
            rep.validate = ValidateState.VALID
            host = self.hosts[rep.host]
            host.credit += grant
            if host.kind == "honest":
                host.honest_fpops += unit.batch.fpops
            self.figures.useful += unit.batch.fpops
            confirmed = any(established(self.hosts[h], self.now, self.knobs) for h in hosts if h != rep.host)
            others = any(h != rep.host for h in hosts)
            self.verdict(
                rep,
                Event.VALID_CONFIRMED if confirmed else Event.VALID_INDEPENDENT if others else Event.VALID,
            )
        for rep_id in verdict.invalid:
            self.reps[rep_id].validate = ValidateState.INVALID
            self.verdict(self.reps[rep_id], Event.INVALID)
        return True

    def verdict(self, rep: Rep, event: Event) -> None:
        host = self.hosts[rep.host]
        event_after(host, event, int(self.now // 86400), self.knobs)
        if event is Event.VALID_CONFIRMED or event is Event.VALID_INDEPENDENT or event is Event.VALID:
            turnaround = rep.received - rep.sent_at
            host.samples += 1
            host.turnaround += (turnaround - host.turnaround) / min(host.samples, 10)

    # --- dispatch -----------------------------------------------------------------------------

    def claim(self, host: Host, want: int, held: int) -> list[Rep]:
        """Replicas for ``host``, which holds ``held`` (``scheduler.dispatch.claim_work``):
        reserved ones for an established host, then share by share in fair-share order, within
        the work buffer (``scheduler.buffer``) sized by the first one taken."""
        knobs, now = self.knobs, self.now
        day = int(now // 86400)
        if host.quota_day != day:
            host.quota_day, host.quota_used = day, 0
        want = min(want, MAX_TASKS_PER_RPC, max(0, host.quota - host.quota_used))
        if want <= 0:
            return []
        is_reliable_host = reliable(host, knobs, self.typical_turnaround())
        is_established = established(host, now, knobs)
        chosen: list[Rep] = []
        units: set[int] = set()
        self.room = (held, want)  # the buffer's limit once the first replica is taken
        if self.queues.reserved:
            made_before = None if is_established else now - knobs.dispute_wait
            self.pick(host, None, self.queues.reserved, want, chosen, units, is_reliable_host, made_before)
        order = standings(self.queues, self.usage, self.weights, now)
        if len(order) > 1:
            self.figures.contended.setdefault(-1, 0.0)
        for share in order:
            if len(chosen) >= self.room[1]:
                break
            assert share is not None
            before = len(chosen)
            self.pick(host, share, self.queues.by_share[share], want, chosen, units, is_reliable_host, None)
            sent = sum(r.unit.batch.fpops for r in chosen[before:])
            self.usage.add(share, now, sent)
            if len(order) > 1:
                self.figures.contended[share] = self.figures.contended.get(share, 0.0) + sent
        for rep in chosen:
            self.send(rep, host, is_reliable_host)
        host.quota_used += len(chosen)
        return chosen

    def pick(self, host, share, heap, want, chosen, units, is_reliable_host, made_before) -> None:
        """Read the queue in order, as the candidates query: skip what this host may not take
        (its own unit, a unit out alone, accelerated work waiting for a reliable host), and
        leave it for others."""
        skipped = []
        want = self.room[1]
        budget = (want - len(chosen)) * CANDIDATES_PER_TASK + 8
        speed = (
            host.benchmark * host.on_fraction * self.knobs.deadline_share
        )  # app_filters: at its availability
        while heap and len(chosen) < want and budget > 0:
            entry = heapq.heappop(heap)
            rep = self.reps[entry[2]]
            if rep.state is not UNSENT:
                continue  # gone from the index: not needed any more
            budget -= 1
            unit = rep.unit
            if (
                unit.id in units
                or (made_before is not None and rep.created > made_before)
                or (rep.reliable_until > self.now and not is_reliable_host)
                or unit.batch.fpops > speed * unit.batch.policy.delay_bound
                or self.not_for(unit, host.index, rep.reserved or rep.reliable_until > 0)
            ):
                skipped.append(entry)
                continue
            if not chosen:
                want = self.limit_to_buffer(host, unit.batch.fpops)
                if want <= 0:
                    skipped.append(entry)
                    break
            units.add(unit.id)
            chosen.append(rep)
        self.queues.again(share, skipped)

    def limit_to_buffer(self, host: Host, fpops: float) -> int:
        """``claim_choice.ClaimChoice.limit_to_buffer``: the claim's limit once its first task is known."""
        held, want = self.room
        room = buffer_room(
            cores=host.cores,
            held=held,
            task_cores=1.0,
            task_seconds=fpops / host.benchmark / host.cores,
            buffer_seconds=self.knobs.buffer_seconds,
        )
        self.room = (held, min(want, room))
        return self.room[1]

    def not_for(self, unit: Unit, host_index: int, alone_ok: bool) -> bool:
        """``dispatch_sql.unit_not_for``: the host holds one of its replicas, or it is out alone
        (unless the candidate is reserved, to check a result, or accelerated: a backup the
        lifecycle asked for)."""
        for rep_id in unit.replicas:
            rep = self.reps[rep_id]
            if rep.host == host_index:
                return True
            if (
                not alone_ok
                and rep.trusted_single
                and (
                    rep.state is IN_PROGRESS
                    or (
                        rep.outcome is Outcome.SUCCESS
                        and rep.validate not in (ValidateState.INVALID, ValidateState.INCONCLUSIVE)
                    )
                )
            ):
                return True
        return False

    def typical_turnaround(self) -> float:
        """The app's usual turnaround: the median of the hosts' measured ones, refreshed every
        TYPICAL_EVERY seconds (as the validation sweep refreshes the app's figures)."""
        if self.now - self.typical_at >= TYPICAL_EVERY:
            proven = self.knobs.establishment.min_independent_valid  # refresh_turnarounds' hosts
            measured = sorted(h.turnaround for h in self.hosts if h.samples and h.independent_valid >= proven)
            self.typical = measured[len(measured) // 2] if measured else 0.0
            self.typical_at = self.now
            for batch in self.batches:  # the transitioner's sweep runs mark_batch_tails each time
                if batch.tail and batch.done_at is None:
                    self.hold_to_usual_time(batch)
        return self.typical

    def send(self, rep: Rep, host: Host, is_reliable_host: bool) -> None:
        unit = rep.unit
        accelerated = rep.reliable_until > 0
        rep.deadline, rep.overdue_at = deadline_of(
            now=self.now,
            batch=unit.batch,
            accelerated=accelerated,
            is_reliable_host=is_reliable_host,
            host=host,
            knobs=self.knobs,
            typical=self.typical_turnaround(),
        )
        rep.state, rep.host, rep.sent_at = IN_PROGRESS, host.index, self.now
        if unit.id >= unit.batch.last_block:  # last_block_sent: its fresh work is all out
            unit.batch.unsent -= 1
            if not unit.batch.tail and unit.batch.unsent == 0 and unit.batch.units == unit.batch.created:
                self.start_tail(unit.batch)
        if unit.first_sent is None:
            unit.first_sent = self.now
        alone = (
            not rep.reserved
            and len(unit.replicas) <= unit.batch.policy.target_nresults
            and not any(self.reps[r].state is not UNSENT for r in unit.replicas if r != rep.id)
        )
        if alone and may_send_alone(host, self.now, self.knobs, self.rng.random()):
            rep.trusted_single = True
            self.touch(unit)  # its other unsent replicas are no longer needed
        wake = rep.overdue_at if unit.batch.tail else rep.deadline
        if unit.wake_at is None or wake < unit.wake_at:
            unit.wake_at = wake
            self.at_time(wake, WAKE, unit.id)

    # --- results ------------------------------------------------------------------------------

    def result_of(self, host: Host, rep: Rep, seconds: float) -> None:
        """A task ended on ``host`` after ``seconds`` of crunching: what it sends back."""
        self.figures.computed += host.flops * seconds
        if rep.state is not IN_PROGRESS or rep.host != host.index:
            self.figures.abandoned += host.flops * seconds  # called off or timed out meanwhile
            return
        rep.state, rep.received = OVER, self.now
        if self.rng.random() < self.error_rate(host):
            rep.outcome = Outcome.CLIENT_ERROR
            self.verdict(rep, Event.ERROR)
        else:
            rep.outcome = Outcome.SUCCESS
            rep.value = self.answer(host)
            cpu = seconds * (RANDOM_SPEEDUP if host.kind == "random" else 1.0)
            rep.claim = claimed_credit(
                fpops_estimate=rep.unit.batch.fpops, host_flops=host.benchmark, cpu_time=cpu
            )
        self.touch(rep.unit)

    def error_rate(self, host: Host) -> float:
        return self.specs_error[host.index]

    def answer(self, host: Host) -> int:
        if host.kind == "colluding":
            return COLLUDED
        if host.kind == "random" or self.rng.random() < self.specs_wrong[host.index]:
            return 1 + self.rng.getrandbits(40)
        return CORRECT

    specs_error: list[float] = []
    specs_wrong: list[float] = []


WAKE, WAKE_TAIL = 1, 2
