"""Invariants of the pure lifecycle, checked by hypothesis on random states and random histories.

A transition is applied here the way the transitioner writes it (``apply``), so the tests can
ask what the lifecycle promises about the *next* transition too: nothing left to do (idempotence),
nothing happening before ``next_transition``, and every unit reaching an end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from coordinator.work.lifecycle import (
    ERROR_OUTCOMES,
    FailureReason,
    Outcome,
    Policy,
    ReplicaState,
    ReplicaView,
    Transition,
    UnitState,
    UnitView,
    ValidateState,
    transition,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
BOUNDED = settings(max_examples=200, deadline=None)

OVER_KINDS = [
    (Outcome.SUCCESS, ValidateState.INIT),
    (Outcome.SUCCESS, ValidateState.VALID),
    (Outcome.SUCCESS, ValidateState.INVALID),
    (Outcome.SUCCESS, ValidateState.INCONCLUSIVE),
    (Outcome.CLIENT_ERROR, ValidateState.INIT),
    (Outcome.NO_REPLY, ValidateState.INIT),
    (Outcome.DIDNT_NEED, ValidateState.INIT),
    (Outcome.VALIDATE_ERROR, ValidateState.INVALID),
]


# --- strategies ---------------------------------------------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Policies the coordinator accepts: 1 <= min_quorum <= target <= max_total."""
    min_quorum = draw(st.integers(1, 3))
    target = draw(st.integers(min_quorum, min_quorum + 2))
    return Policy(
        min_quorum=min_quorum,
        target_nresults=target,
        max_error_results=draw(st.integers(0, 4)),
        max_total_results=draw(st.integers(target, target + 5)),
        delay_bound=draw(st.sampled_from([60, 3600])),
    )


@st.composite
def replicas_for(draw: st.DrawFn, max_size: int) -> list[ReplicaView]:
    """Any mix of replica states; deadlines on whole minutes so ``deadline == now`` comes up often."""
    replicas = []
    for rid in range(1, draw(st.integers(0, max_size)) + 1):
        kind = draw(st.sampled_from(["unsent", "out", "over"]))
        if kind == "unsent":
            replicas.append(ReplicaView(rid, ReplicaState.UNSENT))
        elif kind == "out":
            deadline = T0 + timedelta(minutes=draw(st.integers(-90, 90)))
            replicas.append(ReplicaView(rid, ReplicaState.IN_PROGRESS, deadline=deadline))
        else:
            outcome, validate_state = draw(st.sampled_from(OVER_KINDS))
            replicas.append(ReplicaView(rid, ReplicaState.OVER, outcome, validate_state))
    return replicas


@st.composite
def situations(draw: st.DrawFn) -> tuple[UnitView, list[ReplicaView]]:
    """A unit in any state and its replicas, sometimes more than the policy's total after a policy
    change. DONE units mostly have a canonical replica (one without was reopened by the
    validator); an ACTIVE one may have one too (a verdict the state does not show yet)."""
    policy = draw(policies())
    state = draw(st.sampled_from(list(UnitState)))
    has_canonical = state is not UnitState.FAILED and draw(st.integers(0, 4)) == 0
    has_canonical = has_canonical != (state is UnitState.DONE)
    unit = UnitView(1, policy, state, has_canonical=has_canonical, need_validate=draw(st.booleans()))
    return unit, draw(replicas_for(policy.max_total_results + 2))


# --- the pure "transitioner" ------------------------------------------------------------


def apply(
    unit: UnitView, replicas: list[ReplicaView], result: Transition
) -> tuple[UnitView, list[ReplicaView]]:
    """Write ``result`` as services.apply_transitions does, without a database: conditional
    replica updates, new UNSENT replicas with fresh ids, the unit's new state if it has one."""
    timed_out, not_needed = set(result.timed_out), set(result.not_needed)
    updated = []
    for r in replicas:
        if r.id in timed_out and r.state is ReplicaState.IN_PROGRESS:
            r = replace(r, state=ReplicaState.OVER, outcome=Outcome.NO_REPLY)
        elif (r.id in not_needed and r.state is ReplicaState.UNSENT) or (
            r.id in result.aborted and r.state is ReplicaState.IN_PROGRESS
        ):
            r = replace(r, state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED)
        updated.append(r)
    first = max((r.id for r in replicas), default=0) + 1
    updated.extend(ReplicaView(first + i, ReplicaState.UNSENT) for i in range(result.create_replicas))
    state = result.state or unit.state
    return replace(unit, state=state, need_validate=result.need_validate), updated


# --- what must hold of one transition -----------------------------------------------------


def is_unchecked_success(r: ReplicaView) -> bool:
    return r.outcome is Outcome.SUCCESS and r.validate_state is ValidateState.INIT


def is_alive_success(r: ReplicaView) -> bool:
    """A success not (yet) judged invalid: it may still join a quorum."""
    return r.outcome is Outcome.SUCCESS and r.validate_state is not ValidateState.INVALID


def is_finished(unit: UnitView) -> bool:
    return unit.state is UnitState.FAILED or unit.has_canonical


def check_transition(unit: UnitView, replicas: list[ReplicaView], now: datetime, result: Transition) -> None:
    """Every promise the lifecycle makes about one answer, stated from the facts, not its code."""
    policy = unit.policy
    in_progress = [r for r in replicas if r.state is ReplicaState.IN_PROGRESS]
    due = sorted(r.id for r in in_progress if r.deadline is not None and r.deadline <= now)
    unsent_ids = [r.id for r in replicas if r.state is ReplicaState.UNSENT]
    over = [r for r in replicas if r.state is ReplicaState.OVER]
    errors = sum(r.outcome in ERROR_OUTCOMES for r in over) + len(due)
    still_pending = len(unsent_ids) + len(in_progress) - len(due)
    unchecked = any(is_unchecked_success(r) for r in over)
    alive = sum(is_alive_success(r) for r in over)

    # Timeouts: exactly the IN_PROGRESS replicas at or past their deadline; cancels: only UNSENT ones.
    assert list(result.timed_out) == due
    assert len(set(result.not_needed)) == len(result.not_needed)
    assert set(result.not_needed) <= set(unsent_ids)

    # Creation never passes max_total_results, and never happens on a finished or failing unit.
    assert 0 <= result.create_replicas <= max(0, policy.max_total_results - len(replicas))
    if is_finished(unit) or result.failure is not None:
        assert result.create_replicas == 0
        assert set(result.not_needed) == set(unsent_ids), "a finished unit cancels every unsent replica"
    else:
        # An active unit cancels only a surplus: its newest unsent replicas, and then makes none.
        newest = sorted(unsent_ids)[len(unsent_ids) - len(result.not_needed) :]
        assert sorted(result.not_needed) == newest
        assert not (result.not_needed and result.create_replicas)
    if is_finished(unit):
        assert result.failure is None

    # Failure: too many errors exactly when errors pass the limit; too many total only when the
    # total is spent and nothing is out or waiting for the validator.
    if not is_finished(unit):
        assert (result.failure is FailureReason.TOO_MANY_ERRORS) == (errors > policy.max_error_results)
        if result.failure is FailureReason.TOO_MANY_TOTAL:
            assert len(replicas) >= policy.max_total_results
            assert still_pending == 0 and not result.need_validate
        if errors <= policy.max_error_results and still_pending > 0:
            assert result.failure is None

    # State: failed stays failed, or fails now; done with a canonical replica; active otherwise,
    # a reopened unit included. A state is named only when it changes.
    if unit.state is UnitState.FAILED or result.failure is not None:
        expected = UnitState.FAILED
    else:
        expected = UnitState.DONE if unit.has_canonical else UnitState.ACTIVE
    assert (result.state or unit.state) is expected
    assert result.state is not unit.state

    # Validation: only for a fresh success, with a quorum or against a canonical replica.
    if unit.has_canonical:
        assert result.need_validate == unchecked
    elif unit.state is UnitState.FAILED or result.failure is not None:
        assert not result.need_validate
    else:
        assert result.need_validate == (unchecked and alive >= policy.min_quorum)

    # Scheduling: the earliest deadline still ahead, strictly after now.
    ahead = [r.deadline for r in in_progress if r.deadline is not None and r.deadline > now]
    assert result.next_transition == (min(ahead) if ahead else None)

    # Progress: an active unit without a canonical answer always has something under way.
    never_valid = not any(r.validate_state is ValidateState.VALID for r in replicas)
    if not is_finished(unit) and result.failure is None and never_valid:
        assert still_pending + result.create_replicas > 0 or result.need_validate


def check_idempotent(unit: UnitView, replicas: list[ReplicaView], now: datetime, result: Transition) -> None:
    """Transitioning the applied result again asks for nothing new (a second sweep is a no-op)."""
    again = transition(*apply(unit, replicas, result), now)
    assert not again.changes_replicas, again
    assert again.failure is None and again.state is None
    assert again.need_validate == result.need_validate
    assert again.next_transition == result.next_transition


# --- properties of single transitions ------------------------------------------------------


@BOUNDED
@given(situations())
def test_every_answer_keeps_the_lifecycle_promises(situation: tuple[UnitView, list[ReplicaView]]):
    unit, replicas = situation
    check_transition(unit, replicas, T0, transition(unit, replicas, T0))


@BOUNDED
@given(situations())
def test_a_transition_applied_then_repeated_asks_for_nothing(situation: tuple[UnitView, list[ReplicaView]]):
    unit, replicas = situation
    check_idempotent(unit, replicas, T0, transition(unit, replicas, T0))


@BOUNDED
@given(situations(), st.integers(0, 10**6))
def test_nothing_happens_before_next_transition(situation: tuple[UnitView, list[ReplicaView]], offset: int):
    """The transitioner may sleep until next_transition: any earlier look changes nothing."""
    unit, replicas = situation
    result = transition(unit, replicas, T0)
    applied_unit, applied = apply(unit, replicas, result)
    if result.next_transition is not None:
        offset %= int((result.next_transition - T0).total_seconds())
    later = transition(applied_unit, applied, T0 + timedelta(seconds=offset))

    assert not later.changes_replicas and later.failure is None
    assert (later.need_validate, later.next_transition) == (result.need_validate, result.next_transition)


@BOUNDED
@given(situations(), st.randoms(use_true_random=False), st.booleans())
def test_the_answer_depends_on_the_facts_not_their_order_or_the_stored_flag(
    situation: tuple[UnitView, list[ReplicaView]], rnd: random.Random, flag: bool
):
    unit, replicas = situation
    shuffled = list(replicas)
    rnd.shuffle(shuffled)

    first = transition(unit, replicas, T0)
    second = transition(replace(unit, need_validate=flag), shuffled, T0)

    assert replace(first, not_needed=()) == replace(second, not_needed=())
    assert sorted(first.not_needed) == sorted(second.not_needed)


@BOUNDED
@given(situations())
def test_a_cancelled_unit_sends_nothing_more_calls_hosts_off_and_fails_unless_finished(
    situation: tuple[UnitView, list[ReplicaView]],
):
    unit, replicas = situation
    unit = replace(unit, cancelled=True)
    result = transition(unit, replicas, T0)

    in_progress = [r for r in replicas if r.state is ReplicaState.IN_PROGRESS]
    due = sorted(r.id for r in in_progress if r.deadline is not None and r.deadline <= T0)
    assert result.create_replicas == 0
    assert sorted(result.not_needed) == sorted(r.id for r in replicas if r.state is ReplicaState.UNSENT)
    assert list(result.timed_out) == due
    assert sorted(result.aborted) == sorted(r.id for r in in_progress if r.id not in due)
    assert (result.failure is FailureReason.CANCELLED) == (not is_finished(unit))
    assert result.need_validate == (unit.has_canonical and any(is_unchecked_success(r) for r in replicas))
    assert result.next_transition is None

    again = transition(*apply(unit, replicas, result), T0)
    assert not again.changes_replicas and again.failure is None
    assert again.need_validate == result.need_validate


def judged_wanted(unit: UnitView, replicas: list[ReplicaView]) -> int:
    """Replicas the validator's judgements so far call for: the target, or one more than the
    successes it has judged while they disagree (BOINC's validator bumps target_nresults so)."""
    judged = [r for r in replicas if is_alive_success(r) and r.validate_state is not ValidateState.INIT]
    if any(r.validate_state is ValidateState.INCONCLUSIVE for r in judged):
        return max(unit.policy.target_nresults, len(judged) + 1)
    return unit.policy.target_nresults


@BOUNDED
@given(situations())
@example(
    (
        UnitView(1, Policy(2, 2, 3, 6, 3600)),
        [
            ReplicaView(1, ReplicaState.OVER, Outcome.SUCCESS, ValidateState.INCONCLUSIVE),
            ReplicaView(2, ReplicaState.OVER, Outcome.SUCCESS, ValidateState.INCONCLUSIVE),
            ReplicaView(3, ReplicaState.OVER, Outcome.SUCCESS, ValidateState.INIT),
        ],
    )
)
def test_replicas_are_created_only_for_what_the_validator_has_judged(
    situation: tuple[UnitView, list[ReplicaView]],
):
    unit, replicas = situation
    result = transition(unit, replicas, T0)
    if result.create_replicas:
        pending = sum(r.state is not ReplicaState.OVER for r in replicas) - len(result.timed_out)
        alive = sum(is_alive_success(r) for r in replicas)
        assert pending + alive + result.create_replicas <= judged_wanted(unit, replicas)


# --- simulated histories --------------------------------------------------------------------


@dataclass
class Sim:
    """One unit in a pretend coordinator: hosts, a clock, a validator and the transitioner.

    Each step changes only facts, as the real services do; ``transition`` is the only step that
    runs the lifecycle, and it checks every invariant before and after applying the answer.
    """

    unit: UnitView
    now: datetime = T0
    replicas: list[ReplicaView] = field(default_factory=list)
    reason: FailureReason | None = None
    ended_as: UnitState | None = None

    def _set(self, rid: int, **fields: object) -> None:
        self.replicas = [replace(r, **fields) if r.id == rid else r for r in self.replicas]

    def _pick(self, state: ReplicaState, param: int) -> ReplicaView | None:
        candidates = [r for r in self.replicas if r.state is state]
        return candidates[param % len(candidates)] if candidates else None

    def claim(self, param: int) -> None:
        """A host takes an unsent replica (even one a transition is about to cancel: a race)."""
        if replica := self._pick(ReplicaState.UNSENT, param):
            deadline = self.now + timedelta(seconds=self.unit.policy.delay_bound)
            self._set(replica.id, state=ReplicaState.IN_PROGRESS, deadline=deadline)

    def report(self, param: int, outcome: Outcome) -> None:
        """A host reports, possibly after its deadline but before the transitioner noticed."""
        if replica := self._pick(ReplicaState.IN_PROGRESS, param):
            self._set(replica.id, state=ReplicaState.OVER, outcome=outcome)

    def tick(self, param: int) -> None:
        """Time passes by 0, 1/2, 1, 3/2 or 2 delay bounds (so deadlines are hit exactly)."""
        self.now += timedelta(seconds=self.unit.policy.delay_bound * (param % 5) / 2)

    def validate(self, param: int) -> None:
        """The validator, only when asked: canonical with some invalid, no consensus, or an
        unreadable output; after a canonical one, late successes are judged against it."""
        if not self.unit.need_validate:
            return
        fresh = [r for r in self.replicas if is_unchecked_success(r)]
        if self.unit.has_canonical:
            for i, r in enumerate(fresh):
                self._set(
                    r.id, validate_state=ValidateState.INVALID if param >> i & 1 else ValidateState.VALID
                )
        elif param % 3 == 0:
            alive = [r for r in self.replicas if is_alive_success(r)]
            assert len(alive) >= self.unit.policy.min_quorum, "asked to validate without a quorum"
            invalid = {r.id for i, r in enumerate(alive) if param >> (i + 2) & 1}
            if len(alive) - len(invalid) < self.unit.policy.min_quorum:
                invalid = set()
            for r in alive:
                self._set(
                    r.id, validate_state=ValidateState.INVALID if r.id in invalid else ValidateState.VALID
                )
            self.unit = replace(self.unit, has_canonical=True)  # a fact: the state is the lifecycle's
        elif param % 3 == 1:
            for r in fresh:
                self._set(r.id, validate_state=ValidateState.INCONCLUSIVE)
        else:
            self._set(fresh[0].id, outcome=Outcome.VALIDATE_ERROR, validate_state=ValidateState.INVALID)
        self.unit = replace(self.unit, need_validate=False)

    def transition(self) -> Transition:
        """Run the lifecycle, check it, apply it, and check what must always stay true."""
        before = self.unit
        result = transition(self.unit, self.replicas, self.now)
        check_transition(self.unit, self.replicas, self.now, result)
        check_idempotent(self.unit, self.replicas, self.now, result)
        self.unit, self.replicas = apply(self.unit, self.replicas, result)

        if result.failure is not None:
            assert self.reason is None, "a unit fails once"
            self.reason = result.failure
        if is_finished(before):
            ended = UnitState.FAILED if before.state is UnitState.FAILED else UnitState.DONE
            assert self.unit.state is ended, "an ended unit is done or failed, and stays so"
        assert len(self.replicas) <= self.unit.policy.max_total_results
        assert len({r.id for r in self.replicas}) == len(self.replicas)
        assert (self.unit.state is UnitState.FAILED) == (self.reason is not None)
        if is_finished(self.unit):
            assert not any(r.state is ReplicaState.UNSENT for r in self.replicas)
        return result

    def step(self, kind: str, param: int) -> None:
        if kind == "claim":
            self.claim(param)
        elif kind == "success":
            self.report(param, Outcome.SUCCESS)
        elif kind == "error":
            self.report(param, Outcome.CLIENT_ERROR)
        elif kind == "tick":
            self.tick(param)
        elif kind == "validate":
            self.validate(param)
        else:
            self.transition()

    @property
    def ended(self) -> bool:
        return self.unit.state is UnitState.FAILED or (
            self.unit.state is UnitState.DONE and self.unit.has_canonical
        )

    def quiesce(self, verdict: int) -> None:
        """Let every replica still out reach its deadline and the validator judge late ones;
        afterwards the lifecycle must have nothing left to do for this unit, ever."""
        for _ in range(3):
            self.tick(4)
            self.transition()
            self.validate(verdict)
        final = self.transition()
        assert final == Transition(), final
        assert all(r.state is ReplicaState.OVER for r in self.replicas)


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["claim", "success", "error", "tick", "validate", "transition"]), st.integers(0, 255)
    ),
    max_size=40,
)


@BOUNDED
@given(policies(), EVENTS, st.lists(st.integers(0, 255), min_size=1, max_size=8))
def test_random_histories_keep_the_invariants_and_end_once_hosts_behave(
    policy: Policy, events: list[tuple[str, int]], verdicts: list[int]
):
    """Any history, then hosts that take every replica and succeed: the unit must end (canonical,
    or failed with a reason) within a bounded number of rounds, whatever the validator says."""
    sim = Sim(UnitView(1, policy))
    sim.transition()
    for kind, param in events:
        sim.step(kind, param)

    for round_ in range(2 * policy.max_total_results + 4):
        sim.transition()
        if sim.ended and not sim.unit.need_validate:
            break
        sim.validate(verdicts[round_ % len(verdicts)])
        if sim.unit.state is UnitState.ACTIVE and not sim.unit.has_canonical:
            for _ in range(sum(r.state is ReplicaState.UNSENT for r in sim.replicas)):
                sim.claim(0)
        for _ in range(sum(r.state is ReplicaState.IN_PROGRESS for r in sim.replicas)):
            sim.report(0, Outcome.SUCCESS)

    assert sim.ended, (sim.unit, sim.replicas)
    assert (sim.unit.state is UnitState.FAILED) == (sim.reason is not None)
    event(f"ended {sim.unit.state} {sim.reason}")  # --hypothesis-show-statistics: all endings occur
    sim.quiesce(verdicts[0])


@BOUNDED
@given(policies(), EVENTS)
def test_a_unit_whose_hosts_vanish_fails_with_the_right_reason(policy: Policy, events: list[tuple[str, int]]):
    """Hosts that take replicas and never answer: timeouts pile up until the unit gives up, with
    TOO_MANY_ERRORS if the errors passed the limit and TOO_MANY_TOTAL otherwise."""
    sim = Sim(UnitView(1, policy))
    sim.transition()
    for kind, param in events:
        sim.step(kind, param)

    for _ in range(2 * policy.max_total_results + 4):
        if sim.ended:
            break
        for _ in range(sum(r.state is ReplicaState.UNSENT for r in sim.replicas)):
            sim.claim(0)
        sim.tick(2)
        sim.transition()
        if sim.unit.need_validate:
            sim.validate(1)  # no consensus: the vanished hosts never settle it
            sim.transition()

    assert sim.ended
    if sim.unit.state is UnitState.FAILED:
        errors = sum(r.state is ReplicaState.OVER and r.outcome in ERROR_OUTCOMES for r in sim.replicas)
        expected = (
            FailureReason.TOO_MANY_ERRORS
            if errors > policy.max_error_results
            else FailureReason.TOO_MANY_TOTAL
        )
        assert sim.reason is expected
