"""BOINC benchmark: stock BOINC clients' scheduler RPCs against our own, over HTTP to gunicorn.

Run ``python -m bench.boinc`` (``--quick`` for a short run, ``--help`` for the knobs).

One database, seeded as ``bench.dispatch``'s plain fleet (``bench/dispatch_seed.py``) with a
queue of ``--units`` units held at its length by the same top-up, for one app with two
versions: the ordinary one our hosts run and its twin for BOINC clients (``runtime``
"boinc", x86-64 Linux, two signed ``BoincAppFile`` rows; ``bench/boinc_seed.py``). Each run
gets a freshly queued, analyzed table and a fresh gunicorn; all share the host count, the
batch, the gunicorn workers and the duration:

* **http**: our own clients, exactly as ``bench.dispatch``'s plain fleet: signed JSON
  scheduler RPCs that report the previous batch as successes with inline output and fetch
  the next (``bench/dispatch_hosts.py``).
* **boinc-rpc**: as many simulated stock BOINC 7.20 clients (``bench/boinc_clients.py``), one
  volunteer and account key each, their hosts made by the coordinator on their first
  request: each loop POSTs one ``<scheduler_request>`` to ``/boinc/cgi`` that reports the
  batch it holds as successes and asks for a batch's worth of ``work_req_seconds``. The
  outputs (64 bytes each) are written first where a separate upload server sharing the
  storage would write them, as BOINC projects run ``file_upload_handler`` on data servers of
  their own: the coordinator serves the scheduler requests alone. This is the headline figure.
* **boinc** (``--no-cycle`` skips it): the same clients uploading every output through the
  coordinator's own ``/boinc/file_upload_handler`` (no size query: the client asks only for
  files of 8 KiB or more) before each request: the whole cycle on one server.

The load generator runs in separate processes (threads for hosts), as in ``bench.dispatch``.
It prints a table and ends with one line of JSON (``boinc_replicas_per_s``,
``own_replicas_per_s``, ``boinc_to_own``, the cycle's figures, latencies, upload figures,
errors, duplicates); the target is ``boinc_to_own`` >= 0.7. Only its own database (the name
must contain "bench") and 127.0.0.1 are touched.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from bench.boinc_clients import ClientOptions, boinc_load_process
from bench.boinc_seed import BOINC_COLUMNS, BoincFixture, seed_boinc
from bench.cpu import children
from bench.database import admin_url, check_schema, coordinator_env, database_name, migrate, recreate_database
from bench.dispatch import problems
from bench.dispatch_run import RunResult, timed_run
from bench.dispatch_seed import SEEDED_COLUMNS, Fixture, empty_queue, fill_queue, seed_fixture
from bench.report import Table, print_json_line
from bench.server import gunicorn

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_boinc_bench"
TARGET = 0.7


@dataclass(frozen=True)
class Options:
    database_url: str
    hosts: int
    batch: int
    seconds: float
    warmup: float
    workers: int
    units: int
    procs: int
    quick: bool
    size_query: bool = False
    cycle: bool = True


def parse_args(argv: list[str] | None = None) -> Options:
    """Command-line knobs; ``--quick`` only shortens the timed phases."""
    parser = argparse.ArgumentParser(prog="python -m bench.boinc", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and re-created")
    parser.add_argument("--hosts", type=int, default=24, help="simulated hosts of each kind")
    parser.add_argument("--batch", type=int, default=20, help="replicas reported and fetched per RPC")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run (30; 8 quick)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first (5; 3 quick)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--units", type=int, default=10_000, help="queued units, held at this length")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes (hosts are threads)")
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute)")
    parser.add_argument(
        "--size-query",
        action="store_true",
        help="ask each file's size before its upload (BOINC does from 8 KiB)",
    )
    parser.add_argument(
        "--no-cycle", action="store_true", help="skip the run that uploads through the coordinator too"
    )
    args = parser.parse_args(argv)
    if min(args.hosts, args.batch, args.workers, args.procs, args.units) < 1:
        parser.error("--hosts, --batch, --workers, --procs and --units must be positive")
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
        units=args.units,
        procs=min(args.procs, args.hosts),
        quick=args.quick,
        size_query=args.size_query,
        cycle=not args.no_cycle,
    )


def boinc_env(opts: Options, workdir: Path) -> dict[str, str]:
    """The dispatch benchmark's coordinator environment, with a BOINC key and upload folder, and
    new hosts' quotas as high as the seeded hosts' (a BOINC client's host is always new here)."""
    env = coordinator_env(opts.database_url, workdir / "media", opts.batch)
    env.update(
        BOINC_KEY_FILE=str(workdir / "boinc-code-sign.pem"),
        BOINC_UPLOAD_DIR=str(workdir / "boinc-uploads"),
        NEW_HOST_DAILY_QUOTA=env["DEFAULT_DAILY_QUOTA"],
    )
    return env


def run(opts: Options) -> dict[str, Any]:
    """Seed, measure our own RPC then the BOINC clients', and return the JSON figures."""
    bench_started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-boinc-bench-"))
    (workdir / "media").mkdir()
    env = boinc_env(opts, workdir)
    print(f"# BOINC benchmark: {opts.hosts} hosts of each kind, batch {opts.batch}, {opts.workers} gunicorn")
    print(
        f"# workers, {opts.seconds:g} s measured after {opts.warmup:g} s warm-up; {opts.units:,} units queued"
    )
    modes = ("http", "boinc-rpc", "boinc") if opts.cycle else ("http", "boinc-rpc")
    results: list[RunResult] = []
    log_tail = ""
    try:
        fixture, boinc = prepare(opts, env, workdir)
        for mode in modes:
            result, log_tail = measure(opts, env, workdir, fixture, boinc, mode=mode)
            print("# " + format_row(result), flush=True)
            results.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(opts, results)
    print_summary(summary, results, log_tail)
    summary["elapsed_s"] = round(time.monotonic() - bench_started, 1)
    return summary


def prepare(opts: Options, env: dict[str, str], workdir: Path) -> tuple[Fixture, BoincFixture]:
    """A fresh, migrated database with the app's two versions, our hosts and the BOINC volunteers."""
    url = opts.database_url
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    if opts.workers + 20 > max_connections:
        raise SystemExit(f"the server allows {max_connections} connections")
    recreate_database(url)
    migrate(env)
    with psycopg.connect(url, autocommit=True) as conn:
        check_schema(conn, {**SEEDED_COLUMNS, **BOINC_COLUMNS})
        fixture = seed_fixture(conn, hosts=opts.hosts, media_root=workdir / "media")
        boinc = seed_boinc(
            conn,
            fixture,
            clients=opts.hosts,
            media_root=workdir / "media",
            key_path=Path(env["BOINC_KEY_FILE"]),
        )
    return fixture, boinc


def measure(
    opts: Options, env: dict[str, str], workdir: Path, fixture: Fixture, boinc: BoincFixture, *, mode: str
) -> tuple[RunResult, str]:
    """One run on a freshly queued, analyzed table behind a fresh gunicorn; and its log's tail."""
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        started = time.monotonic()
        empty_queue(conn)
        fill_queue(conn, app_ids=(fixture.app_id,), units=opts.units)
    print(f"# queued {opts.units:,} units in {time.monotonic() - started:.1f} s for {mode}", flush=True)
    extra: dict[str, Any] = {}
    if mode != "http":
        options = ClientOptions(
            pinned_key=boinc.public_key,
            size_query=opts.size_query,
            upload_server_root=str(workdir / "media") if mode == "boinc-rpc" else "",
        )
        extra = {
            "load_target": functools.partial(boinc_load_process, options=options),
            "hosts": boinc.clients,
        }
    log_path = workdir / f"gunicorn-{mode}.log"
    with gunicorn(env, opts.workers, log_path) as (base_url, master):
        result = timed_run(
            mode,
            target=base_url,
            opts=opts,  # type: ignore[arg-type]  (the fields timed_run reads)
            fixture=fixture,
            queue=opts.units,
            cpu_groups={"server": [master, *children(master)]},
            **extra,
        )
    return replace(result, mode=mode), log_path.read_text()[-2000:]


TABLE = Table(
    (
        ("mode", 9),
        ("replicas/s", 11),
        ("reported/s", 11),
        ("rpc/s", 7),
        ("batch", 6),
        ("p50 ms", 8),
        ("p99 ms", 8),
        ("uploads/s", 10),
        ("upl p50", 8),
        ("errors", 7),
        ("dup", 4),
        ("server", 7),
        ("db", 6),
        ("loadgen", 8),
        ("other", 6),
        ("srv ms/rep", 11),
        ("per cpu-s", 10),
    )
)


def server_ms_per_replica(result: RunResult) -> float:
    """Server CPU (gunicorn's processes) per replica dispatched, in milliseconds."""
    return 1000 * result.cpu.get("server", 0.0) / result.replicas_per_s if result.replicas_per_s else 0.0


def format_row(result: RunResult) -> str:
    """One line of the table (CPU in cores used during the measured window)."""
    cpu, extra = result.cpu, result.extra
    upload_p50 = extra.get("upload_p50_ms")
    return TABLE.row(
        [
            result.mode,
            f"{result.replicas_per_s:,.0f}",
            f"{result.reported_per_s:,.0f}",
            f"{result.rpc_per_s:,.1f}",
            f"{result.mean_batch:.1f}",
            f"{result.p50_ms:.1f}",
            f"{result.p99_ms:.1f}",
            f"{extra['uploads_per_s']:,.0f}" if "uploads_per_s" in extra else "-",
            f"{upload_p50:.1f}" if upload_p50 is not None else "-",
            str(sum(result.errors.values())),
            str(result.duplicates),
            f"{cpu.get('server', 0):.2f}",
            f"{cpu.get('db', 0):.2f}",
            f"{cpu.get('loadgen', 0):.2f}",
            f"{result.other_cores:.2f}",
            f"{server_ms_per_replica(result):.2f}",
            f"{result.replicas_per_cpu_s:,.0f}",
        ]
    )


def _ratio(one: float, other: float) -> float | None:
    return round(one / other, 3) if other else None


def summarize(opts: Options, results: list[RunResult]) -> dict[str, Any]:
    """The JSON figures: the issue's keys first, then each run's own."""
    runs = {result.mode: result for result in results}
    own, boinc, cycle = runs["http"], runs["boinc-rpc"], runs.get("boinc")
    return {
        "benchmark": "boinc",
        "boinc_replicas_per_s": round(boinc.replicas_per_s, 1),
        "own_replicas_per_s": round(own.replicas_per_s, 1),
        "boinc_to_own": _ratio(boinc.replicas_per_s, own.replicas_per_s),
        "boinc_to_own_per_cpu": _ratio(boinc.replicas_per_cpu_s, own.replicas_per_cpu_s),
        "target": TARGET,
        "boinc_p50_ms": round(boinc.p50_ms, 2),
        "boinc_p99_ms": round(boinc.p99_ms, 2),
        "own_p50_ms": round(own.p50_ms, 2),
        "own_p99_ms": round(own.p99_ms, 2),
        "boinc_server_ms_per_replica": round(server_ms_per_replica(boinc), 3),
        "own_server_ms_per_replica": round(server_ms_per_replica(own), 3),
        "cycle_replicas_per_s": round(cycle.replicas_per_s, 1) if cycle else None,
        "cycle_to_own": _ratio(cycle.replicas_per_s, own.replicas_per_s) if cycle else None,
        "cycle_server_ms_per_replica": round(server_ms_per_replica(cycle), 3) if cycle else None,
        "uploads_per_s": cycle.extra.get("uploads_per_s") if cycle else None,
        "upload_p50_ms": cycle.extra.get("upload_p50_ms") if cycle else None,
        "upload_p99_ms": cycle.extra.get("upload_p99_ms") if cycle else None,
        "errors": {mode: sum(result.errors.values()) for mode, result in runs.items()},
        "duplicate_assignments": sum(result.duplicates for result in results),
        "other_processes_cores_max": round(max(result.other_cores for result in results), 2),
        "hosts": opts.hosts,
        "batch": opts.batch,
        "gunicorn_workers": opts.workers,
        "units": opts.units,
        "seconds": opts.seconds,
        "size_query": opts.size_query,
        "cpus": os.cpu_count(),
        "runs": {mode: result.as_json() for mode, result in runs.items()},
    }


def print_summary(summary: dict[str, Any], results: list[RunResult], log_tail: str) -> None:
    """The readable part: the table again, problems, and the target."""
    print()
    print(TABLE.header())
    for result in results:
        print(format_row(result))
    print()
    for result in results:
        if found := problems(result):
            print(f"! {result.mode}: " + "; ".join(found))
    if any(r.errors for r in results) and log_tail.strip():
        print("! last lines of the last gunicorn log:\n" + log_tail)
    ratio = summary["boinc_to_own"] or 0.0
    print(
        f"BOINC clients' scheduler requests {summary['boinc_replicas_per_s']:,.0f} replicas/s "
        f"(outputs left by an upload server), our own RPC {summary['own_replicas_per_s']:,.0f}: "
        f"ratio {ratio:.3f}, target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'} "
        f"({summary['boinc_to_own_per_cpu']} per cpu-s)"
    )
    if summary["cycle_replicas_per_s"] is not None:
        print(
            f"The whole cycle, every output uploaded to the coordinator too: "
            f"{summary['cycle_replicas_per_s']:,.0f} replicas/s ({summary['uploads_per_s'] or 0:,.0f} "
            f"uploads/s), {summary['cycle_to_own']} of our own"
        )
    print(
        "(server, db, loadgen, other: CPU cores used during the measured window, of "
        f"{os.cpu_count()}; srv ms/rep: gunicorn CPU per replica dispatched; per cpu-s: replicas per "
        "second of the benchmark's own CPU)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the JSON line is the last thing printed."""
    opts = parse_args(argv)
    summary = run(opts)
    print_json_line(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
