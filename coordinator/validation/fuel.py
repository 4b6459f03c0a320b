"""Credit from executed work: the fuel wasm replicas report, checked against each other.

Pure, no ORM. A deterministic module uses the same fuel on every host from the same input,
restarts from a checkpoint included (docs/science-apps.md), so once the outputs agree the
unit's fuel is settled like a vote among the agreeing replicas:

- the settled fuel is the value most of them reported, at least two of them (a tie goes to
  the lower value); a quorum of one settles on its own claim; a unit settled before (a late
  replica) keeps its fuel;
- a replica that claimed more than the settled fuel inflated its claim: it is invalid, and
  its host loses reputation as for a wrong output;
- a replica that claimed less is credited for what it claimed: it only lowers its own credit;
- while no value has two reports (two replicas that disagree on fuel), or, when claims
  differ, the most reported value has no established host among its reporters, nothing is
  settled: every replica is inconclusive and the lifecycle asks an established host for
  another.

A module that declares itself non-deterministic (tolerance comparison) cannot be held to
exact fuel: the settled fuel is the lowest claim among the agreeing replicas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.validation.quorum import Verdict


@dataclass(frozen=True)
class FuelVerdict:
    settled: int | None  # the unit's fuel; None while replicas disagree on it
    inflated: tuple[int, ...] = ()  # replicas that claimed more than the settled fuel
    credited: dict[int, int] = field(default_factory=dict)  # replica -> fuel it is credited for


Vouched = Callable[[list[int]], bool]


def _settled(claims: dict[int, int], deterministic: bool, vouched: Vouched | None) -> int | None:
    if not claims:
        return None
    values = set(claims.values())
    if not deterministic or len(values) == 1:
        return min(values)
    counts = Counter(claims.values())
    most = max(counts.values())
    if most < 2:
        return None
    value = min(v for v, count in counts.items() if count == most)
    # As for outputs (quorum.find_quorum): when claims differ, only a group an established,
    # unrelated host belongs to may settle them, so colluders cannot out-vote an honest host.
    if vouched is not None and not vouched([rid for rid, fuel in claims.items() if fuel == value]):
        return None
    return value


def settle(
    claims: dict[int, int | None],
    *,
    deterministic: bool,
    known: int | None = None,
    bound: int | None = None,
    vouched: Vouched | None = None,
) -> FuelVerdict:
    """Judge the fuel claims of replicas whose outputs agree. A missing claim counts as 0; a
    claim over the unit's bound (the module would have been stopped) is inflated."""
    over = {rid for rid, fuel in claims.items() if bound is not None and fuel is not None and fuel > bound}
    plausible = {rid: fuel or 0 for rid, fuel in claims.items() if rid not in over}
    settled = known if known is not None else _settled(plausible, deterministic, vouched)
    if settled is None:
        return FuelVerdict(settled=None, inflated=tuple(sorted(over)))
    # A non-deterministic module's claims vary honestly: above the settled fuel is no lie.
    inflated = over | {rid for rid, fuel in plausible.items() if deterministic and fuel > settled}
    credited = {rid: min(fuel, settled) for rid, fuel in plausible.items() if rid not in inflated}
    return FuelVerdict(settled=settled, inflated=tuple(sorted(inflated)), credited=credited)


def apply(verdict: Verdict, fuel: FuelVerdict, claims: dict[int, int | None]) -> Verdict:
    """The output verdict amended by the fuel verdict: inflated replicas become invalid; the
    canonical replica is one whose claim is the settled fuel; unsettled fuel leaves every
    judged replica inconclusive."""
    if fuel.settled is None:
        judged = tuple(i for i in verdict.valid if i not in fuel.inflated)
        return Verdict(
            canonical=None,
            invalid=verdict.invalid + fuel.inflated,
            inconclusive=verdict.inconclusive + judged,
        )
    valid = tuple(i for i in verdict.valid if i not in fuel.inflated)
    canonical = verdict.canonical
    if canonical is not None and canonical in fuel.inflated:
        exact = [i for i in valid if (claims.get(i) or 0) == fuel.settled]
        canonical = next(iter(exact or valid), None)
    return Verdict(
        canonical=canonical,
        valid=valid,
        invalid=verdict.invalid + fuel.inflated,
        inconclusive=verdict.inconclusive,
    )
