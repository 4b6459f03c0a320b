"""The work-unit lifecycle, after BOINC's transitioner: pure, no ORM, no clock.

Given a work unit, its replicas and ``now``, :func:`transition` says what must change,
the unit's state included. The transitioner applies the answer with conditional updates;
everything else (reports, validation) only records facts: a report its outcome, the
validator its verdicts (validate states, the canonical replica, a reopened unit) and then
the state :func:`settled_state` gives. Running :func:`transition` again on the applied
result asks for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from coordinator.core.errors import InvalidInput


class ReplicaState(StrEnum):
    UNSENT = "unsent"
    IN_PROGRESS = "in_progress"
    OVER = "over"


class Outcome(StrEnum):
    INIT = "init"
    SUCCESS = "success"
    CLIENT_ERROR = "client_error"
    NO_REPLY = "no_reply"
    DIDNT_NEED = "didnt_need"
    VALIDATE_ERROR = "validate_error"


class ValidateState(StrEnum):
    INIT = "init"
    VALID = "valid"
    INVALID = "invalid"
    INCONCLUSIVE = "inconclusive"


class UnitState(StrEnum):
    ACTIVE = "active"
    DONE = "done"  # has a canonical replica
    FAILED = "failed"


class FailureReason(StrEnum):
    TOO_MANY_ERRORS = "too_many_errors"
    TOO_MANY_TOTAL = "too_many_total_results"
    CANCELLED = "cancelled"


ERROR_OUTCOMES = frozenset({Outcome.CLIENT_ERROR, Outcome.NO_REPLY, Outcome.VALIDATE_ERROR})
# An output the validator cannot read (not the app's format, or gone) is its host's error:
# it counts against max_error_results, like a crash, and never joins a quorum.
UNREADABLE_OUTPUT = (Outcome.VALIDATE_ERROR, ValidateState.INVALID)
# An audit of a done unit may make this many replicas beyond its max_total_results (errors
# and missed deadlines of auditors included), then it stops asking.
AUDIT_EXTRA_RESULTS = 3


@dataclass(frozen=True)
class Policy:
    """A unit's redundancy policy (BOINC's names): how many replicas, how many must agree,
    and the limits. The project's defaults are these."""

    min_quorum: int = 2
    target_nresults: int = 2
    max_error_results: int = 3
    max_total_results: int = 6
    delay_bound: int = 7 * 24 * 3600  # seconds a host has before its replica times out

    def check(self) -> None:
        """Refuse a policy the lifecycle cannot follow, with a message a scientist can act on."""
        if self.min_quorum < 1:
            raise InvalidInput("min_quorum must be at least 1")
        if self.target_nresults < self.min_quorum:
            raise InvalidInput("target_nresults must be at least min_quorum")
        if self.max_total_results < self.target_nresults:
            raise InvalidInput("max_total_results must be at least target_nresults")
        if self.delay_bound < 1:
            raise InvalidInput("delay_bound must be at least one second")


@dataclass(frozen=True)
class UnitView:
    id: int
    policy: Policy
    state: UnitState = UnitState.ACTIVE
    has_canonical: bool = False
    need_validate: bool = False
    cancelled: bool = False  # its batch was cancelled by the scientist
    disputed: bool = False  # two outputs disagreed at some point
    audit_wanted: bool = False  # an established host should check the canonical result
    # Its batch is nearly done (TAIL_FRACTION): an overdue replica gets a backup, the first
    # valid result wins (docs/batches.md, "Tail acceleration").
    tail: bool = False


@dataclass(frozen=True)
class ReplicaView:
    id: int
    state: ReplicaState
    outcome: Outcome = Outcome.INIT
    validate_state: ValidateState = ValidateState.INIT
    deadline: datetime | None = None
    trusted_single: bool = False  # sent alone to a trusted host (adaptive replication)
    reserved: bool = False  # for an established host only (a dispute or an audit)
    # Later than its host usually takes from then on (set when it is sent): in a batch's
    # tail, a replica still out by then gets a backup.
    overdue_at: datetime | None = None


@dataclass(frozen=True)
class Transition:
    """What the transitioner must write for one unit."""

    create_replicas: int = 0
    # New replicas settle a dispute: reserved for established hosts unrelated to the others,
    # never simply whoever asks next.
    reserve_new: bool = False
    timed_out: tuple[int, ...] = ()  # IN_PROGRESS -> OVER / NO_REPLY
    not_needed: tuple[int, ...] = ()  # UNSENT -> OVER / DIDNT_NEED
    aborted: tuple[int, ...] = ()  # IN_PROGRESS -> OVER / DIDNT_NEED; the host is told to abort
    # New replicas are reissues or tail work (reserved ones only in a tail: a dispute's replica
    # on a host seldom on was what a batch's last units waited for in bench.simulate): reliable
    # hosts first, with a shorter deadline.
    accelerate_new: bool = False
    need_validate: bool = False
    failure: FailureReason | None = None
    state: UnitState | None = None  # the unit's new state; None: it stays
    next_transition: datetime | None = None  # None: nothing is scheduled

    @property
    def changes_replicas(self) -> bool:
        return bool(self.create_replicas or self.timed_out or self.not_needed or self.aborted)


@dataclass
class _Tally:
    unsent: list[int] = field(default_factory=list)
    unsent_reserved: list[int] = field(default_factory=list)
    in_progress: list[ReplicaView] = field(default_factory=list)
    errors: int = 0
    total: int = 0
    alive_successes: int = 0  # successes not yet judged invalid
    unchecked_successes: int = 0
    inconclusive: int = 0


def _tally(replicas: list[ReplicaView], timed_out: set[int]) -> _Tally:
    tally = _Tally(total=len(replicas))
    for replica in replicas:
        if replica.id in timed_out:
            tally.errors += 1
        elif replica.state is ReplicaState.UNSENT:
            tally.unsent.append(replica.id)
            if replica.reserved:
                tally.unsent_reserved.append(replica.id)
        elif replica.state is ReplicaState.IN_PROGRESS:
            tally.in_progress.append(replica)
        elif replica.outcome in ERROR_OUTCOMES:
            tally.errors += 1
        elif replica.outcome is Outcome.SUCCESS and replica.validate_state is not ValidateState.INVALID:
            tally.alive_successes += 1
            if replica.validate_state is ValidateState.INIT:
                tally.unchecked_successes += 1
            elif replica.validate_state is ValidateState.INCONCLUSIVE:
                tally.inconclusive += 1
    return tally


def _is_live(replica: ReplicaView, timed_out: set[int]) -> bool:
    if replica.state is ReplicaState.IN_PROGRESS:
        return replica.id not in timed_out
    return replica.outcome is Outcome.SUCCESS and replica.validate_state is not ValidateState.INVALID


def keeps_unit_alone(replica: ReplicaView) -> bool:
    """A trusted host's lone replica that keeps its unit from every other host: out, or
    successful and neither invalid nor disputed (an inconclusive one needs others to settle
    it). Dispatch checks this in SQL (``scheduler.dispatch_sql.OUT_ALONE``, tested against it)."""
    return replica.trusted_single and (
        replica.state is ReplicaState.IN_PROGRESS
        or (
            replica.outcome is Outcome.SUCCESS
            and replica.validate_state not in (ValidateState.INVALID, ValidateState.INCONCLUSIVE)
        )
    )


def effective_policy(
    policy: Policy, replicas: list[ReplicaView], timed_out: set[int] | None = None
) -> Policy:
    """Adaptive replication: while a replica sent alone to a trusted host is out or
    successful, one agreeing replica is a quorum. If it fails, the unit's own policy is back.
    So is it while any other replica of the unit is live: the quorum of one is the trusted
    host's alone, never a result from someone else who happened to get the unit too."""
    gone = timed_out or set()
    live = [r for r in replicas if _is_live(r, gone)]
    if any(r.trusted_single for r in live) and all(r.trusted_single for r in live):
        return replace(policy, min_quorum=1, target_nresults=1)
    return policy


def wanted_replicas(policy: Policy, tally: _Tally) -> int:
    """Replicas that should exist unfinished or successful: the target, or one more than
    the successes the validator has judged while they disagree (BOINC raises the target
    the same way). A success not yet judged may settle the disagreement, so it waits."""
    if tally.inconclusive:
        judged = tally.alive_successes - tally.unchecked_successes
        return max(policy.target_nresults, judged + 1)
    return policy.target_nresults


def settled_state(unit: UnitView) -> UnitState:
    """The state a unit's facts put it in: done once the validator found a canonical replica;
    active again when a done unit lost it (a late dissent or a failed audit reopened it for
    established hosts to settle); failed stays failed. The validator writes this after its
    verdicts, and :func:`transition` applies it to whatever it is given."""
    if unit.state is UnitState.FAILED:
        return UnitState.FAILED
    return UnitState.DONE if unit.has_canonical else UnitState.ACTIVE


def transition(unit: UnitView, replicas: list[ReplicaView], now: datetime) -> Transition:
    """Everything that must change for ``unit`` at ``now``, its state included."""
    settled = replace(unit, state=settled_state(unit))
    result = _changes(settled, replicas, now)
    state = UnitState.FAILED if result.failure is not None else settled.state
    return replace(result, state=state) if state is not unit.state else result


def _changes(unit: UnitView, replicas: list[ReplicaView], now: datetime) -> Transition:
    timed_out = {
        r.id
        for r in replicas
        if r.state is ReplicaState.IN_PROGRESS and r.deadline is not None and r.deadline <= now
    }
    tally = _tally(replicas, timed_out)
    next_transition = _next_transition(unit, tally, now)

    if unit.cancelled:
        return cancel(unit, tally, timed_out)

    if unit.state is not UnitState.ACTIVE:
        return _finished(unit, tally, timed_out, next_transition, now)

    policy = effective_policy(unit.policy, replicas, timed_out)
    if tally.errors > policy.max_error_results:
        return Transition(
            timed_out=tuple(sorted(timed_out)),
            not_needed=tuple(tally.unsent),
            failure=FailureReason.TOO_MANY_ERRORS,
            next_transition=next_transition,
        )

    need_validate = tally.unchecked_successes > 0 and tally.alive_successes >= policy.min_quorum
    pending = len(tally.unsent) + len(tally.in_progress)
    wanted = wanted_replicas(policy, tally) + len(overdue(unit, tally, now))  # one backup each
    missing = max(0, wanted - pending - tally.alive_successes)
    create = min(missing, max(0, policy.max_total_results - tally.total))
    # More unsent replicas than wanted (a trusted host took the unit alone): cancel the newest.
    surplus = min(len(tally.unsent), pending + tally.alive_successes - wanted)
    cancelled = tuple(sorted(tally.unsent)[len(tally.unsent) - surplus :]) if surplus > 0 else ()
    if missing > create and pending + create == 0 and not need_validate:
        return Transition(
            timed_out=tuple(sorted(timed_out)),
            failure=FailureReason.TOO_MANY_TOTAL,
            next_transition=next_transition,
        )
    reserve = create > 0 and (unit.disputed or tally.inconclusive > 0)
    return Transition(
        create_replicas=create,
        reserve_new=reserve,
        # A reserved replica has its own hosts (established ones); in a tail, reliable first.
        accelerate_new=create > 0 and (unit.tail or (not reserve and tally.total > 0)),
        timed_out=tuple(sorted(timed_out)),
        not_needed=cancelled,
        need_validate=need_validate,
        next_transition=next_transition,
    )


def _next_transition(unit: UnitView, tally: _Tally, now: datetime) -> datetime | None:
    """The first deadline of a replica out; in a batch's tail, also when one becomes
    overdue, to back it up then."""
    times = [r.deadline for r in tally.in_progress if r.deadline is not None]
    if unit.tail:
        times += [r.overdue_at for r in tally.in_progress if r.overdue_at is not None and r.overdue_at > now]
    return min(times) if times else None


def overdue(unit: UnitView, tally: _Tally, now: datetime) -> list[ReplicaView]:
    """In a batch's tail, the replicas out past the time their hosts usually take: each is
    backed up by one more replica, and whichever valid result comes first counts."""
    if not unit.tail:
        return []
    return [r for r in tally.in_progress if r.overdue_at is not None and r.overdue_at <= now]


def _finished(
    unit: UnitView, tally: _Tally, timed_out: set[int], next_transition: datetime | None, now: datetime
) -> Transition:
    """A finished unit: cancel what was never sent, but an audit's replica; replicas still
    out may report late and are then compared with the canonical one, so they keep running
    until their deadline; but in a batch's tail an overdue one is aborted, its backup or
    another having won (it is never credited: a late report of it is only acknowledged)."""
    late = unit.has_canonical and tally.unchecked_successes > 0
    audit = _audit_replicas(unit, tally, timed_out)
    kept = tally.unsent_reserved[:1] if unit.audit_wanted and unit.has_canonical else []
    beaten = {r.id for r in overdue(unit, tally, now) if unit.has_canonical and not r.reserved}
    if beaten:  # what is called off is no longer awaited
        running = [r for r in tally.in_progress if r.id not in beaten]
        next_transition = _next_transition(unit, replace(tally, in_progress=running), now)
    return Transition(
        create_replicas=audit,
        reserve_new=audit > 0,
        timed_out=tuple(sorted(timed_out)),
        not_needed=tuple(r for r in tally.unsent if r not in kept),
        aborted=tuple(sorted(beaten)),
        need_validate=late,
        next_transition=next_transition,
    )


def _audit_replicas(unit: UnitView, tally: _Tally, timed_out: set[int]) -> int:
    """One reserved replica to check a done unit's canonical result, while an audit is wanted
    and none is out or unsent, up to ``AUDIT_EXTRA_RESULTS`` beyond the unit's own limit."""
    if not (unit.audit_wanted and unit.has_canonical and unit.state is UnitState.DONE):
        return 0
    out = [r for r in tally.in_progress if r.reserved and r.id not in timed_out]
    if tally.unsent_reserved or out or tally.unchecked_successes:
        return 0
    return 1 if tally.total < unit.policy.max_total_results + AUDIT_EXTRA_RESULTS else 0


def cancel(unit: UnitView, tally: _Tally, timed_out: set[int]) -> Transition:
    """A cancelled batch's unit: nothing more is sent, hosts still crunching are told to
    abort, and an unfinished unit fails. A canonical result already found stays, and a
    success already reported is still judged, so its host is credited fairly."""
    unfinished = unit.state is UnitState.ACTIVE and not unit.has_canonical
    return Transition(
        timed_out=tuple(sorted(timed_out)),
        not_needed=tuple(tally.unsent),
        aborted=tuple(sorted(r.id for r in tally.in_progress)),
        need_validate=unit.has_canonical and tally.unchecked_successes > 0,
        failure=FailureReason.CANCELLED if unfinished else None,
    )


def keeps_homogeneity(replicas: list[ReplicaView], timed_out: Iterable[int]) -> bool:
    """Whether a unit kept to one host class or app version (homogeneous redundancy) still
    needs to be: while a replica of it runs or one succeeded. Otherwise any class may start
    it afresh (BOINC's transitioner clears hr_class the same way)."""
    gone = set(timed_out)
    running = any(r.state == ReplicaState.IN_PROGRESS and r.id not in gone for r in replicas)
    succeeded = any(
        r.outcome == Outcome.SUCCESS and r.validate_state != ValidateState.INVALID for r in replicas
    )
    return running or succeeded
