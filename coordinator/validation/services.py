"""The validator: quorum, canonical replica, credit, reputation, ledger, in one transaction.

Units are claimed with ``SELECT … FOR UPDATE SKIP LOCKED``, so two validators never judge
the same unit, and a replica's validate state changes only while its unit is held. A grant
is a ledger row with a unique replica, so no replica is ever credited twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from coordinator.accounts.selectors import holders
from coordinator.core.bulk import update_rows
from coordinator.standing.reputation import Event
from coordinator.standing.services import Grant, HostEvent, host_is_established, settle
from coordinator.validation import fuel, grants, ledger, pass_reads
from coordinator.validation.compare import (
    CompareMode,
    CompareRule,
    UnreadableOutput,
    parse_output,
    values_agree,
)
from coordinator.validation.judges import Judges
from coordinator.validation.models import LedgerEntry
from coordinator.validation.quorum import Candidate, Verdict, find_quorum, judge_against
from coordinator.validation.reversal import reverse_credit
from coordinator.validation.selectors import units_awaiting_validation
from coordinator.work.lifecycle import (
    UNREADABLE_OUTPUT,
    ValidateState,
    effective_policy,
    settled_state,
)
from coordinator.work.models import App, Batch, BatchState, Replica, WorkUnit
from coordinator.work.selectors import REPLICA_VIEW_FIELDS, replica_view, unit_view
from coordinator.work.services import apply_transitions

# A reopened unit may make this many times its quorum in replicas beyond its own limit.
REOPEN_EXTRA_RESULTS = 2


def read_output(replica: Replica) -> bytes:
    if replica.output_inline is not None:
        return bytes(replica.output_inline)
    with replica.output_file.open("rb") as handle:
        return handle.read()


def compare_rule(app: App) -> CompareRule:
    return CompareRule(CompareMode(app.compare_mode), app.abs_tolerance, app.rel_tolerance)


@dataclass
class _Pass:
    """What one validation pass will write."""

    states: dict[int, ValidateState]
    unreadable: list[Replica]
    grants: list[Grant]
    events: list[HostEvent]
    judges: Judges
    now: datetime
    reversals: list[int] = field(default_factory=list)  # replicas whose credit is taken back
    granted_before: set[int] = field(default_factory=set)  # replicas with a grant in the ledger
    corrected_batches: set[int] = field(default_factory=set)
    unpunished: set[int] = field(default_factory=set)  # invalid on a verdict no one vouched for
    credited_fuel: dict[int, int] = field(default_factory=dict)  # wasm replica -> fuel credited
    bearer_hosts: set[int] = field(default_factory=set)  # stock BOINC clients' hosts (set when made)


def _host_id(replica: Replica) -> int:
    assert replica.host_id is not None  # a replica being judged was sent to a host
    return replica.host_id


def _candidate(replica: Replica, rule: CompareRule) -> Candidate:
    if rule.mode is CompareMode.BITWISE:
        return Candidate(replica.pk, replica.output_sha256)
    return Candidate(replica.pk, parse_output(read_output(replica)))


def _agreement(rule: CompareRule) -> Callable[[Any, Any], bool]:
    if rule.mode is CompareMode.BITWISE:
        return lambda a, b: a == b
    return lambda a, b: values_agree(a, b, rule)


def _read_outputs(
    unit: WorkUnit, replicas: list[Replica], rule: CompareRule, work: _Pass
) -> tuple[Candidate | None, list[Candidate], list[Replica]]:
    """The canonical output (if any) and the outputs still to judge, with their replicas; an
    unreadable output is a validate error against its host."""
    canonical: Candidate | None = None
    candidates: list[Candidate] = []
    readable: list[Replica] = []
    for replica in replicas:
        if rule.mode is not CompareMode.BITWISE and not _has_output(replica):
            continue  # cleaned up after an earlier verdict: nothing to compare, no one to blame
        try:
            candidate = _candidate(replica, rule)
        except UnreadableOutput:
            work.unreadable.append(replica)
            work.events.append(HostEvent(_host_id(replica), unit.app_id, replica.app_version_id, Event.ERROR))
            continue
        if replica.pk == unit.canonical_replica_id:
            canonical = candidate
        elif replica.validate_state != ValidateState.VALID:
            candidates.append(candidate)
            readable.append(replica)
    return canonical, candidates, readable


def _judge_unit(unit: WorkUnit, replicas: list[Replica], work: _Pass) -> None:
    rule = compare_rule(unit.app)
    agree = _agreement(rule)
    canonical, candidates, readable = _read_outputs(unit, replicas, rule, work)
    host_of = {r.pk: _host_id(r) for r in replicas}
    if canonical is not None:
        verdict = judge_against(canonical, candidates, agree)
        if verdict.invalid and unit.vouched_by_id is None:
            # A result against a canonical one no established host vouched for: who is wrong
            # is not known, so nobody is marked invalid; the unit is settled again by
            # established hosts (a late report's dissent, or a failed audit).
            _reopen(unit, replicas, work)
            return
    else:
        views = [replica_view({name: getattr(r, name) for name in REPLICA_VIEW_FIELDS}) for r in replicas]
        quorum = effective_policy(unit_view(unit).policy, views).min_quorum
        waited = _waited_for_established_hosts(unit, work.now)
        verdict = find_quorum(
            candidates,
            quorum,
            agree,
            vouched=None if waited else lambda group: work.judges.vouched([host_of[c.id] for c in group]),
        )
        if verdict.canonical is None or verdict.invalid:
            unit.disputed = True
            unit.disputed_at = unit.disputed_at or work.now
        if waited and verdict.invalid and not work.judges.vouched([host_of[i] for i in verdict.valid]):
            work.unpunished.update(verdict.invalid)  # out-voted without an established host
    if grants.is_fuel_metered(unit) and verdict.valid:
        verdict = _judge_fuel(unit, replicas, verdict, work, host_of)
    if verdict.canonical is not None and unit.canonical_replica_id is None:
        verdict = _canonical_with_output(verdict, replicas)
    if verdict.canonical is not None and unit.vouched_by_id is None:
        valid_hosts = [_host_id(r) for r in replicas if r.validate_state == ValidateState.VALID]
        valid_hosts += [host_of[i] for i in verdict.valid]
        unit.vouched_by_id = work.judges.voucher(valid_hosts)
        unit.audit_wanted = unit.audit_wanted and unit.vouched_by_id is None
    _record_verdict(unit, replicas, readable, verdict, work)


def _judge_fuel(
    unit: WorkUnit, replicas: list[Replica], verdict: Verdict, work: _Pass, host_of: dict[int, int]
) -> Verdict:
    """A wasm unit's fuel claims, once outputs agree (``fuel``): an inflated claim makes its
    replica invalid, unless no established host vouched for the fuel it is measured against.
    Only replicas that ran a wasm version are judged; without one, the unit is credited from
    its claims (``grants``), and a unit granted so keeps that grant."""
    claims = {r.pk: r.fuel for r in replicas if r.pk in verdict.valid and grants.measures_fuel(r)}
    if not claims or (unit.granted_credit is not None and unit.fuel is None):
        return verdict
    waited = _waited_for_established_hosts(unit, work.now)
    vouched = lambda ids: work.judges.vouched([host_of[i] for i in ids])  # noqa: E731
    judged = fuel.settle(
        claims,
        deterministic=CompareMode(unit.app.compare_mode) is CompareMode.BITWISE,
        known=unit.fuel,
        bound=unit.fuel_bound,
        vouched=None if waited else vouched,
    )
    if judged.settled is None:
        unit.disputed, unit.disputed_at = True, unit.disputed_at or work.now
        return fuel.apply(verdict, judged, claims)
    at_settled = [i for i, f in judged.credited.items() if f == judged.settled]
    measured_by_vouched = vouched(at_settled) if unit.fuel is None else unit.vouched_by_id is not None
    if not measured_by_vouched:
        work.unpunished.update(judged.inflated)
    if judged.inflated:
        unit.disputed, unit.disputed_at = True, unit.disputed_at or work.now
    if verdict.canonical is not None:
        unit.fuel = judged.settled
    work.credited_fuel.update(judged.credited)
    return fuel.apply(verdict, judged, claims)


def _has_output(replica: Replica) -> bool:
    return replica.output_inline is not None or bool(replica.output_file)


def _canonical_with_output(verdict: Verdict, replicas: list[Replica]) -> Verdict:
    """The canonical replica must still hold its output (the batch's result is made from it):
    another agreeing one that does stands in; if none does, there is no verdict yet."""
    by_id = {r.pk: r for r in replicas}
    assert verdict.canonical is not None  # called only on a verdict with a canonical replica
    if _has_output(by_id[verdict.canonical]):
        return verdict
    kept = [i for i in verdict.valid if _has_output(by_id[i])]
    if kept:
        return Verdict(canonical=kept[0], valid=verdict.valid, invalid=verdict.invalid)
    judged = verdict.valid + verdict.invalid + verdict.inconclusive
    return Verdict(canonical=None, inconclusive=judged)


def _waited_for_established_hosts(unit: WorkUnit, now: datetime) -> bool:
    """A dispute older than DISPUTE_WAIT_SECONDS: no established host came to settle it (a
    young project has none), so any quorum settles it, and an audit checks it later."""
    wait = timedelta(seconds=settings.TESSERA["DISPUTE_WAIT_SECONDS"])
    return unit.disputed_at is not None and now - unit.disputed_at >= wait


def _reopen(unit: WorkUnit, replicas: list[Replica], work: _Pass) -> None:
    """Undo a done unit's verdict: every success is judged again, by a quorum that an
    established host vouches for; grants stand until that verdict says otherwise."""
    unit.reopened_from_id = unit.canonical_replica_id
    unit.canonical_replica_id = None
    unit.disputed, unit.audit_wanted, unit.vouched_by_id = True, False, None
    unit.disputed_at = work.now
    unit.fuel = None  # settled again with the new verdict
    unit.max_total_results += REOPEN_EXTRA_RESULTS * unit.min_quorum
    for replica in replicas:
        work.states[replica.pk] = ValidateState.INCONCLUSIVE


def _record_verdict(
    unit: WorkUnit, replicas: list[Replica], judged: list[Replica], verdict: Verdict, work: _Pass
) -> None:
    by_id = {r.pk: r for r in judged}
    for replica_id in verdict.inconclusive:
        work.states[replica_id] = ValidateState.INCONCLUSIVE
    for replica_id in verdict.invalid:
        replica = by_id[replica_id]
        work.states[replica_id] = ValidateState.INVALID
        if replica_id not in work.unpunished:
            work.events.append(
                HostEvent(_host_id(replica), unit.app_id, replica.app_version_id, Event.INVALID)
            )
        if replica_id in work.granted_before:
            work.reversals.append(replica_id)  # credited on a verdict now overturned
    if verdict.canonical is None:
        return
    newly_valid = [by_id[i] for i in verdict.valid if i in by_id]
    if unit.canonical_replica_id is None:
        if unit.granted_credit is None:
            grants.first_grant(unit, newly_valid)
        unit.canonical_replica_id = verdict.canonical
        if unit.reopened_from_id is not None:
            if unit.reopened_from_id not in verdict.valid:  # the scientist's result changes
                unit.corrected_at = work.now
                if unit.batch_id is not None:
                    work.corrected_batches.add(unit.batch_id)
            unit.reopened_from_id = None
    peers = [
        _host_id(r) for r in replicas if r.validate_state == ValidateState.VALID or r.pk in verdict.valid
    ]
    for replica in newly_valid:
        work.states[replica.pk] = ValidateState.VALID
        if replica.pk in work.granted_before:
            continue  # valid before the unit was reopened: credited and counted then
        amount, fuel_used = grants.replica_grant(unit, replica, work.credited_fuel)
        replica.granted_credit = amount
        event = work.judges.event_for(_host_id(replica), peers)
        work.events.append(HostEvent(_host_id(replica), unit.app_id, replica.app_version_id, event))
        assert replica.volunteer_id is not None  # a reported replica has its volunteer
        work.grants.append(
            Grant(replica.volunteer_id, _host_id(replica), replica.pk, unit.pk, amount, fuel=fuel_used)
        )


def _granted_before(disputed: list[WorkUnit], successes: list[Replica]) -> set[int]:
    """Replicas of disputed (maybe reopened) units that already have a grant in the ledger."""
    ids = {unit.pk for unit in disputed}
    replica_ids = [r.pk for r in successes if r.workunit_id in ids]
    if not replica_ids:
        return set()
    return set(
        LedgerEntry.objects.filter(replica_id__in=replica_ids, kind=LedgerEntry.Kind.GRANT).values_list(
            "replica_id", flat=True
        )
    )


def _judges(replicas: list[Replica], now: datetime) -> Judges:
    hosts = {_host_id(r): r.host for r in replicas}
    return Judges(
        holders=holders(hosts),
        established=frozenset(pk for pk, h in hosts.items() if h is not None and host_is_established(h, now)),
    )


UNIT_FIELDS_JUDGED = [
    "need_validate",
    "transition_time",
    "canonical_replica",
    "state",
    "granted_credit",
    "disputed",
    "disputed_at",
    "vouched_by",
    "audit_wanted",
    "reopened_from",
    "corrected_at",
    "max_total_results",
    "fuel",
    "failure_reason",
]


def _write_pass(
    units: list[WorkUnit], replicas: dict[int, list[Replica]], work: _Pass, now: datetime
) -> None:
    """Everything one pass decided, in a few statements, in the lock order of the ledger."""
    changed = [r for rs in replicas.values() for r in rs if r.pk in work.states]
    for replica in changed:
        replica.validate_state = work.states[replica.pk]
    update_rows(Replica, changed, ["validate_state", "claimed_credit", "granted_credit"])
    for replica in work.unreadable:
        replica.outcome, replica.validate_state = UNREADABLE_OUTPUT
    update_rows(Replica, work.unreadable, ["outcome", "validate_state"])
    # The lifecycle on the verdicts in this pass, written with them: a pass of the transitioner
    # after it would write each unit's row a second time.
    apply_transitions(units, now=now, write_units=False, leave_timeouts=True)
    update_rows(WorkUnit, units, UNIT_FIELDS_JUDGED)
    reverse_credit(replica_ids=work.reversals, now=now)  # its lock order: replicas, head, standing
    ledger.append(work.grants, now=now, bearer_hosts=work.bearer_hosts)
    settle(work.grants, work.events, now=now)
    if work.corrected_batches:
        Batch.objects.filter(pk__in=work.corrected_batches, state=BatchState.DONE).update(reassimilate=True)


def validate_units(*, unit_ids: list[int], now: datetime) -> int:
    """Judge the units marked for validation among ``unit_ids``; returns how many."""
    with transaction.atomic():
        units = pass_reads.MARKED_UNITS.many(unit_ids)
        if not units:
            return 0
        replicas: dict[int, list[Replica]] = defaultdict(list)
        successes = pass_reads.SUCCESSES.many([unit.pk for unit in units])
        for replica in successes:
            replicas[replica.workunit_id].append(replica)

        work = _Pass(
            states={},
            unreadable=[],
            grants=[],
            events=[],
            judges=_judges(successes, now),
            now=now,
            granted_before=_granted_before([u for u in units if u.disputed], successes),
            bearer_hosts={_host_id(r) for r in successes if r.host is not None and r.host.bearer},
        )
        for unit in units:
            _judge_unit(unit, replicas[unit.pk], work)
            unit.state = settled_state(unit_view(unit))  # the lifecycle's word on the verdicts
            unit.need_validate = False
            unit.transition_time = now  # due, unless the lifecycle settles it in this pass

        _write_pass(units, replicas, work, now)
        return len(units)


def validate_units_and_waiting(*, unit_ids: list[int], now: datetime, chunk: int = 200) -> list[int]:
    """Judge ``unit_ids`` and, in the same pass, up to ``chunk`` other units waiting; returns
    the units it asked for (any another pass held among them are left to that pass). Under load many reports
    mark units at once: one pass over all of them pays the pass's fixed cost (the ledger head,
    the bulk writes) once instead of once a report."""
    taken = sorted(set(unit_ids).union(units_awaiting_validation(limit=chunk)))
    validate_units(unit_ids=taken, now=now)
    return taken


def validate_due_units(*, now: datetime, chunk: int = 200, max_chunks: int = 100) -> int:
    """The validator's sweep over every unit marked for validation, a chunk per transaction."""
    judged = 0
    for _ in range(max_chunks):
        ids = units_awaiting_validation(limit=chunk)
        if not ids:
            break
        done = validate_units(unit_ids=ids, now=now)
        judged += done
        if done == 0 or len(ids) < chunk:
            break
    return judged
