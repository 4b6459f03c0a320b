"""How much a valid replica is credited: from measured CPU time for Python and native
versions, from the fuel its quorum settled for wasm apps (``fuel``; docs/validation.md).

An app may have wasm and native (or Python) versions live at once (docs/platforms.md), so one
unit's quorum can mix them. Only wasm replicas measure fuel: a unit is credited from fuel when
its wasm replicas settled it, and from its claims under the app's grant cap otherwise; fuel
one wasm replica claimed alone is credited no more than that cap either.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from django.conf import settings

from coordinator.standing import credit
from coordinator.work.models import Replica, WorkUnit

MICRO = Decimal("0.000001")


def is_fuel_metered(unit: WorkUnit) -> bool:
    """A wasm app's unit: it carries a fuel bound, and its wasm replicas' fuel is judged."""
    return unit.fuel_bound is not None


def measures_fuel(replica: Replica) -> bool:
    """A replica that ran a wasm version (the version the scheduler chose, not what the host
    says); one sent before versions were recorded measured fuel if it reported some."""
    version = replica.app_version
    if version is None:
        return replica.fuel is not None
    return version.runtime == "wasm"


def _fuel_credited(unit: WorkUnit) -> bool:
    return unit.fuel_bound is not None and unit.fuel is not None


def claim(unit: WorkUnit, replica: Replica) -> float:
    """A replica's claim from figures bounded by what is plausible: the project's largest
    speed per core, and no more CPU time than it held the task on every core; for a wasm
    replica, its fuel (never past the unit's bound)."""
    if is_fuel_metered(unit) and measures_fuel(replica):
        return float(fuel_credit(unit, replica.fuel or 0))
    host = replica.host
    assert host is not None  # a reported replica was sent to a host
    wall = (
        (replica.received_at - replica.sent_at).total_seconds()
        if replica.received_at and replica.sent_at
        else 0.0
    )
    return credit.claimed_credit(
        fpops_estimate=unit.fpops_estimate,
        host_flops=min(host.flops, settings.TESSERA["MAX_HOST_FLOPS"]),
        cpu_time=credit.plausible_cpu_time(
            cpu_time=replica.cpu_time or 0.0, wall_seconds=wall, n_cpus=host.n_cpus
        ),
    )


def fuel_credit(unit: WorkUnit, fuel: int) -> Decimal:
    """Cobblestones for ``fuel`` units of fuel: each counts as ``FLOPS_PER_FUEL`` operations
    (the project's calibration), and never more than the unit's bound is counted."""
    counted = min(fuel, unit.fuel_bound or 0)
    flops = counted * settings.TESSERA["FLOPS_PER_FUEL"]
    return Decimal(credit.credit_for_flops(flops)).quantize(MICRO, ROUND_DOWN)


def first_grant(unit: WorkUnit, newly_valid: list[Replica]) -> None:
    """The unit's grant, from its first verdict's claims, bounded by the app's grant cap; a
    wasm unit's is the credit of its settled fuel, under that cap too when a single wasm
    replica measured it (a trusted host alone, or the one wasm replica of a mixed quorum)."""
    claims = {r.pk: claim(unit, r) for r in newly_valid}
    for replica in newly_valid:
        replica.claimed_credit = claims[replica.pk]
    cap = credit.grant_cap(fpops_estimate=unit.fpops_estimate, credit_ratio=unit.app.credit_ratio)
    if _fuel_credited(unit):
        grant = fuel_credit(unit, unit.fuel or 0)
        measured = [r for r in newly_valid if measures_fuel(r) and r.fuel == unit.fuel]
        unit.granted_credit = grant if len(measured) >= 2 else min(grant, _micro(cap))
        return
    if len(newly_valid) == 1:  # accepted alone: never more than the app's own estimate
        cap = min(cap, credit.credit_for_flops(unit.fpops_estimate))
    unit.granted_credit = _micro(min(credit.granted_credit(list(claims.values())), cap))


def _micro(amount: float) -> Decimal:
    return Decimal(amount).quantize(MICRO, ROUND_DOWN)


def replica_grant(
    unit: WorkUnit, replica: Replica, credited_fuel: dict[int, int]
) -> tuple[Decimal, int | None]:
    """What one valid replica is granted, and the fuel it is granted for: the unit's grant;
    for wasm, the credit of its own claim when that is below the settled fuel (a native
    replica of a unit credited from fuel is granted for the settled fuel)."""
    assert unit.granted_credit is not None  # the unit's first verdict set it
    if not _fuel_credited(unit):
        return unit.granted_credit, None
    fuel = credited_fuel.get(replica.pk, unit.fuel or 0)
    return min(fuel_credit(unit, fuel), unit.granted_credit), fuel
