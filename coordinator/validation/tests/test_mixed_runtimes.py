"""Credit when one unit's replicas ran different versions of an app (docs/validation.md,
"Credit from fuel"): only wasm replicas measure fuel; a unit none of them settled is credited
from its claims under the app's grant cap, and a single wasm claim no higher than that cap."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tessera_client.protocol import Report

from coordinator.standing import credit
from coordinator.testing import CODE_SIGNING_KEY, SignedHost, make_app, make_host, make_units
from coordinator.validation.models import LedgerEntry
from coordinator.validation.tests.test_fuel_credit import BOUND, FUEL, credit_of, settle
from coordinator.work.lifecycle import UnitState, ValidateState
from coordinator.work.models import App, Replica, WorkUnit
from coordinator.work.services import register_app_version

pytestmark = pytest.mark.django_db
X86 = "x86_64-pc-linux-gnu"
ESTIMATE = 2 * 10**13  # the app's estimate: half the work the fuel says (a cap of 46.3)


def mixed_app() -> App:
    """A wasm app with a native version for x86-64 Linux too."""
    app = make_app(runtime="wasm")
    register_app_version(
        app=app, version=1, bundle=b"native", signing_key=CODE_SIGNING_KEY, platform=X86, runtime="native"
    )
    return app


def unit_of(app: App, **policy: int) -> WorkUnit:
    return make_units(app, 1, fuel_bound=BOUND, fpops_estimate=ESTIMATE, **policy)[0]


def runs(runtime: str, **fields) -> SignedHost:
    """A host that can run only ``runtime``: the scheduler sends it that version."""
    return SignedHost(*make_host(platforms=[X86], platform=X86, runtimes=[runtime], flops=1e9, **fields))


def crunch(host: SignedHost, fuel: int | None, runtime: str) -> int:
    task = host.rpc(tasks=1).json()["tasks"][0]
    assert task["app_version"]["runtime"] == runtime
    report = Report(replica=task["replica"], status="success", cpu_time=60.0, output=b"same").to_json()
    if fuel is not None:
        report["fuel"] = fuel
    assert host.rpc(reports=[report]).status_code == 200
    return task["replica"]


def cap(unit: WorkUnit) -> Decimal:
    amount = credit.grant_cap(fpops_estimate=unit.fpops_estimate, credit_ratio=unit.app.credit_ratio)
    return Decimal(amount).quantize(Decimal("0.000001"), "ROUND_DOWN")


def test_native_replicas_alone_are_credited_from_their_claims_under_the_cap_and_their_fuel_is_ignored():
    unit = unit_of(mixed_app())
    replicas = [crunch(runs("native"), 10 * FUEL, "native") for _ in range(2)]

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.fuel is None, "no wasm replica measured fuel"
    assert Decimal(0) < unit.granted_credit <= cap(unit) < credit_of(10 * FUEL)
    claims = Replica.objects.filter(pk__in=replicas).values_list("claimed_credit", flat=True)
    assert unit.granted_credit == Decimal(min(claims)).quantize(Decimal("0.000001"), "ROUND_DOWN")
    assert set(LedgerEntry.objects.filter(replica_id__in=replicas).values_list("fuel", flat=True)) == {None}


def test_one_wasm_claim_in_a_mixed_quorum_earns_no_more_than_the_cap():
    unit = unit_of(mixed_app())
    wasm = crunch(runs("wasm"), FUEL, "wasm")
    native = crunch(runs("native"), None, "native")

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.fuel == FUEL
    assert unit.granted_credit == cap(unit) < credit_of(FUEL)
    granted = dict(Replica.objects.filter(pk__in=[wasm, native]).values_list("id", "granted_credit"))
    assert granted == {wasm: cap(unit), native: cap(unit)}


def test_two_wasm_replicas_settle_the_fuel_and_a_native_one_is_granted_the_same():
    unit = unit_of(mixed_app(), min_quorum=3, target_nresults=3)
    measured = [crunch(runs("wasm", established=True), FUEL, "wasm"), crunch(runs("wasm"), FUEL, "wasm")]
    native = crunch(runs("native"), 9 * FUEL, "native")  # a native host's fuel claim is no measure

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.fuel == FUEL
    assert unit.granted_credit == credit_of(FUEL)
    states = dict(Replica.objects.filter(pk__in=[*measured, native]).values_list("id", "validate_state"))
    assert set(states.values()) == {ValidateState.VALID}
    assert Replica.objects.get(pk=native).granted_credit == credit_of(FUEL)
