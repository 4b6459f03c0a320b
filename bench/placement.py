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
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


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
    os.environ.update(
        DATABASE_URL=f"sqlite:///{folder / 'placement.sqlite3'}",
        BROKER_URL="memory://",
        MEDIA_ROOT=str(folder / "media"),
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="coordinator.settings",
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--no-input", "-v", "0")


def run_case(*, share: float, quorum: int, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    from django.db import transaction
    from django.utils import timezone

    from coordinator.accounts.models import Host
    from coordinator.scheduler.dispatch import WorkRequest, claim_work
    from coordinator.testing import make_app, make_host, make_units, make_volunteer
    from coordinator.work.lifecycle import Outcome, ReplicaState
    from coordinator.work.models import Replica

    Replica.objects.filter(state=ReplicaState.UNSENT).update(
        state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED
    )
    app = make_app()
    make_units(app, args.units, min_quorum=quorum, target_nresults=quorum, input_data=b"x")
    colluders = round(share * args.hosts)
    hosts: list[tuple[Host, bool]] = []
    for index in range(args.hosts):
        host, _ = make_host(make_volunteer()[0], n_cpus=4, daily_quota=10**6)
        Host.objects.filter(pk=host.pk).update(network=f"10.{index // 250}.{index % 250}.0/24")
        hosts.append((Host.objects.get(pk=host.pk), index < colluders))
    ring = [host for host, bad in hosts if bad]
    honest = [host for host, bad in hosts if not bad]
    calls = 0
    started = time.perf_counter()
    while Replica.objects.filter(workunit__app=app, state=ReplicaState.UNSENT).exists():
        order = honest[:]
        rng.shuffle(order)
        burst_at = rng.randrange(len(order) + 1)  # the ring asks back to back, at a random moment
        callers = [(h, args.tasks) for h in order[:burst_at]] + [(h, 10_000) for h in ring]
        callers += [(h, args.tasks) for h in order[burst_at:]]
        for host, tasks in callers:
            with transaction.atomic():
                got = claim_work(host=host, request=WorkRequest(tasks=tasks), now=timezone.now())
            calls += 1
            Replica.objects.filter(pk__in=[a.replica_id for a in got]).update(
                state=ReplicaState.OVER, outcome=Outcome.SUCCESS, output_sha256="0" * 64
            )
    seconds = time.perf_counter() - started
    ring_ids = {host.pk for host in ring}
    by_unit: dict[int, list[int]] = {}
    for unit_id, host_id in Replica.objects.filter(workunit__app=app).values_list("workunit_id", "host_id"):
        by_unit.setdefault(unit_id, []).append(host_id)
    handed = sum(len(holders) for holders in by_unit.values())
    to_ring = sum(host in ring_ids for holders in by_unit.values() for host in holders)
    captured = sum(all(host in ring_ids for host in holders) for holders in by_unit.values())
    dispatch_share = to_ring / handed if handed else 0.0
    return {
        "share": share,
        "quorum": quorum,
        "colluders": colluders,
        "hosts": args.hosts,
        "units": args.units,
        "dispatch_share": round(dispatch_share, 4),
        "captured": captured,
        "captured_share": round(captured / args.units, 4),
        "expected_share": round(dispatch_share**quorum, 4),
        "calls": calls,
        "seconds": round(seconds, 1),
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
