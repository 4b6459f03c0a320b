"""A project of volunteer hosts in virtual time, run by the coordinator's own policy code.

``python -m bench.simulate`` (``--hosts``, ``--units``, ``--seed``, ``--mix``, ``--help``)
simulates hosts drawn from published models of volunteer hosts (``bench.sim_population``,
docs/simulator-hosts.md): on and off by their availability, of their speed and cores,
honest, erring, random cheaters and colluders, some leaving for good. Scientists submit
batches over time. The lifecycle, quorum, credit, reputation, adaptive replication, quotas,
tail acceleration and fair share are the coordinator's modules, called as dispatch, the
transitioner and the validator call them (``bench.sim_engine``); time, the network and the
database's mechanics are modelled. A host starts its waiting tasks in the order the client's
own ``scheduling.run_order`` gives (earliest deadline first). Same seed, same figures.

It ends with one line of JSON: ``hosts``, ``units``, ``makespan_ratio`` (the whole workload's
makespan against the ideal: the work the quorums need over the capacity of the hosts that
return right answers, at their on fraction), ``tail_ratio`` (the largest batch's last 1%
against its median unit), ``wrong_accepted``, ``credit_spread``, ``share_error``, ``wasted``
and ``wall_seconds``, with the batches' own figures, ``busy_share`` (hours, share of the hosts'
cores crunching, every half hour) and ``drain_hours`` (from when that share last fell below
0.9 to the end).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import django

RPC_DELAY_NO_WORK = 5.0  # bench.scenario's setting: a host that got nothing asks again after this
# Seconds the real stack adds to each of bench.scenario's tasks on this kind of machine (its
# hosts' RPCs, uploads and the coordinator sharing two cores): fitted so the simulator's
# makespan ratio matches bench.scenario's (docs/benchmarks.md, "Calibration").
TASK_OVERHEAD = 1.2
SAMPLE = 90  # this module's own event: the share of the hosts' cores busy, every SAMPLE_EVERY
SAMPLE_EVERY = 1800.0


def knobs_from_settings():
    from django.conf import settings

    from bench.sim_engine import Knobs
    from coordinator.scheduler.acceleration import Rules
    from coordinator.scheduler.dispatch_sql import DEADLINE_SHARE
    from coordinator.standing.reputation import Establishment
    from coordinator.work.services import RETRY_PRIORITY

    tessera = settings.TESSERA
    return Knobs(
        rules=Rules.of(tessera),
        establishment=Establishment(tessera["ESTABLISHED_AGE_SECONDS"], tessera["ESTABLISHED_MIN_VALID"]),
        retry_priority=RETRY_PRIORITY,
        tail_fraction=tessera["TAIL_FRACTION"],
        final_fraction=tessera["TAIL_FINAL_FRACTION"],
        window=tessera["FAIR_SHARE_WINDOW_SECONDS"],
        dispute_wait=tessera["DISPUTE_WAIT_SECONDS"],
        deadline_share=DEADLINE_SHARE,
        quota_cap=tessera["DEFAULT_DAILY_QUOTA"],
        block_units=tessera["DISPATCH_BLOCK_UNITS"],
        buffer_seconds=tessera["WORK_BUFFER_SECONDS"],
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--mix", default="erring=0.05,random=0.02,colluding=0.02", help="shares of faulty kinds"
    )
    parser.add_argument("--leaving", type=float, default=0.02, help="share of hosts that leave for good")
    parser.add_argument("--task-hours", type=float, default=1.0, help="a unit's length on the median core")
    parser.add_argument("--delay-days", type=float, default=3.0, help="the batches' delay bound")
    parser.add_argument(
        "--scientists", type=int, default=2, help="equal shares; the first submits the big batch"
    )
    parser.add_argument(
        "--small-batches",
        type=int,
        default=10,
        help="the other scientists' batches, submitted while the first runs",
    )
    parser.add_argument(
        "--small-share", type=float, default=0.05, help="each of those batches' share of the units"
    )
    parser.add_argument("--quorum", type=int, default=2)
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="veterans start with up to this many valid results in a row (trusted: adaptive replication)",
    )
    parser.add_argument(
        "--population",
        choices=["volunteers", "scenario"],
        default="volunteers",
        help="hosts from published models, or bench.scenario's (to calibrate against the real stack)",
    )
    parser.add_argument(
        "--scenario-mix", default=None, help="with --population scenario: bench.scenario's --mix"
    )
    parser.add_argument("--task-seconds", type=float, default=1.0, help="with --population scenario")
    parser.add_argument("--slow-factor", type=float, default=4.0, help="with --population scenario")
    parser.add_argument("--delay-bound", type=int, default=60, help="with --population scenario: seconds")
    parser.add_argument(
        "--task-overhead",
        type=float,
        default=TASK_OVERHEAD,
        help="with --population scenario: seconds the real stack adds per task (docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    if args.scenario_mix is None:
        from bench.sim_scenario import DEFAULT_MIX

        args.scenario_mix = DEFAULT_MIX
    if args.hosts < 1 or args.units < 1 or args.scientists < 1 or not 0 <= args.leaving < 1:
        parser.error("--hosts, --units and --scientists must be positive, --leaving in [0, 1)")
    return args


@dataclass(frozen=True)
class Population:
    hosts: list
    availability: list
    leaves_at: list[float]
    capacity: float  # operations per second of the hosts that return right answers and stay
    error_rates: list[float]
    wrong_rates: list[float]
    fpops: float  # a unit's operations
    delay_bound: int
    backoff: tuple[float, float] = (60.0, 3600.0)  # a client's wait after no work, doubling to the most
    overhead: float = 0.0  # seconds per task beyond crunching (the network is otherwise instant)


def volunteers(args: argparse.Namespace, quota_cap: int) -> Population:
    """Hosts drawn from published models of volunteer hosts (docs/simulator-hosts.md)."""
    from bench.sim_engine import Host
    from bench.sim_population import Availability, Mix, mean_on_fraction, population
    from coordinator.standing.reputation import Reputation

    specs = population(args.hosts, seed=args.seed, mix=Mix.parse(args.mix))
    rng = random.Random(f"{args.seed}:run")
    hosts, availability, leaves_at = [], [], []
    for spec in specs:
        old = spec.kind in ("honest", "erring")  # volunteered long before; cheaters are new
        hosts.append(
            Host(
                index=spec.index,
                kind=spec.kind,
                flops=spec.flops,
                cores=spec.cores,
                benchmark=spec.flops * rng.lognormvariate(0.0, 0.1),
                established_from=-30 * 86400.0 if old else 0.0,
                independent_valid=100 if old else 0,
                quota=quota_cap if old else 10,
                on_fraction=mean_on_fraction(spec),
                reputation=history(spec, rng, args.history) if old and args.history else Reputation(),
            )
        )
        availability.append(Availability(spec, random.Random(f"{args.seed}:on:{spec.index}")))
        leaves_at.append(rng.expovariate(1 / 86400.0) if rng.random() < args.leaving else math.inf)
    capacity = sum(
        s.flops * s.cores * mean_on_fraction(s)
        for s in specs
        if s.kind in ("honest", "erring") and leaves_at[s.index] == math.inf
    )
    fpops = statistics.median(spec.flops for spec in specs) * args.task_hours * 3600
    errors, wrongs = [s.error_rate for s in specs], [s.wrong_rate for s in specs]
    return Population(
        hosts, availability, leaves_at, capacity, errors, wrongs, fpops, int(args.delay_days * 86400)
    )


def history(spec, rng: random.Random, most: int):
    """A veteran's standing when the run starts: valid results in a row since its last error or
    wrong one, as a project that has run for a while would know it (at most ``most``)."""
    from coordinator.standing.reputation import Reputation

    broken = min(0.99, spec.error_rate + spec.wrong_rate)
    streak = most if broken <= 0 else min(most, int(math.log(1 - rng.random()) / math.log(1 - broken)))
    return Reputation(consecutive_valid=streak, valid=most, error_rate=spec.error_rate)


def scenario_hosts(args: argparse.Namespace) -> Population:
    """``bench.scenario``'s hosts, for calibration (``bench.sim_scenario``)."""
    from bench import sim_scenario

    vanish_within = max(
        10.0, args.units * args.quorum * args.task_seconds / args.hosts / 2
    )  # as the scenario
    made = sim_scenario.fleet(
        count=args.hosts,
        mix=sim_scenario.parse_mix(args.scenario_mix),
        seed=args.seed,
        slow_factor=args.slow_factor,
        vanish_within=vanish_within,
    )
    fpops = sim_scenario.FLOPS * args.task_seconds
    return Population(
        made.hosts, made.availability, made.leaves_at, made.capacity, made.error_rates, made.wrong_rates,
        fpops, args.delay_bound, (RPC_DELAY_NO_WORK, RPC_DELAY_NO_WORK), args.task_overhead,
    )  # fmt: skip


def build(args: argparse.Namespace):
    from django.conf import settings

    from bench.sim_crunch import SUBMIT, Crunching
    from bench.sim_engine import Batch
    from bench.sim_world import World
    from coordinator.work.lifecycle import Policy

    knobs = knobs_from_settings()
    if args.population == "scenario":  # as bench.scenario sets it: no newcomer gets established
        knobs = replace(knobs, establishment=replace(knobs.establishment, min_age_seconds=7 * 86400))
        people = scenario_hosts(args)
    else:
        people = volunteers(args, knobs.quota_cap)
    ideal = args.units * args.quorum * people.fpops / people.capacity
    weights = {share: 100.0 for share in range(1, args.scientists + 1)}
    world = World(knobs=knobs, hosts=people.hosts, weights=weights, seed=args.seed)
    world.specs_error, world.specs_wrong = people.error_rates, people.wrong_rates
    crunching = Crunching(
        world,
        people.availability,
        people.leaves_at,
        backoff=people.backoff,
        overhead=people.overhead,
        prompt=settings.TESSERA["RPC_DELAY_WITH_WORK"],
    )
    policy = Policy(args.quorum, args.quorum, 3, 2 * args.quorum + 4, people.delay_bound)
    small = max(1, int(args.units * args.small_share)) if args.scientists > 1 else 0
    smalls = min(args.small_batches, args.units // max(1, small) - 1) if small else 0
    plan = [(0.0, 1, args.units - small * smalls)]
    for i in range(smalls):  # the other scientists' batches arrive while the big one runs
        plan.append((ideal * (0.05 + 0.5 * i / max(1, smalls)), 2 + i % (args.scientists - 1), small))
    for when, share, units in plan:
        batch = Batch(len(crunching.pending_batches), share, policy, 0, people.fpops, 0, units, when)
        world.at_time(when, SUBMIT, len(crunching.pending_batches))
        crunching.pending_batches.append(batch)
    return world, crunching, ideal, people.capacity


def marks(world) -> dict[str, float]:
    """When 50%, 90%, 99% and all of the units were finished, in virtual seconds."""
    ends = sorted(u.done_at for u in world.units if u.done_at is not None)
    if not ends:
        return {}
    return {
        f"{p}%": round(ends[min(len(ends) - 1, math.ceil(len(ends) * p / 100) - 1)], 1)
        for p in (50, 90, 99, 100)
    }


def report(world, ideal: float, args: argparse.Namespace, wall: float) -> dict:
    from bench.sim_engine import CORRECT
    from coordinator.shares.policy import share_error
    from coordinator.work.lifecycle import UnitState

    batches = world.batches
    end = max((b.done_at or world.now) for b in batches)
    big = max(batches, key=lambda b: b.units)
    latencies = sorted(
        u.done_at - u.batch.submitted
        for u in world.units[big.first_unit : big.first_unit + big.units]
        if u.done_at is not None
    )
    median_unit = latencies[len(latencies) // 2] if latencies else 0.0
    done = [u for u in world.units if u.state is UnitState.DONE]
    wrong = sum(1 for u in done if world.reps[u.canonical].value != CORRECT)
    honest = [h.credit / h.honest_fpops for h in world.hosts if h.kind == "honest" and h.honest_fpops > 0]
    contended = {k: v for k, v in world.figures.contended.items() if k > 0}
    figures = world.figures
    return {
        "hosts": len(world.hosts),
        "units": len(world.units),
        "replicas": len(world.reps),
        "replicas_sent": sum(1 for rep in world.reps if rep.host >= 0),
        "finished_at_seconds": marks(world),
        "seed": args.seed,
        "makespan_seconds": round(end, 1),
        "ideal_seconds": round(ideal, 1),
        "makespan_ratio": round(end / ideal, 3),
        "tail_ratio": round(((big.done_at or end) - (big.percent99_at or end)) / median_unit, 3)
        if median_unit
        else None,
        "wrong_accepted": wrong,
        "failed": sum(1 for u in world.units if u.state is UnitState.FAILED),
        "unfinished": sum(1 for u in world.units if u.state is UnitState.ACTIVE),
        "credit_spread": round(statistics.pstdev(honest) / statistics.mean(honest), 4)
        if len(honest) > 1
        else None,
        "share_error": round(share_error(contended, world.weights), 4) if len(contended) > 1 else None,
        "shares_contended": {
            str(k): round(v / sum(contended.values()), 4) for k, v in sorted(contended.items())
        },
        "wasted": round(1 - figures.useful / figures.computed, 4) if figures.computed else None,
        "abandoned": round(figures.abandoned / figures.computed, 4) if figures.computed else None,
        "batches": [
            {
                "id": b.id,
                "share": b.share,
                "units": b.units,
                "submitted_hours": round(b.submitted / 3600, 2),
                "hours": round(((b.done_at or end) - b.submitted) / 3600, 2),
            }
            for b in batches
        ],
        "events": figures.events,
        "wall_seconds": round(wall, 1),
    }


def busy_sampler(world, rows: list[tuple[float, float]]):
    """Every SAMPLE_EVERY virtual seconds, the share of the cores of the hosts on (those that
    return right answers, by speed) that crunch: about 1 while work waits, and what falls off
    after shows the batches' drain (docs/benchmarks.md). It reads the world, changing nothing."""

    def sample(_a: int, _b: int) -> None:
        on = crunching = 0.0
        for index, host in enumerate(world.hosts):
            if host.gone or not world.on[index] or host.kind not in ("honest", "erring"):
                continue
            on += host.flops * host.cores
            crunching += host.flops * min(len(world.running[index]), host.cores)
        rows.append((round(world.now / 3600, 2), round(crunching / on, 3) if on else 0.0))
        if world.events:  # something else is still to happen
            world.at_time(world.now + SAMPLE_EVERY, SAMPLE, 0)

    return sample


def drain_hours(busy: list[tuple[float, float]], end: float) -> float | None:
    """Hours from when the busy share last fell below 0.9, having reached it, to the end."""
    reached = [i for i, (_, share) in enumerate(busy) if share >= 0.9]
    if not reached or reached[-1] + 1 >= len(busy):
        return None
    return round(end / 3600 - busy[reached[-1] + 1][0], 2)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coordinator.settings")
    django.setup()
    started = time.perf_counter()
    world, crunching, ideal, _ = build(args)
    crunching.start()
    total = args.units
    last = [time.perf_counter()]

    def finished() -> bool:
        if time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            done = sum(batch.finished for batch in world.batches)
            print(
                f"  virtual {timedelta(seconds=int(world.now))}: {done:,} of {total:,} units", file=sys.stderr
            )
        return len(world.batches) == len(crunching.pending_batches) and world.open_units == 0

    busy: list[tuple[float, float]] = []
    handlers = crunching.handlers()
    handlers[SAMPLE] = busy_sampler(world, busy)
    world.at_time(0.0, SAMPLE, 0)
    world.run(handlers, until=finished)
    result = report(world, ideal, args, time.perf_counter() - started)
    result["busy_share"], result["drain_hours"] = busy, drain_hours(busy, result["makespan_seconds"])
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
