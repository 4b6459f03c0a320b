"""Placement benchmark: how many units colluders get every replica of, through real dispatch.

Run ``python -m bench.placement`` (``--units``, ``--hosts``, ``--shares``, ``--quorums``…;
``--help``). It makes a scratch SQLite database in a temporary folder (nothing else is
touched), migrates it, and for each colluder share *c* and quorum *q* seeds a batch of
units with *q* replicas each and hosts of distinct volunteers on distinct networks, a share
*c* of them colluders. Then, round after round, every host asks for work through
``coordinator.scheduler.dispatch.claim_work`` — the coordinator's own code — and reports
what it got at once (marked done in the database, no validation: only placement is
measured). Every host keeps its buffer full, asking for all it may hold (the limits per
core and host), and finishes it by the next round, so all hosts work at the same pace; the
colluders ask as an attacker would: back to back, right after each other, every round.

A unit is *captured* when every one of its replicas went to a colluder: the only way
colluders can get an agreed lie accepted without an honest host seeing it. The table
compares the captured share with *d*^q, where *d* is the colluders' share of all replicas
handed out (about *c* when the limits on work in progress hold). Before issue 13 the same
attack captured 40 of 60 units with 2 colluders among 6 hosts (*c* = 0.33, *q* = 2: 0.67,
against c^q = 0.11). It ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import database


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=60)
    parser.add_argument("--shares", default="0.05,0.10,0.33", help="colluders' shares of the hosts")
    parser.add_argument("--quorums", default="2,3")
    parser.add_argument(
        "--tasks",
        type=int,
        default=10_000,
        help="what an honest host asks for per call (default: all it may hold)",
    )
    parser.add_argument("--seed", type=int, default=13)
    return parser.parse_args(argv)


def setup_django(folder: Path) -> None:
    """Django on a scratch SQLite file in ``folder``, migrated."""
    database.setup_django(
        dict(
            DATABASE_URL=f"sqlite:///{folder / 'placement.sqlite3'}",
            BROKER_URL="memory://",
            MEDIA_ROOT=str(folder / "media"),
            LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="coordinator.settings",
        )
    )
    from django.core.management import call_command

    call_command("migrate", "--no-input", "-v", "0")


def run_case(*, share: float, quorum: int, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """One colluder share and quorum: seed, let every host claim until nothing is left, count."""
    colluders = round(share * args.hosts)
    app, hosts = seed_case(quorum=quorum, colluders=colluders, args=args)
    ring = [host for host, bad in hosts if bad]
    honest = [host for host, bad in hosts if not bad]
    calls, seconds = dispatch_all(app, ring=ring, honest=honest, tasks=args.tasks, rng=rng)
    return {
        "share": share,
        "quorum": quorum,
        "colluders": colluders,
        "hosts": args.hosts,
        "units": args.units,
        **captured(app, ring=ring, quorum=quorum, units=args.units),
        "calls": calls,
        "seconds": round(seconds, 1),
    }


def seed_case(*, quorum: int, colluders: int, args: argparse.Namespace) -> tuple[Any, list[tuple[Any, bool]]]:
    """A fresh app with its units, and hosts on distinct networks: (host, is a colluder)."""
    from coordinator.accounts.models import Host
    from coordinator.testing import make_app, make_host, make_units, make_volunteer
    from coordinator.work.lifecycle import Outcome, ReplicaState
    from coordinator.work.models import Replica

    Replica.objects.filter(state=ReplicaState.UNSENT).update(
        state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED
    )
    app = make_app()
    make_units(app, args.units, min_quorum=quorum, target_nresults=quorum, input_data=b"x")
    hosts: list[tuple[Host, bool]] = []
    for index in range(args.hosts):
        host, _ = make_host(make_volunteer()[0], n_cpus=4, daily_quota=10**6)
        Host.objects.filter(pk=host.pk).update(network=f"10.{index // 250}.{index % 250}.0/24")
        hosts.append((Host.objects.get(pk=host.pk), index < colluders))
    return app, hosts


def dispatch_all(
    app: Any, *, ring: list[Any], honest: list[Any], tasks: int, rng: random.Random
) -> tuple[int, float]:
    """Rounds of claim_work until no replica is unsent, each claim reported at once: (calls, seconds)."""
    from django.db import transaction
    from django.utils import timezone

    from coordinator.scheduler.dispatch import WorkRequest, claim_work
    from coordinator.work.lifecycle import Outcome, ReplicaState
    from coordinator.work.models import Replica

    calls = 0
    started = time.perf_counter()
    while Replica.objects.filter(workunit__app=app, state=ReplicaState.UNSENT).exists():
        order = honest[:]
        rng.shuffle(order)
        burst_at = rng.randrange(len(order) + 1)  # the ring asks back to back, at a random moment
        callers = [(h, tasks) for h in order[:burst_at]] + [(h, 10_000) for h in ring]
        callers += [(h, tasks) for h in order[burst_at:]]
        for host, wanted in callers:
            with transaction.atomic():
                got = claim_work(host=host, request=WorkRequest(tasks=wanted), now=timezone.now())
            calls += 1
            Replica.objects.filter(pk__in=[a.replica_id for a in got]).update(
                state=ReplicaState.OVER, outcome=Outcome.SUCCESS, output_sha256="0" * 64
            )
    return calls, time.perf_counter() - started


def captured(app: Any, *, ring: list[Any], quorum: int, units: int) -> dict[str, Any]:
    """The ring's share of the replicas handed out, and the units it holds every replica of."""
    from coordinator.work.models import Replica

    ring_ids = {host.pk for host in ring}
    by_unit: dict[int, list[int]] = {}
    for unit_id, host_id in Replica.objects.filter(workunit__app=app).values_list("workunit_id", "host_id"):
        by_unit.setdefault(unit_id, []).append(host_id)
    handed = sum(len(holders) for holders in by_unit.values())
    to_ring = sum(host in ring_ids for holders in by_unit.values() for host in holders)
    count = sum(all(host in ring_ids for host in holders) for holders in by_unit.values())
    dispatch_share = to_ring / handed if handed else 0.0
    return {
        "dispatch_share": round(dispatch_share, 4),
        "captured": count,
        "captured_share": round(count / units, 4),
        "expected_share": round(dispatch_share**quorum, 4),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    cases = []
    with tempfile.TemporaryDirectory(prefix="tessera-placement-") as folder:
        setup_django(Path(folder))
        for quorum in (int(q) for q in args.quorums.split(",")):
            for share in (float(s) for s in args.shares.split(",")):
                cases.append(run_case(share=share, quorum=quorum, args=args, rng=rng))
    print(f"{'c':>5} {'q':>2} {'d (dispatch share)':>18} {'captured':>9} {'captured share':>15} {'d^q':>7}")
    for case in cases:
        print(
            f"{case['share']:>5.2f} {case['quorum']:>2} {case['dispatch_share']:>18.3f} "
            f"{case['captured']:>9} {case['captured_share']:>15.4f} {case['expected_share']:>7.4f}"
        )
    print(json.dumps({"benchmark": "placement", "cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
