"""``bench.scenario``'s hosts in the simulator, to calibrate it against the real stack
(``python -m bench.simulate --population scenario``; docs/benchmarks.md).

The same kinds in the same shares (``bench.sim_hosts``): one core each, always on, a task of
``--task-seconds``; slow hosts ``--slow-factor`` times slower; vanishing hosts gone within
the scenario's vanishing time of the start, with what they hold; random cheaters and
colluders as in the simulator. Replaying and crashing hosts crunch like honest ones: the
coordinator refuses their replays, and a crash costs them a restart, not a result. Like the
scenario, its correct hosts are established and its newcomers cannot become so in a run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bench.sim_engine import Host

FLOPS = 1e9
# What bench.scenario measured on the real stack (default run: 2,000 units, 100 hosts, every
# fault), commit 1307498, 2026-12-06; the calibration test holds the simulator to it.
REAL_STACK = {"makespan_ratio": 2.23, "wrong_accepted_before_correction": 0, "replicas_sent": 3803}
MAKESPAN_TOLERANCE = 0.25  # in makespan ratio: about what two real runs differ by (2.06-2.73)
WRONG_TOLERANCE = 3  # units: the real runs saw 0 to 7 (docs/benchmarks.md)
ALWAYS_ON = math.inf
DEFAULT_MIX = "slow=0.10,vanishing=0.30,random=0.10,colluding=0.05,replaying=0.05,crashing=0.05"
KINDS = ("slow", "vanishing", "random", "colluding", "replaying", "crashing")
AS_SIMULATED = {"random": "random", "colluding": "colluding"}  # the others return right answers


class AlwaysOn:
    """The scenario's hosts never switch off (``sim_population.Availability``'s interface)."""

    def first_state(self) -> tuple[bool, float]:
        return True, ALWAYS_ON

    def next_interval(self, on: bool) -> float:
        return ALWAYS_ON


@dataclass(frozen=True)
class Fleet:
    hosts: list[Host]
    availability: list[AlwaysOn]
    leaves_at: list[float]
    capacity: float  # operations per second of the hosts that return right answers and stay
    error_rates: list[float]
    wrong_rates: list[float]


def parse_mix(text: str) -> dict[str, float]:
    """``kind=share,…`` of ``KINDS`` (honest hosts are the rest), as ``bench.scenario`` reads it."""
    mix: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        kind, _, share = part.partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown host kind {kind!r} (kinds: {', '.join(KINDS)})")
        mix[kind] = float(share)
    if any(not 0 <= share <= 1 for share in mix.values()) or sum(mix.values()) > 1:
        raise ValueError("each share is between 0 and 1, and they add up to 1 at most")
    return mix


def kinds(count: int, mix: dict[str, float], seed: int) -> list[str]:
    """Each kind's share of ``count`` hosts, rounded down, honest the rest, in a seeded order."""
    dealt = [kind for kind, share in mix.items() for _ in range(int(count * share))]
    dealt += ["honest"] * (count - len(dealt))
    random.Random(seed).shuffle(dealt)
    return dealt


def fleet(*, count: int, mix: dict[str, float], seed: int, slow_factor: float, vanish_within: float) -> Fleet:
    rng = random.Random(f"{seed}:scenario")
    hosts, leaves_at, errors, wrongs = [], [], [], []
    capacity = 0.0
    for index, kind in enumerate(kinds(count, mix, seed)):
        flops = FLOPS / slow_factor if kind == "slow" else FLOPS
        simulated = AS_SIMULATED.get(kind, "honest")
        correct = simulated == "honest"
        hosts.append(
            Host(
                index=index,
                kind=simulated,
                flops=flops,
                cores=1,
                benchmark=flops,
                established_from=-30 * 86400.0 if correct else 0.0,
                independent_valid=100 if correct else 0,
                quota=2000 if correct else 10,
            )
        )
        leaves_at.append(rng.uniform(0, vanish_within) if kind == "vanishing" else math.inf)
        errors.append(0.0)
        wrongs.append(0.0 if correct else 1.0)
        if correct and kind != "vanishing":
            capacity += flops
    return Fleet(hosts, [AlwaysOn() for _ in hosts], leaves_at, capacity, errors, wrongs)
