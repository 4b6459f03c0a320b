"""Dispatch benchmark: simulated hosts over HTTP against gunicorn and PostgreSQL.

Run ``python -m bench.dispatch`` (``--quick`` for a short run, ``--help`` for the knobs).

For each queue length (10,000 then 1,000,000 units by default) it measures, each run on the
same database freshly seeded and analyzed:

* **http**: many hosts, each looping on the signed scheduler RPC through
  ``tessera_client.protocol.ProjectSession``: report the previous batch as successes with a
  small inline output, and fetch the next batch. The load generator runs in separate
  processes so that it does not share the benchmark's GIL.
* **raw**: the ceiling. The same report and claim as plain SQL through psycopg, one
  transaction per "RPC", with as many concurrent connections as there are hosts, and no
  HTTP, no Django.

The queue is held at its nominal length during every run by a few top-up connections that
add as many units as were dispatched (INSERT … SELECT every quarter second), the same in
both modes.
It prints a table and ends with one line of JSON (``replicas_per_s``, ``raw_replicas_per_s``,
``ratio_to_raw``, ``p50_ms``, ``p99_ms`` for the largest queue, then per-queue figures).

Only its own database (the name must contain "bench") and 127.0.0.1 are touched. The seed
and the queue top-up are in ``bench/dispatch_seed.py``, the simulated hosts in
``bench/dispatch_hosts.py``, one timed run in ``bench/dispatch_run.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from bench.cpu import children
from bench.database import (
    admin_url,
    check_schema,
    coordinator_env,
    database_name,
    migrate,
    recreate_database,
)
from bench.dispatch_run import RunResult, timed_run
from bench.dispatch_seed import (
    SEEDED_COLUMNS,
    Fixture,
    empty_queue,
    fill_queue,
    mix_fleet,
    plain_fleet,
    seed_fixture,
)
from bench.report import Table, print_json_line
from bench.server import gunicorn

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench"


# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    database_url: str
    hosts: int
    batch: int
    seconds: float
    warmup: float
    workers: int
    queues: tuple[int, ...]
    procs: int
    quick: bool
    mixed: bool = True


def parse_args(argv: list[str] | None = None) -> Options:
    """Command-line knobs; ``--quick`` only shortens the timed phases."""
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and re-created")
    parser.add_argument("--hosts", type=int, default=24, help="simulated hosts (= raw connections)")
    parser.add_argument("--batch", type=int, default=20, help="replicas reported and fetched per RPC")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run (30; 8 quick)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first (5; 3 quick)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--queues", default="10000,1000000", help="queued units, comma-separated")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes (hosts are threads)")
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute and a half)")
    parser.add_argument(
        "--no-mixed", action="store_true", help="skip the mixed fleet's run (platforms, plan classes, HR)"
    )
    args = parser.parse_args(argv)
    queues = tuple(int(part.replace("_", "")) for part in args.queues.split(",") if part.strip())
    if not queues or min(queues) < 1:
        parser.error("--queues needs positive unit counts")
    if args.hosts < 1 or args.batch < 1 or args.workers < 1 or args.procs < 1:
        parser.error("--hosts, --batch, --workers and --procs must be positive")
    name = database_name(args.database_url)
    if "bench" not in name:
        parser.error(f"the database {name!r} would be dropped; its name must contain 'bench'")
    return Options(
        database_url=args.database_url,
        hosts=args.hosts,
        batch=args.batch,
        seconds=args.seconds if args.seconds is not None else (8.0 if args.quick else 30.0),
        warmup=args.warmup if args.warmup is not None else (3.0 if args.quick else 5.0),
        workers=args.workers,
        queues=queues,
        procs=min(args.procs, args.hosts),
        quick=args.quick,
        mixed=not args.no_mixed,
    )


# --- the whole benchmark -------------------------------------------------------------------


def run(opts: Options) -> dict[str, Any]:
    """Seed, measure HTTP then raw for each queue length, and return the JSON figures."""
    bench_started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    media_root = workdir / "media"
    media_root.mkdir()
    env = coordinator_env(opts.database_url, media_root, opts.batch)
    print(f"# dispatch benchmark: {opts.hosts} hosts, batch {opts.batch}, {opts.workers} gunicorn workers,")
    queues = ", ".join(f"{queue:,}" for queue in opts.queues)
    print(f"# {opts.seconds:g} s measured after {opts.warmup:g} s warm-up; queues of {queues} units")
    try:
        fixture = prepare(opts, env, media_root)
        results: list[RunResult] = []
        log_tail = ""
        for queue in opts.queues:
            for mode in ("http", "mixed", "raw") if opts.mixed else ("http", "raw"):
                result, tail = measure(opts, env, workdir, fixture, queue=queue, mode=mode)
                log_tail = tail if tail is not None else log_tail
                print("# " + format_row(result), flush=True)
                results.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(opts, results)
    print_summary(summary, results, log_tail)
    summary["elapsed_s"] = round(time.monotonic() - bench_started, 1)
    return summary


def prepare(opts: Options, env: dict[str, str], media_root: Path) -> Fixture:
    """A fresh, migrated database with the app and the hosts (no units yet)."""
    url = opts.database_url
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    if opts.hosts + opts.workers + 10 > max_connections:
        raise SystemExit(f"{opts.hosts} hosts need as many connections; the server allows {max_connections}")
    recreate_database(url)
    migrate(env)
    with psycopg.connect(url, autocommit=True) as conn:
        check_schema(conn, SEEDED_COLUMNS)
        return seed_fixture(conn, hosts=opts.hosts, media_root=media_root)


def measure(
    opts: Options, env: dict[str, str], workdir: Path, fixture: Fixture, *, queue: int, mode: str
) -> tuple[RunResult, str | None]:
    """One run on a freshly queued, analyzed table; and the gunicorn log's tail after an HTTP run."""
    url = opts.database_url
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.monotonic()
        empty_queue(conn)  # first, so the fleet can change
        if mode == "mixed":
            app_ids = (fixture.app_id, mix_fleet(conn, fixture))
        else:
            plain_fleet(conn, fixture)
            app_ids = (fixture.app_id,)
        fill_queue(conn, app_ids=app_ids, units=queue)
        took = time.monotonic() - started
    print(f"# queued {queue:,} units ({2 * queue:,} replicas) in {took:.1f} s", flush=True)
    if mode == "raw":
        return timed_run("raw", target=url, opts=opts, fixture=fixture, queue=queue, cpu_groups={}), None
    log_path = workdir / "gunicorn.log"
    with gunicorn(env, opts.workers, log_path) as (base_url, master):
        result = timed_run(
            "http",
            target=base_url,
            opts=opts,
            fixture=fixture,
            queue=queue,
            cpu_groups={"server": [master, *children(master)]},
            app_ids=app_ids,
        )
    return replace(result, mode=mode), log_path.read_text()[-2000:]


TABLE = Table(
    (
        ("queue", 10),
        ("mode", 5),
        ("replicas/s", 11),
        ("reported/s", 11),
        ("rpc/s", 8),
        ("batch", 6),
        ("p50 ms", 8),
        ("p99 ms", 8),
        ("errors", 7),
        ("dup", 4),
        ("server", 7),
        ("db", 6),
        ("loadgen", 8),
        ("idle", 6),
        ("other", 6),
        ("per cpu-s", 10),
    )
)


def format_row(result: RunResult) -> str:
    """One line of the table (CPU in cores used during the measured window)."""
    cpu = result.cpu
    return TABLE.row(
        [
            f"{result.queue:,}",
            result.mode,
            f"{result.replicas_per_s:,.0f}",
            f"{result.reported_per_s:,.0f}",
            f"{result.rpc_per_s:,.1f}",
            f"{result.mean_batch:.1f}",
            f"{result.p50_ms:.1f}",
            f"{result.p99_ms:.1f}",
            str(sum(result.errors.values())),
            str(result.duplicates),
            f"{cpu.get('server', 0):.2f}",
            f"{cpu.get('db', 0):.2f}",
            f"{cpu.get('loadgen', 0):.2f}",
            f"{cpu.get('machine_idle', 0):.2f}",
            f"{result.other_cores:.2f}",
            f"{result.replicas_per_cpu_s:,.0f}",
        ]
    )


def per_queue(opts: Options, results: list[RunResult]) -> dict[str, Any]:
    """Each queue length's HTTP figures, with its raw ceiling and the ratio to it."""
    figures: dict[str, Any] = {}
    for queue in opts.queues:
        http = next(r for r in results if r.queue == queue and r.mode == "http")
        raw = next(r for r in results if r.queue == queue and r.mode == "raw")
        mixed = next((r for r in results if r.queue == queue and r.mode == "mixed"), None)
        figures[str(queue)] = {
            **http.as_json(),
            "raw_replicas_per_s": round(raw.replicas_per_s, 1),
            "ratio_to_raw": round(http.replicas_per_s / raw.replicas_per_s, 3)
            if raw.replicas_per_s
            else None,
            "raw": raw.as_json(),
        }
        if mixed is not None:
            figures[str(queue)]["mixed_replicas_per_s"] = round(mixed.replicas_per_s, 1)
            figures[str(queue)]["mixed_to_plain"] = (
                round(mixed.replicas_per_s / http.replicas_per_s, 3) if http.replicas_per_s else None
            )
            figures[str(queue)]["mixed_to_plain_per_cpu"] = (
                round(mixed.replicas_per_cpu_s / http.replicas_per_cpu_s, 3)
                if http.replicas_per_cpu_s
                else None
            )
            figures[str(queue)]["mixed"] = mixed.as_json()
    return figures


def summarize(opts: Options, results: list[RunResult]) -> dict[str, Any]:
    """The JSON figures: the largest queue's at the top (the issue's keys), then per queue."""
    queues = per_queue(opts, results)
    largest = queues[str(max(opts.queues))]
    smallest = queues[str(min(opts.queues))]
    return {
        "benchmark": "dispatch",
        "replicas_per_s": largest["replicas_per_s"],
        "reported_per_s": largest["reported_per_s"],
        "raw_replicas_per_s": largest["raw_replicas_per_s"],
        "ratio_to_raw": largest["ratio_to_raw"],
        "p50_ms": largest["p50_ms"],
        "p99_ms": largest["p99_ms"],
        "mixed_replicas_per_s": largest.get("mixed_replicas_per_s"),
        "mixed_to_plain": largest.get("mixed_to_plain"),
        "mixed_to_plain_per_cpu": largest.get("mixed_to_plain_per_cpu"),
        "queue_units": max(opts.queues),
        "largest_to_smallest_queue_rate": (
            round(largest["replicas_per_s"] / smallest["replicas_per_s"], 3)
            if smallest["replicas_per_s"]
            else None
        ),
        # The same comparison per CPU-second of this benchmark, which other load does not skew.
        "largest_to_smallest_queue_per_cpu": (
            round(largest["replicas_per_cpu_s"] / smallest["replicas_per_cpu_s"], 3)
            if smallest["replicas_per_cpu_s"]
            else None
        ),
        "other_processes_cores_max": round(max(r.other_cores for r in results), 2),
        "errors": sum(sum(r.errors.values()) for r in results),
        "duplicate_assignments": sum(r.duplicates for r in results),
        "hosts": opts.hosts,
        "batch": opts.batch,
        "gunicorn_workers": opts.workers,
        "seconds": opts.seconds,
        "cpus": os.cpu_count(),
        "per_queue": queues,
    }


def problems(result: RunResult) -> list[str]:
    """What went wrong in one run, in words (nothing when it went well)."""
    found = []
    if result.errors:
        found.append(f"errors {result.errors}")
    if result.duplicates:
        found.append(f"{result.duplicates} replicas handed out twice")
    if result.unaccounted:
        found.append(f"{result.unaccounted} replicas sent that no client saw")
    if result.topup_error:
        found.append(f"queue top-up failed: {result.topup_error}")
    if result.other_cores > 0.2:
        found.append(f"other processes took {result.other_cores:.2f} cores; compare replicas per cpu-s")
    return found


def print_summary(summary: dict[str, Any], results: list[RunResult], log_tail: str) -> None:
    """The readable part: the table again, per-queue ratios, problems, and the targets."""
    print()
    print(TABLE.header())
    for result in results:
        print(format_row(result))
    print()
    for queue, figures in summary["per_queue"].items():
        print(
            f"queue {int(queue):>9,}: {figures['replicas_per_s']:>8,.0f} replicas/s over HTTP, "
            f"{figures['raw_replicas_per_s']:>8,.0f} raw, ratio {figures['ratio_to_raw']:.3f}"
        )
    for result in results:
        if found := problems(result):
            print(f"! {result.mode} at {result.queue:,}: " + "; ".join(found))
    if any(r.errors for r in results if r.mode == "http") and log_tail.strip():
        print("! last lines of the gunicorn log:\n" + log_tail)
    for queue, figures in summary["per_queue"].items():
        if figures.get("mixed_to_plain") is not None:
            print(
                f"queue {int(queue):>9,}: mixed fleet {figures['mixed_replicas_per_s']:>8,.0f} replicas/s, "
                f"{figures['mixed_to_plain']:.3f} of the plain fleet's rate "
                f"({figures['mixed_to_plain_per_cpu']:.3f} per cpu-s; target >= 0.85)"
            )
    rate, ratio = summary["replicas_per_s"], summary["ratio_to_raw"] or 0.0
    print(
        f"targets: >= 1,000 replicas/s: {'met' if rate >= 1000 else 'NOT met'} ({rate:,.0f}); "
        f"ratio to raw >= 0.15: {'met' if ratio >= 0.15 else 'NOT met'} ({ratio:.3f}); "
        f"largest queue / smallest: {summary['largest_to_smallest_queue_rate']} in rate, "
        f"{summary['largest_to_smallest_queue_per_cpu']} per cpu-s"
    )
    print(
        "(server, db, loadgen, idle, other: CPU cores used during the measured window, of "
        f"{os.cpu_count()}; db is this database's backends and the server's own processes, other is "
        "everything else on the machine; per cpu-s: replicas per second of the benchmark's own CPU)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the JSON line is the last thing printed."""
    opts = parse_args(argv)
    summary = run(opts)
    print_json_line(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
