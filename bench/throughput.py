"""End-to-end throughput on the production stack: units per second from split to assimilated.

Run ``python -m bench.throughput`` (``--units``, ``--hosts``, ``--processes``; ``--help``).

It starts the cluster of ``tests/cluster.py`` (PostgreSQL, RabbitMQ, SeaweedFS as S3, two
gunicorn coordinators, two dramatiq workers, the scheduler), publishes the Monte Carlo app
and makes one volunteer per simulated host. The hosts (threads in a few processes, half on
each coordinator) speak the real signed protocol through the client library and return
each task's real output at once (units of one sample: computing is instant), asking for
work again without waiting; a host that got none waits what the reply says
(``IDLE_RPC_DELAY``). The clock runs from the batch's submission through the API to its
assimilated result; every unit is computed twice (quorum 2).

The figure is compared with the ceilings measured before on this machine for the parts
alone (docs/benchmarks.md): dispatch 1,590 replicas/s and validation 2,097 replicas/s, so
at most 795 units/s with two replicas a unit. It prints a table and ends with one line of
JSON (``units_per_s``, ``units``, ``hosts``, ``seconds``, ``split_s``, ``ratio_to_ceiling``…).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DISPATCH_CEILING = 1590.0  # replicas/s, bench.dispatch (docs/benchmarks.md)
VALIDATION_CEILING = 2097.0  # replicas/s, bench.validation
QUORUM = 2
# A host that got no work asks again after this many seconds (the project's RPC_DELAY_NO_WORK,
# which the hosts keep as the real client does): a project with a stream of batches sets it
# low. Before, the hosts asked again every 0.2 s whatever the reply said, and while the batch
# was split 100 idle hosts sent 500 empty requests a second that slowed the split itself.
IDLE_RPC_DELAY = 1
# A project's hosts have mostly returned valid work before, and their daily quota per app
# version has grown with it (x2 a valid result, up to DEFAULT_DAILY_QUOTA). Fresh hosts start at
# NEW_HOST_DAILY_QUOTA (10): 100 of them crunch 10 tasks each, then wait for those to validate,
# asking every IDLE_RPC_DELAY, so a fresh project measures the quota's ramp, not the stack.
# The benchmark's hosts start where an established host stands; --fresh-hosts shows the ramp.
ESTABLISHED_DAILY_QUOTA = 2000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4, help="processes the hosts are spread over")
    parser.add_argument("--tasks-per-rpc", type=int, default=10)
    parser.add_argument(
        "--fresh-hosts",
        action="store_true",
        help="hosts start at the new-host daily quota (10 tasks a day until their results validate)",
    )
    return parser.parse_args(argv)


def run_host(url: str, token: str, index: int, tasks: int, done: Any, counts: Any) -> None:
    """One simulated host: register, then ask, compute at once and report until the batch is done."""
    from tessera_client.protocol import HostKey, ProjectSession, ProtocolError, Report

    from workunits import montecarlo_pi
    from workunits.interface import Checkpoint

    with ProjectSession(url, HostKey.generate()) as session:
        session.register(
            account_token=token, name=f"sim{index}", platform="linux-x86_64", n_cpus=1, memory_bytes=8 << 30
        )
        with counts.get_lock():
            counts[2] += 1
        reports: list[Report] = []
        while not done.is_set():
            try:
                reply = session.scheduler_rpc(reports=reports, tasks=tasks)
            except (ProtocolError, OSError) as error:  # a refused or failed call: count it, try again
                with counts.get_lock():
                    counts[1] += 1
                time.sleep(0.2)
                if getattr(error, "status", 0) == 400:
                    reports = []
                continue
            reports = [
                Report(
                    replica=task["replica"],
                    status="success",
                    cpu_time=0.001,
                    output=montecarlo_pi.compute(session.fetch_input(task), Checkpoint()),
                )
                for task in reply["tasks"]
            ]
            with counts.get_lock():
                counts[0] += len(reply["acks"])
            if not reply["tasks"]:  # nothing to do yet (splitting) or any more
                time.sleep(reply["next_rpc_seconds"])  # the project's pace, as the real client keeps


def run_hosts(urls: list[str], tokens: list[str], first: int, tasks: int, done: Any, counts: Any) -> None:
    threads = [
        threading.Thread(
            target=run_host, args=(urls[i % len(urls)], tokens[i], first + i, tasks, done, counts)
        )
        for i in range(len(tokens))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_registered(counts: Any, hosts: int, timeout: float = 120.0) -> None:
    """Start the clock on established hosts: every host registered (its keys made, its row
    written) before the batch is submitted, as a project's hosts are before a batch comes."""
    deadline = time.monotonic() + timeout
    while counts[2] < hosts:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {counts[2]} of {hosts} hosts registered in {timeout:.0f} s")
        time.sleep(0.05)


def quota_settings(opts: argparse.Namespace) -> dict[str, str]:
    return {} if opts.fresh_hosts else {"NEW_HOST_DAILY_QUOTA": str(ESTABLISHED_DAILY_QUOTA)}


def run(opts: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from tessera_batches import Batches

    from tests.cluster import Cluster

    with (
        tempfile.TemporaryDirectory(prefix="tessera-throughput-") as folder,
        Cluster(Path(folder), RPC_DELAY_NO_WORK=str(IDLE_RPC_DELAY), **quota_settings(opts)) as cluster,
    ):
        tokens, scientist = cluster.open_project(
            volunteers=opts.hosts, prefix="bench", scientist="bench-scientist"
        )
        batches = Batches(cluster.webs[0].url, scientist)
        urls = [web.url for web in cluster.webs]
        done, counts = multiprocessing.Event(), multiprocessing.Array("l", [0, 0, 0])
        per = -(-opts.hosts // opts.processes)
        workers = [
            multiprocessing.Process(
                target=run_hosts, args=(urls, tokens[i : i + per], i, opts.tasks_per_rpc, done, counts)
            )
            for i in range(0, opts.hosts, per)
        ]
        for worker in workers:
            worker.start()
        try:
            wait_registered(counts, opts.hosts)
            started = time.perf_counter()
            parameters = {"seed": 1, "units": opts.units, "samples_per_unit": 1}
            batch = batches.submit(
                "montecarlo_pi",
                "throughput",
                parameters=parameters,
                min_quorum=QUORUM,
                target_nresults=QUORUM,
            )
            split_s = None
            validated: list[tuple[float, int]] = []  # (seconds since submission, units validated)
            while True:
                state = batches.get(batch["id"])
                if split_s is None and state["state"] != "splitting":
                    split_s = time.perf_counter() - started
                validated.append((time.perf_counter() - started, state["units"]["validated"]))
                if state["state"] in ("done", "cancelled"):
                    break
                time.sleep(0.25)
            seconds = time.perf_counter() - started
        finally:
            done.set()
            for worker in workers:
                worker.join(60)
        if state["state"] != "done" or state["units"]["validated"] != opts.units:
            raise SystemExit(f"the batch ended {state['state']} with {state['units']}")
    ceiling = min(DISPATCH_CEILING, VALIDATION_CEILING) / QUORUM
    units_per_s = opts.units / seconds
    return {
        "benchmark": "throughput",
        "units_per_s": round(units_per_s, 1),
        "units": opts.units,
        "hosts": opts.hosts,
        "fresh_hosts": opts.fresh_hosts,
        "quorum": QUORUM,
        "seconds": round(seconds, 2),
        "split_s": round(split_s or 0.0, 2),
        "validated_by_s": milestones(validated, opts.units),
        "replicas_reported": counts[0],
        "failed_calls": counts[1],
        "ceiling_units_per_s": ceiling,
        "ratio_to_ceiling": round(units_per_s / ceiling, 3),
    }


def milestones(validated: list[tuple[float, int]], units: int) -> dict[str, float | None]:
    """When the first unit, then 10, 50, 90, 99 and 100 % of them were seen validated: where
    the run's time goes besides the steady rate (the split before, the last units after)."""
    marks = {"first": 1, **{f"{share}%": -(-units * share // 100) for share in (10, 50, 90, 99, 100)}}
    return {
        name: next((round(seconds, 2) for seconds, count in validated if count >= needed), None)
        for name, needed in marks.items()
    }


def main(argv: list[str] | None = None) -> int:
    figures = run(parse_args(argv))
    hosts = "fresh" if figures["fresh_hosts"] else "established"
    print(f"{'units (quorum 2)':<34}{figures['units']:,}, {figures['hosts']} simulated {hosts} hosts")
    print(f"{'split (submit to running)':<34}{figures['split_s']} s")
    print(f"{'submit to assimilated':<34}{figures['seconds']} s")
    print(f"{'throughput':<34}{figures['units_per_s']:,} units/s")
    seen = ", ".join(f"{name} {seconds} s" for name, seconds in figures["validated_by_s"].items())
    print(f"{'validated by (polled every 0.25 s)':<34}{seen}")
    print(f"{'ceiling (dispatch, validation)':<34}{figures['ceiling_units_per_s']:,} units/s")
    print(f"{'ratio to the ceiling':<34}{figures['ratio_to_ceiling']}")
    print(f"{'failed calls (retried)':<34}{figures['failed_calls']}")
    print(json.dumps(figures, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
