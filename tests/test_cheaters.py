"""A batch crunched by honest hosts, random cheaters, colluders and hosts that vanish.

Runs the real scheduler, transitioner and validator services with simulated time. Prints
what got through and how fast cheaters lost trust; asserts that random wrong answers never
become canonical, that every unit ends, and that credit adds up exactly once.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import F, Q
from django.utils import timezone

from coordinator.accounts.models import Host, Volunteer
from coordinator.scheduler.dispatch import WorkRequest
from coordinator.scheduler.reports import ReportIn
from coordinator.scheduler.rpc import scheduler_rpc
from coordinator.testing import make_app, make_host, make_units
from coordinator.validation.correction import correction_sweep
from coordinator.validation.models import LedgerEntry
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Outcome, UnitState
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db
POOL = {"honest": 8, "random": 3, "colluding": 3, "vanishing": 2}
UNITS = 60
STEP = timedelta(minutes=10)


def truth(unit_name: str) -> bytes:
    return hashlib.sha256(unit_name.encode()).hexdigest().encode()


@dataclass
class SimHost:
    kind: str
    host: Host
    rng: random.Random
    held: list[tuple[int, str]] = field(default_factory=list)
    first_invalid_step: int | None = None

    def answer(self, unit_name: str) -> bytes:
        if self.kind == "random":
            return f"noise {self.rng.random()}".encode()
        if self.kind == "colluding":
            return b"agreed lie about " + unit_name.encode()
        return truth(unit_name)


def run_batch(seed: int) -> dict:
    rng = random.Random(seed)
    app = make_app()
    make_units(
        app,
        UNITS,
        min_quorum=2,
        target_nresults=2,
        max_error_results=4,
        max_total_results=8,
        delay_bound=3600,
    )
    # The honest volunteers have been around for weeks (established); the others are new.
    pool = [
        SimHost(
            kind, make_host(daily_quota=10_000, established=kind == "honest")[0], random.Random(rng.random())
        )
        for kind, count in POOL.items()
        for _ in range(count)
    ]
    now = timezone.now()
    steps = 0
    while steps < 200 and (
        WorkUnit.objects.filter(Q(state=UnitState.ACTIVE) | Q(audit_wanted=True)).exists()
        or Host.objects.filter(caught_at__isnull=False).exclude(corrected_at=F("caught_at")).exists()
    ):
        steps += 1
        now += STEP
        rng.shuffle(pool)
        for sim in pool:
            reports = []
            if sim.kind != "vanishing":
                reports = [
                    ReportIn(
                        replica=replica,
                        status=Outcome.SUCCESS,
                        cpu_time=600.0,
                        output_sha256=hashlib.sha256(out).hexdigest(),
                        output_size=len(out),
                        output_inline=out,
                    )
                    for replica, name in sim.held
                    for out in [sim.answer(name)]
                ]
            result = scheduler_rpc(host=sim.host, reports=reports, work_request=WorkRequest(tasks=2), now=now)
            sim.held = [(a.replica_id, a.unit.name) for a in result.assignments]
        transition_due_units(now=now)
        validate_due_units(now=now)
        correction_sweep(now=now)
        transition_due_units(now=now)
        for sim in pool:
            if sim.first_invalid_step is None and Host.objects.get(pk=sim.host.pk).invalid_count:
                sim.first_invalid_step = steps

    kind_of = {sim.host.pk: sim.kind for sim in pool}
    canonical = Replica.objects.filter(pk__in=WorkUnit.objects.values("canonical_replica"))
    accepted_from = Counter(kind_of[r.host_id] for r in canonical)
    wrong = [
        r for r in canonical.select_related("workunit") if bytes(r.output_inline) != truth(r.workunit.name)
    ]
    credit_by_kind = Counter()
    for host_id, total in Host.objects.values_list("pk", "total_credit"):
        credit_by_kind[kind_of[host_id]] += total
    corrected = WorkUnit.objects.filter(corrected_at__isnull=False).count()
    return {
        "steps": steps,
        "units": Counter(WorkUnit.objects.values_list("state", flat=True)),
        "canonical_from": accepted_from,
        "wrong_accepted": Counter(kind_of[r.host_id] for r in wrong),
        "wrong_corrected": corrected,
        "credit_by_kind": credit_by_kind,
        "steps_to_first_invalid": {
            kind: sorted(s.first_invalid_step for s in pool if s.kind == kind and s.first_invalid_step)
            for kind in ("random", "colluding")
        },
    }


def test_cheaters_do_not_get_wrong_answers_accepted_and_credit_adds_up(capsys):
    figures = run_batch(seed=20261125)
    with capsys.disabled():
        print(f"\ncheater scenario ({UNITS} units, hosts {POOL}):")
        for name, value in figures.items():
            print(f"  {name}: {dict(value) if isinstance(value, Counter) else value}")

    assert figures["units"][UnitState.ACTIVE] == 0, "every unit ends"
    assert figures["wrong_accepted"]["random"] == 0, "a random cheater's answer never becomes canonical"
    assert figures["canonical_from"]["random"] == 0
    assert figures["credit_by_kind"]["random"] == Decimal(0)
    assert len(figures["steps_to_first_invalid"]["random"]) == POOL["random"], (
        "every random cheater is caught"
    )
    assert figures["units"][UnitState.DONE] >= UNITS * 0.9
    assert sum(figures["wrong_accepted"].values()) == 0, "the correction sweep overturned every agreed lie"
    assert figures["credit_by_kind"]["colluding"] == Decimal(0), "reversed"
    assert len(figures["steps_to_first_invalid"]["colluding"]) == POOL["colluding"], (
        "every colluder is caught"
    )
    # Credit was granted once per valid replica, taken back once per reversal, and the ledger
    # adds up to the stored totals.
    grants = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GRANT)
    reversals = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSAL)
    replicas = list(grants.values_list("replica_id", flat=True))
    assert len(replicas) == len(set(replicas))
    assert set(reversals.values_list("replica_id", flat=True)) == set(
        grants.exclude(replica__validate_state="valid").values_list("replica_id", flat=True)
    )
    # Summed in Python: SQLite adds decimals as floats.
    ledger_total = sum(grants.values_list("credit", flat=True), Decimal(0)) - sum(
        reversals.values_list("credit", flat=True), Decimal(0)
    )
    assert ledger_total == sum(Volunteer.objects.values_list("total_credit", flat=True), Decimal(0)) > 0
