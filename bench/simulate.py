"""A project of volunteer hosts in virtual time, run by the coordinator's own policy code.

``python -m bench.simulate`` (``--hosts``, ``--units``, ``--seed``, ``--mix``, ``--help``)
simulates hosts drawn from published models of volunteer hosts (``bench.sim_population``,
docs/simulator-hosts.md): on and off by their availability, of their speed and cores,
honest, erring, random cheaters and colluders, some leaving for good. Scientists submit
batches over time. The lifecycle, quorum, credit, reputation, adaptive replication, quotas,
tail acceleration and fair share are the coordinator's modules, called as dispatch, the
transitioner and the validator call them (``bench.sim_engine``); time, the network and the
database's mechanics are modelled. Same seed, same figures.

It ends with one line of JSON: ``hosts``, ``units``, ``makespan_ratio`` (the whole workload's
makespan against the ideal: the work the quorums need over the capacity of the hosts that
return right answers, at their on fraction), ``tail_ratio`` (the largest batch's last 1%
against its median unit), ``wrong_accepted``, ``credit_spread``, ``share_error``, ``wasted``
and ``wall_seconds``, with the batches' own figures.
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
from datetime import timedelta

import django


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
        accelerated_wait=tessera["ACCELERATED_WAIT_SECONDS"],
        accelerated_wait_share=tessera["ACCELERATED_WAIT_SHARE"],
        window=tessera["FAIR_SHARE_WINDOW_SECONDS"],
        dispute_wait=tessera["DISPUTE_WAIT_SECONDS"],
        deadline_share=DEADLINE_SHARE,
        quota_cap=tessera["DEFAULT_DAILY_QUOTA"],
        block_units=tessera["DISPATCH_BLOCK_UNITS"],
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
        "--small-batches", type=int, default=10, help="the others' batches, 1%% of the units each"
    )
    parser.add_argument("--quorum", type=int, default=2)
    args = parser.parse_args(argv)
    if args.hosts < 1 or args.units < 1 or args.scientists < 1 or not 0 <= args.leaving < 1:
        parser.error("--hosts, --units and --scientists must be positive, --leaving in [0, 1)")
    return args


def build(args: argparse.Namespace):
    from bench.sim_crunch import SUBMIT, Crunching
    from bench.sim_engine import Batch, Host
    from bench.sim_population import Availability, Mix, mean_on_fraction, population
    from bench.sim_world import World
    from coordinator.work.lifecycle import Policy

    knobs = knobs_from_settings()
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
                quota=knobs.quota_cap if old else 10,
                on_fraction=mean_on_fraction(spec),
            )
        )
        availability.append(Availability(spec, random.Random(f"{args.seed}:on:{spec.index}")))
        leaves_at.append(rng.expovariate(1 / 86400.0) if rng.random() < args.leaving else math.inf)
    median_flops = statistics.median(spec.flops for spec in specs)
    fpops = median_flops * args.task_hours * 3600
    capacity = sum(
        s.flops * s.cores * mean_on_fraction(s)
        for s, h in zip(specs, hosts, strict=True)
        if s.kind in ("honest", "erring") and leaves_at[h.index] == math.inf
    )
    ideal = args.units * args.quorum * fpops / capacity
    weights = {share: 100.0 for share in range(1, args.scientists + 1)}
    world = World(knobs=knobs, hosts=hosts, weights=weights, seed=args.seed)
    world.specs_error = [s.error_rate for s in specs]
    world.specs_wrong = [s.wrong_rate for s in specs]
    crunching = Crunching(world, availability, leaves_at)
    policy = Policy(args.quorum, args.quorum, 3, 2 * args.quorum + 4, int(args.delay_days * 86400))
    small = max(1, args.units // 100) if args.scientists > 1 else 0
    smalls = min(args.small_batches, args.units // max(1, small) - 1) if small else 0
    plan = [(0.0, 1, args.units - small * smalls)]
    for i in range(smalls):  # the other scientists' batches arrive while the big one runs
        plan.append((ideal * (0.1 + 0.6 * i / max(1, smalls)), 2 + i % (args.scientists - 1), small))
    for when, share, units in plan:
        batch = Batch(len(crunching.pending_batches), share, policy, 0, fpops, 0, units, when)
        world.at_time(when, SUBMIT, len(crunching.pending_batches))
        crunching.pending_batches.append(batch)
    return world, crunching, ideal, capacity


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
        "seed": args.seed,
        "makespan_hours": round(end / 3600, 2),
        "ideal_hours": round(ideal / 3600, 2),
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

    world.run(crunching.handlers(), until=finished)
    result = report(world, ideal, args, time.perf_counter() - started)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
