"""Validation benchmark: replicas validated and credited per second by one validator on PostgreSQL.

Run ``python -m bench.validation`` (``--quick`` for a short run, ``--help`` for the knobs).

It seeds its own database with N units (20,000 by default), each with two replicas already
reported as successes with agreeing inline outputs (a bitwise app), from M hosts of M
volunteers, half of the volunteers in teams, every unit marked ``need_validate``. Then, each
on the same database freshly re-seeded and analyzed:

* **validator**: one process, one thread, calling
  ``coordinator.validation.services.validate_due_units`` until no unit is left: the
  coordinator's own code, through Django's ORM.
* **raw**: the ceiling. The same row updates in plain SQL through psycopg, per chunk of the
  same size in one transaction: lock the units, read their successes, update replicas and
  units, chain the ledger entries (``tessera_client.ledger.entry_hash``) under the ledger
  head's lock, add credit and RAC to volunteers, teams and hosts, credit per day, and the
  hosts' reputation; no Django.

After each run it checks that every replica is valid, the ledger holds exactly one entry
per replica, the chain links and hashes, and the totals equal the ledger's sums (it fails
loudly otherwise), and that both runs wrote the same rows. With ``--profile`` (the
default for a full run) it then profiles one more validator run with cProfile and counts
the statements of each chunk from ``connection.queries``.

It prints a table and ends with one line of JSON (``validated_per_s``, ``raw_per_s``,
``ratio_to_raw``, ``units``, ``chunk``, ``seconds``, …). Only its own database (the name
must contain "bench_validation") on 127.0.0.1 is touched. The seed is in
``bench/validation_seed.py``, the timed runs in ``bench/validation_runs.py`` (the raw SQL in
``bench/validation_raw.py``), the checks in ``bench/validation_checks.py`` and the profile in
``bench/validation_profile.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.database import coordinator_env, database_name, migrate, recreate_database, setup_django
from bench.report import Table, print_json_line
from bench.validation_checks import FINGERPRINTS, CheckFailed, verify
from bench.validation_profile import Profile, print_profile, profile_validator
from bench.validation_raw import DAILY_QUOTA_CAP
from bench.validation_runs import RunResult, run_raw, run_validator
from bench.validation_seed import seed

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench_validation"
TARGET_PER_S = 2000.0
WAIT_FOR_DISPATCH_S = 600.0

# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    database_url: str
    units: int
    hosts: int
    teams: int
    chunk: int
    rounds: int
    profile: bool
    profile_units: int
    quick: bool
    wait: float


def parse_args(argv: list[str] | None = None) -> Options:
    """Command-line knobs; ``--quick`` runs fewer units and skips the profile."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.validation", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and re-created")
    parser.add_argument("--units", type=int, default=None, help="units of 2 replicas (20,000; 5,000 quick)")
    parser.add_argument("--hosts", type=int, default=200, help="hosts, each its own volunteer")
    parser.add_argument(
        "--teams", type=int, default=None, help="teams (hosts / 20); half the volunteers join one"
    )
    parser.add_argument("--chunk", type=int, default=200, help="units per transaction (validate_due_units')")
    parser.add_argument("--rounds", type=int, default=1, help="validator + raw runs, alternating")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile one more validator run (default: on, off with --quick)",
    )
    parser.add_argument(
        "--profile-units", type=int, default=5000, help="units of the profiled runs (at most --units)"
    )
    parser.add_argument(
        "--wait", type=float, default=WAIT_FOR_DISPATCH_S, help="seconds to wait for bench.dispatch to end"
    )
    parser.add_argument("--quick", action="store_true", help="5,000 units, no profile: about half a minute")
    args = parser.parse_args(argv)
    units = args.units if args.units is not None else (5000 if args.quick else 20000)
    if units < 1 or args.hosts < 2 or args.chunk < 1 or args.rounds < 1:
        parser.error("--units, --chunk and --rounds must be positive, --hosts at least 2")
    teams = args.teams if args.teams is not None else max(1, args.hosts // 20)
    if teams < 0:
        parser.error("--teams must not be negative")
    parts = urlsplit(args.database_url)
    if "bench_validation" not in parts.path.lstrip("/"):
        parser.error("the database is dropped and re-created: its name must contain 'bench_validation'")
    if parts.hostname != "127.0.0.1":
        parser.error("the benchmark only talks to a PostgreSQL server on 127.0.0.1")
    return Options(
        database_url=args.database_url,
        units=units,
        hosts=args.hosts,
        teams=teams,
        chunk=args.chunk,
        rounds=args.rounds,
        profile=args.profile if args.profile is not None else not args.quick,
        profile_units=max(1, min(units, args.profile_units)),
        quick=args.quick,
        wait=max(0.0, args.wait),
    )


# --- the whole benchmark -------------------------------------------------------------------


TABLE = Table(
    (
        ("mode", 9),
        ("units", 8),
        ("replicas", 9),
        ("seconds", 8),
        ("replicas/s", 11),
        ("ms/chunk", 9),
        ("python", 7),
        ("db", 6),
        ("idle", 6),
    )
)


def format_row(result: RunResult) -> str:
    """One line of the table (CPU in cores used during the run)."""
    cpu = result.cpu
    return TABLE.row(
        [
            result.mode,
            f"{result.units:,}",
            f"{result.replicas:,}",
            f"{result.seconds:.2f}",
            f"{result.per_s:,.0f}",
            f"{1000 * result.seconds / result.chunks:.1f}",
            f"{cpu['python']:.2f}",
            f"{cpu['db']:.2f}",
            f"{cpu['machine_idle']:.2f}",
        ]
    )


def summarize(opts: Options, results: list[RunResult], profile: Profile | None) -> dict[str, Any]:
    """The JSON figures: medians over the rounds (one round: its figures)."""
    validator = [r for r in results if r.mode == "validator"]
    raw = [r for r in results if r.mode == "raw"]
    validated = statistics.median(r.per_s for r in validator)
    raw_rate = statistics.median(r.per_s for r in raw)
    summary: dict[str, Any] = {
        "benchmark": "validation",
        "validated_per_s": round(validated, 1),
        "raw_per_s": round(raw_rate, 1),
        "ratio_to_raw": round(validated / raw_rate, 3) if raw_rate else None,
        "units": opts.units,
        "replicas": validator[0].replicas,
        "chunk": opts.chunk,
        "seconds": round(statistics.median(r.seconds for r in validator), 3),
        "raw_seconds": round(statistics.median(r.seconds for r in raw), 3),
        "target_per_s": TARGET_PER_S,
        "target_met": validated >= TARGET_PER_S,
        "hosts": opts.hosts,
        "volunteers": opts.hosts,
        "teams": opts.teams,
        "rounds": opts.rounds,
        "checks": "passed",
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "validator": validator[len(validator) // 2].as_json(),
        "raw": raw[len(raw) // 2].as_json(),
        "per_round": [
            {"validator": round(v.per_s, 1), "raw": round(r.per_s, 1)}
            for v, r in zip(validator, raw, strict=True)
        ],
    }
    if profile is not None:
        summary["profile"] = {
            "statements_per_chunk": round(profile.statements_per_chunk, 1),
            "sql_kb_per_chunk": round(profile.sql_kb_per_chunk, 1),
            "ms_per_chunk": round(profile.chunk_ms, 1),
            "sql_and_commit_ms_per_chunk": round(profile.sql_ms_per_chunk, 1),
            "profiled_units": profile.units,
            "shares": {label.strip(): round(share, 3) for label, _, share, _ in profile.probes},
        }
    return summary


def print_summary(summary: dict[str, Any], results: list[RunResult]) -> None:
    """The readable part: the table again, the rates against the target, CPU per chunk."""
    print()
    print(TABLE.header())
    for result in results:
        print(format_row(result))
    rate, raw, ratio = summary["validated_per_s"], summary["raw_per_s"], summary["ratio_to_raw"]
    print()
    print(
        f"validated and credited: {rate:,.0f} replicas/s; raw SQL: {raw:,.0f} replicas/s; ratio {ratio:.3f}"
    )
    print(
        f"target: >= {TARGET_PER_S:,.0f} replicas/s: {'met' if summary['target_met'] else 'NOT met'} "
        f"({rate:,.0f})"
    )
    for result in results:
        per_chunk = result.seconds / result.chunks if result.chunks else 0.0
        print(
            f"{result.mode}: {1000 * per_chunk:.0f} ms a chunk of {2 * summary['chunk']} replicas;"
            f" CPU per chunk: Python {1000 * result.cpu['python'] * per_chunk:.0f} ms,"
            f" database backend {1000 * result.cpu['db'] * per_chunk:.0f} ms"
        )
    print(
        "(python, db: CPU cores used during the run by this process and by its database backend; "
        f"idle: the machine's idle cores, of {os.cpu_count()})"
    )


def run(opts: Options) -> dict[str, Any]:
    """Create and migrate the database, then seed and time validator and raw runs, and profile."""
    bench_started = time.monotonic()
    url = opts.database_url
    print(
        f"# validation benchmark: {opts.units:,} units of 2 replicas, {opts.hosts} hosts and volunteers,"
        f" {opts.teams} teams, chunks of {opts.chunk} units, {opts.rounds} round(s)",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-validation-"))
    try:
        env = coordinator_env(url, workdir, batch=100)
        env["DEFAULT_DAILY_QUOTA"] = str(DAILY_QUOTA_CAP)
        recreate_database(url)
        migrate(env)
        setup_django(env)
        results = run_rounds(opts)
        profile = profile_validator(opts) if opts.profile else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if profile is not None:
        print_profile(profile, opts)
    summary = summarize(opts, results, profile)
    print_summary(summary, results)
    summary["elapsed_s"] = round(time.monotonic() - bench_started, 1)
    summary["database"] = database_name(url)
    return summary


def run_rounds(opts: Options) -> list[RunResult]:
    """Validator and raw runs, alternating, each on a fresh seed, checked; all must write alike."""
    results: list[RunResult] = []
    fingerprints: list[dict[str, Any]] = []
    for round_number in range(opts.rounds):
        for runner in (run_validator, run_raw):
            seeded = seed(opts.database_url, opts)
            print(
                f"# round {round_number + 1}: seeded {seeded.units:,} units and "
                f"{seeded.replicas:,} replicas in {seeded.seconds:.1f} s",
                flush=True,
            )
            result = runner(opts, seeded)
            result.checks = verify(opts.database_url, seeded, result.mode)
            fingerprints.append(result.checks)
            results.append(result)
            print("# " + format_row(result) + "  (checks passed)", flush=True)
    for name in FINGERPRINTS:
        if len({f["fingerprints"][name] for f in fingerprints}) != 1:
            raise CheckFailed(f"CHECK FAILED: the runs wrote different {name}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the JSON line is the last thing printed."""
    opts = parse_args(argv)
    summary = run(opts)
    print_json_line(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
