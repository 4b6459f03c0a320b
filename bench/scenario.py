"""Churn, cheaters and crashes on the production stack: Tessera's guarantees, measured.

Run ``python -m bench.scenario`` (``--units``, ``--hosts``, ``--mix``, ``--task-seconds``…;
``--help``). It starts the cluster of ``tests/cluster.py`` (PostgreSQL, RabbitMQ, SeaweedFS,
Redis for rate limits, two gunicorn coordinators, two dramatiq workers, the scheduler),
submits a Monte Carlo batch through the API and lets the simulated hosts of
``bench/sim_hosts.py`` crunch it: honest, slow, vanishing, random cheaters, colluders,
replayers and crashers. While they do, it SIGKILLs each coordinator, each worker and the
scheduler (the supervisor starts them again) and restarts PostgreSQL once.

The correct hosts have volunteered for weeks: they register first and get that history
(``bench.books.ESTABLISH``: 30 days old, results unrelated hosts agreed with), so they are
*established*; then the cheaters register, new, and the batch is submitted. Each host sends
its own simulated address (``X-Forwarded-For``, believed from the loopback), in a /24 of its
own. Colluders *burst*: they ask for as much work as allowed, one right after the other.
When the batch is done the hosts keep crunching until the correction sweep has nothing
left (no unit active, to audit or unvouched, no caught host uncorrected, the batch
assimilated again), or ``--settle-timeout``.

The attack runs: ``--colluders 0.05,0.10,0.33`` runs one scenario per share, one after the
other, each on a fresh cluster, printing each run's table and JSON line as it ends. Each
run's hosts are that share of ``--strategy`` colluders (``partner`` by default: it lies only
when a partner holds the same unit; ``colluding`` always lies), ``--launderers`` (5 %)
laundering hosts (honest for ``--launder-after`` results, then lying), the kinds of
``--mix`` if given, and honest hosts. ``--ring-network`` puts the colluders on one /24;
``--no-burst`` makes them ask like everyone else; ``--ring-cpus`` has each claim (and crunch
on) that many cores, everyone else having one. Without ``--colluders``, one run of
``--mix``.

Then it checks the coordinator's books against ground truth (every unit's right answer is
computed again here) and against the hosts' own accounts, prints a table and ends with one
line of JSON. The guarantees (``guarantees`` in the JSON; the exit status is 1 if one fails):

- every unit ends validated or failed with a reason, and every correction is finished;
- no result is credited twice, every grant and reversal is in the ledger once, and no
  credit stands for a wrong answer (grants minus reversals);
- the ledger verifies, and its sums per volunteer and per host equal the stored totals;
- no random cheater's answer becomes canonical or earns credit;
- after the correction sweep no wrong result remains, and no right answer (no honest host)
  was ever marked invalid;
- no result an honest host finished is lost: every one was acknowledged, and every
  acknowledged one is in the database as the host sent it;
- no replayed request and no report of another host's replica is accepted.

Also reported: ``wrong_accepted_before_correction`` (units done with a wrong canonical result
at some moment: seen so, or corrected later), against the *c* ** quorum of the units that
docs/validation.md expects for a share *c* of colluding hosts.

The makespan is compared with the ideal: the work the quorum needs (units x quorum x task
length) divided by the capacity of the hosts that return right answers and stay.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.books import BOOKS, ESTABLISH, Progress, registered_hosts
from bench.scenario_report import broken, figures, table, time_split
from bench.sim_hosts import CHEATING_KINDS, KINDS, RING_KINDS, Plan, run_hosts

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


def parse_shares(text: str) -> list[float]:
    shares = [float(part) for part in text.split(",") if part]
    if not shares or not all(0 < share < 1 for share in shares):
        raise argparse.ArgumentTypeError("shares of the hosts, each between 0 and 1: 0.05,0.10,0.33")
    return shares


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--mix", type=parse_mix, help=f"default {DEFAULT_MIX} (with --colluders: none)")
    parser.add_argument(
        "--colluders", type=parse_shares, help="attack runs, one per share of colluding hosts: 0.05,0.10,0.33"
    )
    parser.add_argument("--strategy", choices=sorted(RING_KINDS - {"laundering"}), default="partner")
    parser.add_argument("--launderers", type=float, default=0.05, help="with --colluders: their share")
    parser.add_argument("--launder-after", type=int, default=15, help="a launderer's honest results")
    parser.add_argument("--ring-network", action="store_true", help="the colluders share one /24")
    parser.add_argument("--no-burst", action="store_true", help="colluders ask for work like the others")
    parser.add_argument("--ring-cpus", type=int, default=1, help="cores each colluder claims (others: 1)")
    parser.add_argument("--task-seconds", type=float, default=1.0, help="an honest host's time per task")
    parser.add_argument("--slow-factor", type=float, default=4.0)
    parser.add_argument("--quorum", type=int, default=2)
    parser.add_argument("--delay-bound", type=int, default=60, help="seconds a host has per task (min 60)")
    parser.add_argument("--processes", type=int, default=4, help="processes the honest hosts are spread over")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--no-faults", action="store_true", help="no kills and no PostgreSQL restart")
    parser.add_argument("--timeout", type=float, default=1800, help="give up on the batch after this")
    parser.add_argument(
        "--settle-timeout", type=float, default=600, help="give up on the corrections after this"
    )
    return parser.parse_args(argv)


def mixes(opts: argparse.Namespace) -> list[dict[str, float]]:
    """The mix of each run: ``--mix``, or one attack per share of ``--colluders``."""
    if not opts.colluders:
        return [opts.mix if opts.mix is not None else parse_mix(DEFAULT_MIX)]
    runs = []
    for share in opts.colluders:
        mix = {**(opts.mix or {}), opts.strategy: share}
        if opts.launderers:
            mix["laundering"] = opts.launderers
        if sum(mix.values()) > 1:
            raise SystemExit(f"the mix {mix} adds up to more than all the hosts")
        runs.append(mix)
    return runs


def kinds_for(hosts: int, mix: dict[str, float], seed: int) -> list[str]:
    kinds = [kind for kind, fraction in mix.items() for _ in range(round(hosts * fraction))][:hosts]
    kinds += ["honest"] * (hosts - len(kinds))
    random.Random(seed).shuffle(kinds)
    return kinds


class Watch:
    """Reads the cluster's database every half second, straight over psycopg: the batch's
    progress, when each host's first invalid result was judged (detection), the units seen
    done with a wrong canonical result, and what the correction sweep still has to do."""

    def __init__(self, database_url: str, batch: int, units: int) -> None:
        self.database_url, self.batch = database_url, Progress(batch)
        self.progress: Counter = Counter()
        self.detected: dict[int, float] = {}
        self.units = units
        self.reached: dict[str, float] = {}  # "50%" -> when that share of units was finished
        self.wrong_now: dict[int, int] = {}  # unit done with a wrong canonical result -> its host
        self.wrong_seen: dict[int, set[int]] = {}  # the same, at any look: unit -> hosts
        self.pending: dict[str, int] = {}
        self.quiet = 0  # looks in a row with nothing left to correct
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scenario-watch", daemon=True)

    def _run(self) -> None:
        import psycopg

        connection = None
        while not self.stopping.wait(0.5):
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(self.database_url, autocommit=True, connect_timeout=3)
                self.look(connection)
            except psycopg.Error:
                connection = None  # PostgreSQL is restarting: connect again
        if connection is not None:
            connection.close()

    def look(self, connection: Any) -> None:
        self.progress = Counter(self.batch.states(connection))
        finished = self.progress["done"] + self.progress["failed"]
        for share in MILESTONES:
            if finished >= share * self.units:
                self.reached.setdefault(f"{share:.0%}", time.time())
        now = time.time()
        for (host,) in connection.execute("SELECT id FROM accounts_host WHERE invalid_count > 0"):
            self.detected.setdefault(host, now)
        self.wrong_now = self.batch.wrong_now(connection)
        for unit, host in self.wrong_now.items():
            self.wrong_seen.setdefault(unit, set()).add(host)
        self.pending = self.batch.pending(connection)
        done = finished >= self.units and not any(self.pending.values())
        self.quiet = self.quiet + 1 if done else 0

    @property
    def finished(self) -> int:
        return self.progress["done"] + self.progress["failed"]

    @property
    def settled(self) -> bool:
        """The batch is finished and the correction sweep had nothing left to do, three
        looks in a row (a unit may be between two of its steps at one look)."""
        return self.quiet >= 3

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


def wait_for_hosts(database_url: str, count: int, timeout: float = 300) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as connection:
        while registered_hosts(connection) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} hosts did not register in {timeout} s")
            time.sleep(0.5)


class Hosts:
    """The simulated hosts' processes: the correct ones spread over several, the cheaters
    (one ring) in one of their own, started later."""

    def __init__(self, urls: list[str], plan: Plan) -> None:
        self.urls, self.plan = urls, plan
        self.stop, self.logs = multiprocessing.Event(), multiprocessing.Queue()
        self.processes: list[multiprocessing.Process] = []

    def start(self, hosts: list[tuple[int, str, str]], processes: int) -> None:
        if not hosts:
            return
        per = -(-len(hosts) // max(1, processes))
        for i in range(0, len(hosts), per):
            process = multiprocessing.Process(
                target=run_hosts, args=(self.urls, hosts[i : i + per], self.plan, self.stop, self.logs)
            )
            process.start()
            self.processes.append(process)

    def end(self) -> list[dict[str, Any]]:
        self.stop.set()
        logs = [log for _ in self.processes for log in self.logs.get(timeout=300)]
        for process in self.processes:
            process.join(30)
        return logs


def fault_due(cluster: Any, pending: list[tuple[float, str]], finished: float, started: float) -> dict | None:
    """Strike the next fault once its share of the units is finished; what happened, or None."""
    if not pending or finished < pending[0][0]:
        return None
    _, fault = pending.pop(0)
    struck = time.time()
    try:
        strike(cluster, fault)
        trouble = ""
    except RuntimeError as error:  # not back in time: a finding, and the run goes on
        trouble = str(error)[:300]
    return {
        "fault": fault,
        "at_s": round(struck - started, 1),
        "back_in_s": round(time.time() - struck, 1),
        "trouble": trouble,
    }


def run(opts: argparse.Namespace, mix: dict[str, float]) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from tessera_batches import Batches

    from tests.cluster import Cluster

    kinds = kinds_for(opts.hosts, mix, opts.seed)
    plan = Plan(
        task_seconds=opts.task_seconds,
        slow_factor=opts.slow_factor,
        delay_bound=opts.delay_bound,
        vanish_within=max(10.0, opts.units * opts.quorum * opts.task_seconds / opts.hosts / 2),
        seed=opts.seed,
        launder_after=opts.launder_after,
        burst=not opts.no_burst,
        ring_network=opts.ring_network,
        ring_cpus=opts.ring_cpus,
    )
    settings = {
        "RPC_DELAY_NO_WORK": "5",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",  # the simulated hosts' X-Forwarded-For is believed
        "ESTABLISHED_AGE_SECONDS": str(7 * 24 * 3600),  # no newcomer gets established in a run
        "SIGNUP_BURST_SECONDS": "0",  # the accounts are made by the runner, all at once
    }
    faults: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="tessera-scenario-") as folder,
        Cluster(Path(folder), **settings) as cluster,
    ):
        coordinator = cluster.coordinator
        assert coordinator is not None
        database_url = coordinator.env["DATABASE_URL"]
        tokens, scientist = cluster.open_project(volunteers=opts.hosts, prefix="sim", scientist="scenario")
        batches = Batches(cluster.webs[0].url, scientist)
        hosts = [(i, kinds[i], tokens[i]) for i in range(opts.hosts)]
        veterans = [host for host in hosts if host[1] not in CHEATING_KINDS]
        processes = Hosts([web.url for web in cluster.webs], plan)
        processes.start(veterans, opts.processes)
        wait_for_hosts(database_url, len(veterans))
        coordinator.django(ESTABLISH, age_days=30, independent_valid=50)
        processes.start([host for host in hosts if host[1] in CHEATING_KINDS], 1)
        wait_for_hosts(database_url, opts.hosts)
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
        watch = Watch(database_url, batch["id"], opts.units).start()
        pending_faults = [] if opts.no_faults else [(at * opts.units, fault) for at, fault in FAULTS]
        state, makespan, settled_at, wrong_at_batch_end = "splitting", None, None, None
        try:
            while True:
                elapsed = time.time() - started
                struck = fault_due(cluster, pending_faults, watch.finished, started)
                if struck is not None:
                    faults.append(struck)
                    continue
                if makespan is None:
                    if watch.finished >= opts.units and batches.get(batch["id"])["state"] == "done":
                        makespan, wrong_at_batch_end = elapsed, len(watch.wrong_now)
                    elif elapsed > opts.timeout:
                        break
                elif watch.settled:
                    settled_at = elapsed
                    break
                elif elapsed > makespan + opts.settle_timeout:
                    break
                time.sleep(0.5)
        finally:
            host_logs = processes.end()
            watch.stop()
        state = batches.get(batch["id"])["state"]
        correct = [log for log in host_logs if log["kind"] not in CHEATING_KINDS]
        acked = [
            [replica, log["host_id"], sha] for log in correct for replica, sha in log["accepted"].items()
        ]
        books = coordinator.django(
            BOOKS,
            batch=batch["id"],
            acked=acked,
            honest=[log["host_id"] for log in correct],
            ring=[log["host_id"] for log in host_logs if log["kind"] in RING_KINDS],
        )
        exported = Path(folder) / "ledger.jsonl"
        coordinator.manage("ledger", "export", "--output", str(exported))
        verified = "verified" in coordinator.manage("ledger", "verify", str(exported)).lower()
        restarts = list(cluster.supervisor.restarts) if cluster.supervisor else []
    ended = makespan if makespan is not None else time.time() - started
    return figures(opts, kinds, plan, host_logs, books, watch, ended, state, settled_at) | {
        "finished_at_s": {share: round(at - started, 1) for share, at in watch.reached.items()},
        "wrong_at_batch_end": wrong_at_batch_end,
        "ledger_verified": verified,
        "faults": faults,
        "restarted": restarts,
        "time_split": time_split(host_logs, started, started + ended),
    }


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # A TERM (a timeout, a killed job) unwinds like Ctrl-C, so the cluster is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    status = 0
    for mix in mixes(opts):
        measured = run(opts, mix)
        for name, value in table(measured):
            print(f"{name:<36}{value}")
        print(json.dumps(measured, separators=(",", ":")), flush=True)
        status = max(status, 1 if broken(measured) else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
