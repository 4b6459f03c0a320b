"""The validator: quorum, canonical replica, credit, reputation, ledger, in one transaction.

Units are claimed with ``SELECT … FOR UPDATE SKIP LOCKED``, so two validators never judge
the same unit, and a replica's validate state changes only while its unit is held. A grant
is a ledger row with a unique replica, so no replica is ever credited twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from django.db import transaction

from coordinator.core.bulk import update_rows
from coordinator.validation import credit, ledger
from coordinator.validation.compare import (
    CompareMode,
    CompareRule,
    UnreadableOutput,
    parse_output,
    values_agree,
)
from coordinator.validation.quorum import Candidate, Verdict, find_quorum, judge_against
from coordinator.validation.reputation import Event
from coordinator.validation.standing import add_credit, record_events
from coordinator.work.lifecycle import Outcome, UnitState, ValidateState, effective_policy
from coordinator.work.models import App, Replica, WorkUnit
from coordinator.work.services import REPLICA_VIEW_FIELDS, replica_view, unit_view

MICRO = Decimal("0.000001")


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
    grants: list[ledger.Grant]
    events: list[tuple[int, int, Event]]


def _candidate(replica: Replica, rule: CompareRule) -> Candidate:
    if rule.mode is CompareMode.BITWISE:
        return Candidate(replica.pk, replica.output_sha256)
    return Candidate(replica.pk, parse_output(read_output(replica)))


def _claims(unit: WorkUnit, replicas: list[Replica]) -> dict[int, float]:
    return {
        r.pk: credit.claimed_credit(
            fpops_estimate=unit.fpops_estimate, host_flops=r.host.flops, cpu_time=r.cpu_time or 0.0
        )
        for r in replicas
    }


def _judge_unit(unit: WorkUnit, replicas: list[Replica], work: _Pass) -> None:
    rule = compare_rule(unit.app)
    agree = (
        (lambda a, b: a == b) if rule.mode is CompareMode.BITWISE else (lambda a, b: values_agree(a, b, rule))
    )
    candidates: list[Candidate] = []
    readable: list[Replica] = []
    canonical: Candidate | None = None
    for replica in replicas:
        try:
            candidate = _candidate(replica, rule)
        except UnreadableOutput:
            work.unreadable.append(replica)
            work.events.append((replica.host_id, unit.app_id, Event.ERROR))
            continue
        if replica.pk == unit.canonical_replica_id:
            canonical = candidate
        elif replica.validate_state != ValidateState.VALID:
            candidates.append(candidate)
            readable.append(replica)

    if canonical is not None:
        verdict = judge_against(canonical, candidates, agree)
    else:
        views = [replica_view({name: getattr(r, name) for name in REPLICA_VIEW_FIELDS}) for r in replicas]
        quorum = effective_policy(unit_view(unit).policy, views).min_quorum
        verdict = find_quorum(candidates, quorum, agree)
    _record_verdict(unit, readable, verdict, work)


def _record_verdict(unit: WorkUnit, replicas: list[Replica], verdict: Verdict, work: _Pass) -> None:
    by_id = {r.pk: r for r in replicas}
    for replica_id in verdict.inconclusive:
        work.states[replica_id] = ValidateState.INCONCLUSIVE
    for replica_id in verdict.invalid:
        work.states[replica_id] = ValidateState.INVALID
        work.events.append((by_id[replica_id].host_id, unit.app_id, Event.INVALID))
    if verdict.canonical is None:
        return
    newly_valid = [by_id[i] for i in verdict.valid]
    if unit.canonical_replica_id is None:
        claims = _claims(unit, newly_valid)
        unit.granted_credit = Decimal(credit.granted_credit(list(claims.values()))).quantize(
            MICRO, ROUND_DOWN
        )
        unit.canonical_replica_id = verdict.canonical
        unit.state = UnitState.DONE
        for replica in newly_valid:
            replica.claimed_credit = claims[replica.pk]
    for replica in newly_valid:
        work.states[replica.pk] = ValidateState.VALID
        replica.granted_credit = unit.granted_credit
        work.events.append((replica.host_id, unit.app_id, Event.VALID))
        work.grants.append(
            ledger.Grant(replica.volunteer_id, replica.host_id, replica.pk, unit.pk, unit.granted_credit)
        )


def validate_units(*, unit_ids: list[int], now: datetime) -> int:
    """Judge the units marked for validation among ``unit_ids``; returns how many."""
    with transaction.atomic():
        units = list(
            WorkUnit.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=unit_ids, need_validate=True)
            .select_related("app")
            .order_by("id")
        )
        if not units:
            return 0
        replicas: dict[int, list[Replica]] = defaultdict(list)
        successes = (
            Replica.objects.filter(workunit__in=units, outcome=Outcome.SUCCESS)
            .exclude(validate_state=ValidateState.INVALID)
            .select_related("host")
            .order_by("received_at", "id")
        )
        for replica in successes:
            replicas[replica.workunit_id].append(replica)

        work = _Pass(states={}, unreadable=[], grants=[], events=[])
        for unit in units:
            _judge_unit(unit, replicas[unit.pk], work)
            unit.need_validate = False
            unit.transition_time = now  # the transitioner cancels leftovers or asks for more

        changed = [r for rs in replicas.values() for r in rs if r.pk in work.states]
        for replica in changed:
            replica.validate_state = work.states[replica.pk]
        update_rows(Replica, changed, ["validate_state", "claimed_credit", "granted_credit"])
        for replica in work.unreadable:
            replica.outcome, replica.validate_state = Outcome.VALIDATE_ERROR, ValidateState.INVALID
        update_rows(Replica, work.unreadable, ["outcome", "validate_state"])
        update_rows(
            WorkUnit,
            units,
            ["need_validate", "transition_time", "canonical_replica", "state", "granted_credit"],
        )
        ledger.append(work.grants, now=now)
        add_credit(work.grants, now=now)
        record_events(work.events)
        return len(units)


def units_awaiting_validation(*, limit: int) -> list[int]:
    return list(
        WorkUnit.objects.filter(need_validate=True).order_by("id").values_list("id", flat=True)[:limit]
    )


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
