"""Churn, cheaters and crashes on the production stack: Tessera's guarantees, measured.

Run ``python -m bench.scenario`` (``--units``, ``--hosts``, ``--mix``, ``--task-seconds``…;
``--help``). It starts the cluster of ``tests/cluster.py`` (PostgreSQL, RabbitMQ, SeaweedFS,
Redis for rate limits, two gunicorn coordinators, two dramatiq workers, the scheduler),
submits a Monte Carlo batch through the API and lets the simulated hosts of
``bench/sim_hosts.py`` crunch it: honest, slow, vanishing, random cheaters, colluders,
replayers and crashers. While they do, it SIGKILLs each coordinator, each worker and the
scheduler (the supervisor starts them again) and restarts PostgreSQL once.

Then it checks the coordinator's books against ground truth (every unit's right answer is
computed again here) and against the hosts' own accounts, prints a table and ends with one
line of JSON. The guarantees (``guarantees`` in the JSON; the exit status is 1 if one fails):

- every unit ends validated or failed with a reason;
- no result is credited twice, and every credit is in the ledger once;
- the ledger verifies, and its sums per volunteer and per host equal the stored totals;
- no random cheater's answer becomes canonical or earns credit;
- no result an honest host finished is lost: every one was acknowledged, and every
  acknowledged one is in the database as the host sent it;
- no replayed request and no report of another host's replica is accepted.

The makespan is compared with the ideal: the work the quorum needs (units x quorum x task
length) divided by the capacity of the hosts that return right answers and stay.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.sim_hosts import CHEATING_KINDS, KINDS, Plan, run_hosts

# Shares of the batch finished whose times are reported: where the makespan goes.
MILESTONES = (0.5, 0.9, 0.99, 1.0)
DEFAULT_MIX = "slow=0.10,vanishing=0.30,random=0.10,colluding=0.05,replaying=0.05,crashing=0.05"
# When each fault strikes, as the fraction of units validated, and what it is.
FAULTS = (
    (0.15, "kill web0"),
    (0.30, "kill worker0"),
    (0.40, "kill scheduler"),
    (0.50, "restart postgresql"),
    (0.65, "kill web1"),
    (0.75, "kill worker1"),
)

# The coordinator's books, read after the run inside its own Django.
BOOKS = """
import hashlib
from collections import Counter, defaultdict
from decimal import Decimal
from django.db.models import Count
from coordinator.accounts.models import Host, Volunteer
from coordinator.validation.models import LedgerEntry
from coordinator.work.models import Replica, WorkUnit
from workunits import montecarlo_pi
from workunits.interface import Checkpoint

units = WorkUnit.objects.filter(batch_id=values["batch"]).select_related("canonical_replica")
states, without_reason, bad_canonical, wrong = Counter(), 0, 0, []
for unit in units:
    states[unit.state + (f" ({unit.failure_reason})" if unit.failure_reason else "")] += 1
    without_reason += unit.state == "failed" and not unit.failure_reason
    if unit.state != "done":
        continue
    canonical = unit.canonical_replica
    if canonical is None or canonical.validate_state != "valid":
        bad_canonical += 1
        continue
    truth = hashlib.sha256(montecarlo_pi.compute(bytes(unit.input_inline), Checkpoint())).hexdigest()
    if canonical.output_sha256 != truth:
        wrong.append([unit.pk, canonical.host_id])

def ledger_sums(field):
    sums = defaultdict(Decimal)
    for owner, credit in LedgerEntry.objects.values_list(field, "credit"):
        sums[owner] += credit
    return sums

by_volunteer, by_host = ledger_sums("volunteer_id"), ledger_sums("host_id")
volunteers_off = sum(v.total_credit != by_volunteer.get(v.pk, Decimal(0)) for v in Volunteer.objects.all())
hosts_off = sum(h.total_credit != by_host.get(h.pk, Decimal(0)) for h in Host.objects.all())
acked = {int(r): (h, sha) for r, h, sha in values["acked"]}
kept = {
    r.pk: (r.host_id, r.outcome, r.output_sha256)
    for r in Replica.objects.filter(pk__in=list(acked)).only("host_id", "outcome", "output_sha256")
}
lost = [r for r, (h, sha) in acked.items() if kept.get(r) != (h, "success", sha)]
result = {
    "states": dict(states),
    "without_reason": without_reason,
    "bad_canonical": bad_canonical,
    "wrong": wrong,
    "credited_replicas": Replica.objects.filter(granted_credit__isnull=False).count(),
    "ledger_entries": LedgerEntry.objects.count(),
    "ledger_replicas": LedgerEntry.objects.values("replica").distinct().count(),
    "ledger_not_valid": LedgerEntry.objects.exclude(replica__validate_state="valid").count(),
    "volunteers_off": volunteers_off,
    "hosts_off": hosts_off,
    "host_credit": {h.pk: str(h.total_credit) for h in Host.objects.all()},
    "lost": lost,
    "replicas_sent": Replica.objects.filter(
        workunit__batch_id=values["batch"], sent_at__isnull=False
    ).count(),
}
"""


def parse_mix(text: str) -> dict[str, float]:
    """``kind=fraction,…``; honest hosts are the rest."""
    mix: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        kind, _, fraction = part.partition("=")
        if kind not in KINDS or kind == "honest":
            raise argparse.ArgumentTypeError(f"unknown host kind {kind!r} (kinds: {', '.join(KINDS[1:])})")
        mix[kind] = float(fraction)
        if not 0 <= mix[kind] <= 1:
            raise argparse.ArgumentTypeError(f"{kind}: a fraction is between 0 and 1")
    if sum(mix.values()) > 1:
        raise argparse.ArgumentTypeError("the fractions add up to more than 1")
    return mix


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--mix", type=parse_mix, default=DEFAULT_MIX, help=f"default {DEFAULT_MIX}")
    parser.add_argument("--task-seconds", type=float, default=1.0, help="an honest host's time per task")
    parser.add_argument("--slow-factor", type=float, default=4.0)
    parser.add_argument("--quorum", type=int, default=2)
    parser.add_argument("--delay-bound", type=int, default=60, help="seconds a host has per task (min 60)")
    parser.add_argument("--processes", type=int, default=4, help="processes the hosts are spread over")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--no-faults", action="store_true", help="no kills and no PostgreSQL restart")
    parser.add_argument("--timeout", type=float, default=1800, help="give up on the batch after this")
    return parser.parse_args(argv)


def kinds_for(hosts: int, mix: dict[str, float], seed: int) -> list[str]:
    kinds = [kind for kind, fraction in mix.items() for _ in range(round(hosts * fraction))][:hosts]
    kinds += ["honest"] * (hosts - len(kinds))
    random.Random(seed).shuffle(kinds)
    return kinds


class Watch:
    """Reads the cluster's database every half second, straight over psycopg: the batch's
    progress, and when each host's first invalid result was judged (detection)."""

    def __init__(self, database_url: str, batch: int, units: int) -> None:
        self.database_url, self.batch = database_url, batch
        self.progress: Counter = Counter()
        self.detected: dict[int, float] = {}
        self.units = units
        self.reached: dict[str, float] = {}  # "50%" -> when that share of units was finished
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scenario-watch", daemon=True)

    def _run(self) -> None:
        import psycopg

        connection = None
        while not self.stopping.wait(0.5):
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(self.database_url, autocommit=True, connect_timeout=3)
                rows = connection.execute(
                    "SELECT state, count(*) FROM work_workunit WHERE batch_id = %s GROUP BY state",
                    [self.batch],
                ).fetchall()
                self.progress = Counter(dict(rows))
                finished = self.progress["done"] + self.progress["failed"]
                for share in MILESTONES:
                    if finished >= share * self.units:
                        self.reached.setdefault(f"{share:.0%}", time.time())
                now = time.time()
                for (host,) in connection.execute("SELECT id FROM accounts_host WHERE invalid_count > 0"):
                    self.detected.setdefault(host, now)
            except psycopg.Error:
                connection = None  # PostgreSQL is restarting: connect again
        if connection is not None:
            connection.close()

    def start(self) -> Watch:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


def strike(cluster: Any, fault: str) -> None:
    from tests.cluster import restart_postgres

    if fault == "restart postgresql":
        restart_postgres()
        for web in cluster.webs:
            cluster.wait_ready(web)
        return
    name = fault.removeprefix("kill ")
    service = {s.name: s for s in [*cluster.webs, *cluster.workers, cluster.scheduler]}[name]
    cluster.crash(service)


def run(opts: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from tessera_batches import Batches

    from tests.cluster import Cluster

    kinds = kinds_for(opts.hosts, opts.mix, opts.seed)
    plan = Plan(
        task_seconds=opts.task_seconds,
        slow_factor=opts.slow_factor,
        delay_bound=opts.delay_bound,
        vanish_within=max(10.0, opts.units * opts.quorum * opts.task_seconds / opts.hosts / 2),
        seed=opts.seed,
    )
    faults: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="tessera-scenario-") as folder,
        Cluster(Path(folder), RPC_DELAY_NO_WORK="5") as cluster,
    ):
        coordinator = cluster.coordinator
        assert coordinator is not None
        tokens, scientist = cluster.open_project(volunteers=opts.hosts, prefix="sim", scientist="scenario")
        batches = Batches(cluster.webs[0].url, scientist)
        urls = [web.url for web in cluster.webs]
        stop, logs = multiprocessing.Event(), multiprocessing.Queue()
        hosts = [(i, kinds[i], tokens[i]) for i in range(opts.hosts)]
        per = -(-opts.hosts // opts.processes)
        processes = [
            multiprocessing.Process(target=run_hosts, args=(urls, hosts[i : i + per], plan, stop, logs))
            for i in range(0, opts.hosts, per)
        ]
        for process in processes:
            process.start()
        started = time.time()
        batch = batches.submit(
            "montecarlo_pi",
            "scenario",
            parameters={"seed": opts.seed, "units": opts.units, "samples_per_unit": 100},
            min_quorum=opts.quorum,
            target_nresults=opts.quorum,
            max_error_results=4,
            max_total_results=4 * opts.quorum + 2,
            delay_bound=opts.delay_bound,
        )
        watch = Watch(coordinator.env["DATABASE_URL"], batch["id"], opts.units).start()
        pending_faults = [] if opts.no_faults else list(FAULTS)
        state = "splitting"
        try:
            while time.time() - started < opts.timeout:
                finished = watch.progress["done"] + watch.progress["failed"]
                if pending_faults and finished >= pending_faults[0][0] * opts.units:
                    _, fault = pending_faults.pop(0)
                    struck = time.time()
                    try:
                        strike(cluster, fault)
                        trouble = ""
                    except RuntimeError as error:  # not back in time: a finding, and the run goes on
                        trouble = str(error)[:300]
                    faults.append(
                        {
                            "fault": fault,
                            "at_s": round(struck - started, 1),
                            "back_in_s": round(time.time() - struck, 1),
                            "trouble": trouble,
                        }
                    )
                    continue
                if finished >= opts.units:
                    state = batches.get(batch["id"])["state"]
                    if state in ("done", "cancelled"):
                        break
                time.sleep(0.5)
            makespan = time.time() - started
        finally:
            stop.set()
            host_logs = [log for _ in processes for log in logs.get(timeout=300)]
            for process in processes:
                process.join(30)
            watch.stop()
        correct = [log for log in host_logs if log["kind"] not in CHEATING_KINDS]
        acked = [
            [replica, log["host_id"], sha] for log in correct for replica, sha in log["accepted"].items()
        ]
        books = coordinator.django(BOOKS, batch=batch["id"], acked=acked)
        exported = Path(folder) / "ledger.jsonl"
        coordinator.manage("ledger", "export", "--output", str(exported))
        verified = "verified" in coordinator.manage("ledger", "verify", str(exported)).lower()
        restarts = list(cluster.supervisor.restarts) if cluster.supervisor else []
    return figures(opts, kinds, plan, host_logs, books, watch.detected, started, makespan, state) | {
        "finished_at_s": {share: round(at - started, 1) for share, at in watch.reached.items()},
        "ledger_verified": verified,
        "faults": faults,
        "restarted": restarts,
    }


def figures(
    opts: argparse.Namespace,
    kinds: list[str],
    plan: Plan,
    host_logs: list[dict[str, Any]],
    books: dict[str, Any],
    detected: dict[int, float],
    started: float,
    makespan: float,
    state: str,
) -> dict[str, Any]:
    kind_of = {log["host_id"]: log["kind"] for log in host_logs}
    states = Counter(books["states"])
    completed = states.pop("done", 0)
    credit = Counter()
    for host, total in books["host_credit"].items():
        credit[kind_of.get(int(host), "?")] += Decimal(total)
    wrong_by_kind = Counter(kind_of.get(host, "?") for _, host in books["wrong"])
    detection: dict[str, dict[str, Any]] = {}
    for kind in sorted(CHEATING_KINDS):
        delays = sorted(
            detected[log["host_id"]] - log["first_report"]
            for log in host_logs
            if log["kind"] == kind and log["first_report"] and log["host_id"] in detected
        )
        detection[kind] = {
            "hosts": kinds.count(kind),
            "detected": len(delays),
            "median_s": round(statistics.median(delays), 1) if delays else None,
            "max_s": round(delays[-1], 1) if delays else None,
            "each_s": [round(delay, 1) for delay in delays],
        }
    speed = {"slow": 1 / plan.slow_factor, "vanishing": 0.0, **dict.fromkeys(CHEATING_KINDS, 0.0)}
    capacity = sum(speed.get(kind, 1.0) for kind in kinds)  # tasks per task-length, right and staying
    ideal = opts.units * opts.quorum * opts.task_seconds / capacity if capacity else float("inf")
    total = lambda key: sum(log[key] for log in host_logs)  # noqa: E731
    failed_calls = Counter()
    for log in host_logs:
        failed_calls.update(log["failed_calls"])
    honest_unreported = sum(log["unreported"] for log in host_logs if log["kind"] not in CHEATING_KINDS)
    result: dict[str, Any] = {
        "benchmark": "scenario",
        "batch_state": state,
        "units_total": opts.units,
        "units_completed": completed,
        "units_failed": sum(n for s, n in states.items() if s.startswith("failed")),
        "failure_reasons": {s: n for s, n in states.items() if s.startswith("failed")},
        "units_unfinished": states.get("active", 0),
        "wrong_accepted": len(books["wrong"]),
        "wrong_accepted_colluding": wrong_by_kind["colluding"],
        "wrong_accepted_random": wrong_by_kind["random"],
        "colluding_fraction": round(kinds.count("colluding") / len(kinds), 3),
        "credit_to_cheaters": {kind: float(credit[kind]) for kind in sorted(CHEATING_KINDS)},
        "credit_total": float(sum(credit.values())),
        "double_credits": books["ledger_entries"]
        - books["ledger_replicas"]
        + abs(books["credited_replicas"] - books["ledger_entries"]),
        "ledger_totals_match": books["volunteers_off"] == 0 and books["hosts_off"] == 0,
        "lost_results": len(books["lost"]) + honest_unreported,
        "results_acknowledged": sum(len(log["accepted"]) for log in host_logs),
        "duplicate_acks": total("duplicates"),
        "replays": total("replays"),
        "replays_accepted": total("replays_accepted"),
        "foreign_reports": total("foreign_reports"),
        "foreign_accepted": total("foreign_accepted"),
        "crashes": total("crashes"),
        "vanished": sum(log["vanished"] for log in host_logs),
        "replicas_sent": books["replicas_sent"],
        "detect": detection,
        "failed_calls": dict(failed_calls),
        "makespan_s": round(makespan, 1),
        "ideal_s": round(ideal, 1),
        "makespan_ratio": round(makespan / ideal, 2),
        "hosts": dict(Counter(kinds)),
        "task_seconds": opts.task_seconds,
        "quorum": opts.quorum,
        "delay_bound": opts.delay_bound,
    }
    result["guarantees"] = {
        "every_unit_ends_with_a_reason": result["units_unfinished"] == 0
        and books["without_reason"] == 0
        and books["bad_canonical"] == 0,
        "no_double_credit": result["double_credits"] == 0 and books["ledger_not_valid"] == 0,
        "ledger_totals_match": result["ledger_totals_match"],
        "random_cheaters_never_canonical": result["wrong_accepted_random"] == 0 and credit["random"] == 0,
        "no_honest_result_lost": result["lost_results"] == 0,
        "no_replay_or_foreign_report_accepted": result["replays_accepted"] == 0
        and result["foreign_accepted"] == 0,
    }
    return result


def broken(figures: dict[str, Any]) -> list[str]:
    """The guarantees that did not hold (the ledger's verification among them)."""
    failed = [name for name, held in figures["guarantees"].items() if not held]
    failed += [] if figures.get("ledger_verified") else ["ledger_verifies"]
    return failed + (["services_came_back"] if any(f["trouble"] for f in figures.get("faults", [])) else [])


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # A TERM (a timeout, a killed job) unwinds like Ctrl-C, so the cluster is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures = run(opts)
    rows = [
        ("units (quorum)", f"{figures['units_total']:,} ({figures['quorum']}), hosts {figures['hosts']}"),
        (
            "completed / failed / unfinished",
            f"{figures['units_completed']} / {figures['units_failed']} / {figures['units_unfinished']}",
        ),
        (
            "wrong accepted (colluding, random)",
            f"{figures['wrong_accepted']} ({figures['wrong_accepted_colluding']}, "
            f"{figures['wrong_accepted_random']});"
            f" colluders are {figures['colluding_fraction']:.0%} of hosts",
        ),
        ("credit to cheaters", f"{figures['credit_to_cheaters']} of {figures['credit_total']:.1f}"),
        ("double credits, lost results", f"{figures['double_credits']}, {figures['lost_results']}"),
        (
            "replays / foreign reports accepted",
            f"{figures['replays_accepted']} of {figures['replays']} / "
            f"{figures['foreign_accepted']} of {figures['foreign_reports']}",
        ),
        (
            "cheaters detected (first invalid)",
            "; ".join(
                f"{kind} {d['detected']} of {d['hosts']}, median {d['median_s']} s, max {d['max_s']} s"
                for kind, d in figures["detect"].items()
            ),
        ),
        (
            "units finished at",
            ", ".join(f"{share} {at} s" for share, at in figures["finished_at_s"].items()),
        ),
        (
            "makespan / ideal",
            f"{figures['makespan_s']} s / {figures['ideal_s']} s = {figures['makespan_ratio']}",
        ),
        (
            "faults",
            "; ".join(
                f"{f['fault']} at {f['at_s']} s (back in {f['back_in_s']} s{f['trouble'] and ': NOT READY'})"
                for f in figures["faults"]
            ),
        ),
        ("failed calls (retried)", json.dumps(figures["failed_calls"])),
        ("guarantees", "all held" if not broken(figures) else "BROKEN: " + ", ".join(broken(figures))),
    ]
    for name, value in rows:
        print(f"{name:<36}{value}")
    print(json.dumps(figures, separators=(",", ":")), flush=True)
    return 1 if broken(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
