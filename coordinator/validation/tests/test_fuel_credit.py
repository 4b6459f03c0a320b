"""Credit from fuel against the database: wasm replicas report fuel over the scheduler RPC,
and the validator settles it with the outputs (docs/validation.md, "Credit from fuel")."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from nacl.signing import SigningKey
from tessera_client.ledger import verify_records
from tessera_client.protocol import Report

from coordinator.core import keys
from coordinator.standing.models import HostAppReputation
from coordinator.testing import SignedHost, make_app, make_host, make_units
from coordinator.validation import ledger
from coordinator.validation.models import LedgerEntry
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import ReplicaState, UnitState, ValidateState
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db
FUEL = 4 * 10**13  # about 92.6 cobblestones at one operation per unit of fuel
BOUND = 10**14


def wasm_unit(**policy: int) -> WorkUnit:
    return make_units(make_app(runtime="wasm"), 1, fuel_bound=BOUND, **policy)[0]


def crunch(host: SignedHost, fuel: int | None, output: bytes = b"the same answer") -> int:
    """The host takes one task and reports ``output`` with a fuel claim."""
    task = host.rpc(tasks=1).json()["tasks"][0]
    assert task["fuel_bound"] == BOUND, "a wasm task tells the client its bound"
    report = Report(replica=task["replica"], status="success", cpu_time=60.0, output=output).to_json()
    if fuel is not None:
        report["fuel"] = fuel
    assert host.rpc(reports=[report]).status_code == 200
    return task["replica"]


def settle() -> None:
    now = timezone.now()
    transition_due_units(now=now)
    validate_due_units(now=now)
    transition_due_units(now=now)


def credit_of(fuel: int) -> Decimal:
    return (Decimal(fuel) / Decimal(1e9 * 86_400) * 200).quantize(Decimal("0.000001"), "ROUND_DOWN")


def test_agreeing_replicas_are_credited_for_their_fuel_and_the_ledger_keeps_it():
    unit = wasm_unit()
    replicas = [crunch(SignedHost(*make_host()), FUEL) for _ in range(2)]

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.fuel == FUEL
    assert unit.granted_credit == credit_of(FUEL)
    entries = LedgerEntry.objects.filter(replica_id__in=replicas)
    assert sorted(entries.values_list("fuel", flat=True)) == [FUEL, FUEL]
    key = SigningKey.generate()
    ledger.seal(key=key, now=timezone.now())
    records = list(ledger.export_records(public_key=keys.public_key_b64(key), now=timezone.now()))
    assert verify_records(records).ok, "a grant's fuel is in the chain and verifies"
    records[1]["fuel"] += 1
    assert not verify_records(records).ok, "changing a grant's fuel breaks its hash"


def test_an_inflated_fuel_claim_gains_nothing_and_costs_reputation():
    unit = wasm_unit(min_quorum=2, target_nresults=3)
    honest = [crunch(SignedHost(*make_host(established=True)), FUEL), crunch(SignedHost(*make_host()), FUEL)]
    boaster_host = SignedHost(*make_host())
    boasted = crunch(boaster_host, 2 * FUEL)

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.fuel == FUEL
    inflated = Replica.objects.get(pk=boasted)
    assert (inflated.validate_state, inflated.granted_credit) == (ValidateState.INVALID, None)
    assert not LedgerEntry.objects.filter(replica_id=boasted).exists()
    assert HostAppReputation.objects.get(host=boaster_host.host).invalid == 1
    assert set(Replica.objects.filter(pk__in=honest).values_list("granted_credit", flat=True)) == {
        credit_of(FUEL)
    }


def test_a_lower_fuel_claim_only_lowers_its_own_credit():
    unit = wasm_unit(min_quorum=2, target_nresults=3)
    honest = [crunch(SignedHost(*make_host(established=True)), FUEL), crunch(SignedHost(*make_host()), FUEL)]
    modest_host = SignedHost(*make_host())
    modest = crunch(modest_host, FUEL // 4)

    settle()

    unit.refresh_from_db()
    assert unit.granted_credit == credit_of(FUEL)
    low = Replica.objects.get(pk=modest)
    assert (low.validate_state, low.granted_credit) == (ValidateState.VALID, credit_of(FUEL // 4))
    assert LedgerEntry.objects.get(replica_id=modest).fuel == FUEL // 4
    assert HostAppReputation.objects.get(host=modest_host.host).invalid == 0
    assert set(Replica.objects.filter(pk__in=honest).values_list("granted_credit", flat=True)) == {
        credit_of(FUEL)
    }


def test_two_replicas_that_disagree_on_fuel_wait_for_an_established_host():
    unit = wasm_unit()
    first = crunch(SignedHost(*make_host()), FUEL)
    second = crunch(SignedHost(*make_host()), 2 * FUEL)

    settle()

    unit.refresh_from_db()
    assert unit.canonical_replica_id is None and unit.disputed
    states = set(Replica.objects.filter(pk__in=[first, second]).values_list("validate_state", flat=True))
    assert states == {ValidateState.INCONCLUSIVE}
    extra = unit.replicas.get(state=ReplicaState.UNSENT)
    assert extra.reserved, "the tie goes to an established host"

    crunch(SignedHost(*make_host(established=True)), FUEL)
    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.fuel == FUEL
    assert Replica.objects.get(pk=second).validate_state == ValidateState.INVALID
    assert Replica.objects.get(pk=first).granted_credit == credit_of(FUEL)


def test_a_python_unit_ignores_a_fuel_claim():
    unit = make_units(make_app(), 1)[0]
    hosts = [SignedHost(*make_host()) for _ in range(2)]
    for host, fuel in zip(hosts, (FUEL, 9 * FUEL), strict=True):
        task = host.rpc(tasks=1).json()["tasks"][0]
        assert task["fuel_bound"] is None
        report = Report(replica=task["replica"], status="success", cpu_time=60.0, output=b"x").to_json()
        assert host.rpc(reports=[{**report, "fuel": fuel}]).status_code == 200

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.fuel is None
    assert set(LedgerEntry.objects.values_list("fuel", flat=True)) == {None}


@pytest.mark.parametrize("fuel", [-1, 2**63, "many", 1.5, True])
def test_a_malformed_fuel_claim_is_refused_and_changes_nothing(fuel):
    wasm_unit()
    host = SignedHost(*make_host())
    task = host.rpc(tasks=1).json()["tasks"][0]
    report = Report(replica=task["replica"], status="success", cpu_time=60.0, output=b"x").to_json()

    response = host.rpc(reports=[{**report, "fuel": fuel}])

    assert response.status_code == 400
    assert "fuel" in response.content.decode()
    assert Replica.objects.get(pk=task["replica"]).state == ReplicaState.IN_PROGRESS
