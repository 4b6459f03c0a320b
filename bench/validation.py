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
must contain "bench_validation") on 127.0.0.1 is touched.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import math
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from tessera_client.ledger import GENESIS_HASH, entry_hash

from bench.dispatch import (
    _machine_cpu,
    _proc_cpu,
    check_schema,
    coordinator_env,
    database_name,
    migrate,
    recreate_database,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench_validation"
TARGET_PER_S = 2000.0
FPOPS_ESTIMATE = 1e12  # per unit: about 2.3 credits on the reference machine
DAILY_QUOTA_CAP = 2000  # DEFAULT_DAILY_QUOTA for the coordinator, and the raw run's cap
SEED_DAILY_QUOTA = 100  # what each host starts with (valid results double it up to the cap)
OUTPUT_BYTES = 64
DELAY_BOUND = 7 * 24 * 3600
WAIT_FOR_DISPATCH_S = 600.0
MICRO = Decimal("0.000001")

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


# --- seeding -------------------------------------------------------------------------------

# The columns the seeding SQL below fills, per table; a NOT NULL column without a default
# that is not here fails loudly before seeding rather than mid-insert.
SEEDED_COLUMNS = {
    "work_app": {"name", "title", "created"},
    "work_appversion": {
        "app_id",
        "version",
        "platform",
        "bundle",
        "bundle_sha256",
        "bundle_size",
        "signature",
        "max_output_bytes",
        "created",
    },
    "accounts_team": {"name", "created"},
    "auth_user": {
        "password",
        "is_superuser",
        "username",
        "first_name",
        "last_name",
        "email",
        "is_staff",
        "is_active",
        "date_joined",
    },
    "accounts_volunteer": {"user_id", "created"},
    "accounts_host": {
        "volunteer_id",
        "public_key",
        "name",
        "platform",
        "n_cpus",
        "memory_bytes",
        "flops",
        "created",
        "daily_quota",
    },
    "work_workunit": {
        "app_id",
        "name",
        "input_inline",
        "input_file",
        "input_sha256",
        "input_size",
        "min_quorum",
        "target_nresults",
        "max_error_results",
        "max_total_results",
        "delay_bound",
        "priority",
        "memory_bytes",
        "fpops_estimate",
        "state",
        "failure_reason",
        "need_validate",
        "created",
    },
    "work_replica": {
        "workunit_id",
        "state",
        "outcome",
        "validate_state",
        "priority",
        "output_sha256",
        "output_file",
        "uploaded_sha256",
        "message",
        "created",
    },
    "validation_ledgerhead": {"id", "seq", "hash"},
}
# What a validation pass writes; emptied (with everything above) before each run.
TRUNCATED = (
    "auth_user",
    "accounts_team",
    "work_app",
    "validation_ledgerhead",
    "validation_ledgerentry",
    "validation_ledgerseal",
    "validation_creditday",
    "validation_hostappreputation",
)
ANALYZED = (
    "work_workunit",
    "work_replica",
    "accounts_volunteer",
    "accounts_host",
    "accounts_team",
    "auth_user",
    "validation_ledgerentry",
    "validation_ledgerhead",
    "validation_creditday",
    "validation_hostappreputation",
)


SEED_PEOPLE = """
INSERT INTO accounts_team (name, created)
SELECT 'bench-team-' || t, now() FROM generate_series(1, %(teams)s) t;
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                       date_joined)
SELECT '!', false, 'bench-volunteer-' || i, '', '', '', false, true, now()
FROM generate_series(1, %(hosts)s) i;
-- Every other volunteer joins a team, round robin.
INSERT INTO accounts_volunteer (user_id, team_id, created)
SELECT u.id, CASE WHEN %(teams)s > 0 AND u.n %% 2 = 0
                  THEN (SELECT id FROM accounts_team ORDER BY id OFFSET (u.n / 2) %% greatest(%(teams)s, 1)
                        LIMIT 1) END, now()
FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM auth_user) AS u;
-- One host per volunteer; speeds of 1 to 4 GFLOPS so that the replicas' claims differ.
INSERT INTO accounts_host (volunteer_id, public_key, name, platform, n_cpus, memory_bytes, flops, created,
                           daily_quota)
SELECT v.user_id, encode(sha256(convert_to('bench-host-' || v.n, 'UTF8')), 'base64'), 'bench-host-' || v.n,
       'linux-x86_64', 4, 8589934592, 1e9 * (1 + v.n %% 4), now(), %(quota)s
FROM (SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS n FROM accounts_volunteer) AS v;
INSERT INTO validation_ledgerhead (id, seq, hash) VALUES (1, 0, %(genesis)s);
"""

SEED_UNITS = f"""
INSERT INTO work_workunit (
    app_id, batch_id, name, input_inline, input_file, input_sha256, input_size, min_quorum,
    target_nresults, max_error_results, max_total_results, delay_bound, priority, memory_bytes,
    fpops_estimate, state, failure_reason, transition_time, need_validate, canonical_replica_id, created)
SELECT %(app)s, NULL, 'bench-validation-' || i, data, '', encode(sha256(data), 'hex'), octet_length(data),
       2, 2, 3, 6, {DELAY_BOUND}, 0, 0, {FPOPS_ESTIMATE}, 'active', '', NULL, true, NULL,
       now() - interval '2 hours'
FROM generate_series(1, %(units)s) AS i,
     LATERAL (SELECT convert_to(rpad('input ' || i || ' ', 100, '.'), 'UTF8') AS data) AS d
"""

# Two successes per unit from two hosts of different volunteers (a = k mod M, b = a plus an
# offset in 1..M-1 that turns with k), the same output for both, CPU times that vary with
# the replica so that each unit's grant is the lower of two different claims.
SEED_REPLICAS = f"""
WITH h AS (
    SELECT array_agg(id ORDER BY id) AS ids, array_agg(volunteer_id ORDER BY id) AS vols,
           array_agg(flops ORDER BY id) AS flops, count(*)::int AS m
    FROM accounts_host
), u AS (
    SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM work_workunit
), pick AS (
    SELECT u.id AS unit, u.k, copy,
           CASE WHEN copy = 0 THEN u.k %% h.m
                ELSE (u.k %% h.m + 1 + (u.k / h.m) %% (h.m - 1)) %% h.m END + 1 AS slot,
           convert_to(rpad('result ' || u.id || ' ', {OUTPUT_BYTES}, '.'), 'UTF8') AS output
    FROM u CROSS JOIN h CROSS JOIN generate_series(0, 1) AS copy
)
INSERT INTO work_replica (
    workunit_id, state, outcome, validate_state, priority, host_id, volunteer_id, app_version_id,
    sent_at, deadline, received_at, output_sha256, output_size, output_inline, output_file,
    uploaded_sha256, cpu_time, exit_code, message, created)
SELECT p.unit, 'over', 'success', 'init', 0, h.ids[p.slot], h.vols[p.slot], %(version)s,
       now() - interval '2 hours', now() - interval '2 hours' + interval '{DELAY_BOUND} seconds',
       now() - interval '1 hour' + (p.copy || ' seconds')::interval,
       encode(sha256(p.output), 'hex'), octet_length(p.output), p.output, '', '',
       {FPOPS_ESTIMATE} / h.flops[p.slot] * (0.9 + ((p.k * 2 + p.copy) * 7919 %% 1000) / 5000.0), 0, '',
       now() - interval '2 hours'
FROM pick AS p CROSS JOIN h
ORDER BY p.unit, p.copy
"""


@dataclass(frozen=True)
class Seeded:
    units: int
    replicas: int
    seconds: float


def seed(url: str, opts: Options) -> Seeded:
    """Empty every table a pass writes and seed people, units and replicas in plain SQL.

    Identities restart, so every run sees the same ids and the same values. VACUUM ANALYZE
    leaves fresh statistics, and a CHECKPOINT keeps the seed's writes out of the timed run.
    """
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        check_schema(conn, SEEDED_COLUMNS)
        tables = sql.SQL(", ").join(sql.Identifier(t) for t in TRUNCATED)
        with conn.transaction():
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(tables))
            params = {
                "hosts": opts.hosts,
                "teams": opts.teams,
                "quota": SEED_DAILY_QUOTA,
                "genesis": GENESIS_HASH,
            }
            with conn.cursor() as cur:
                for statement in SEED_PEOPLE.split(";\n"):
                    if statement.strip():
                        cur.execute(statement, params)
            app_id = conn.execute(
                "INSERT INTO work_app (name, title, created) VALUES ('bench-validation', "
                "'Validation benchmark', now()) RETURNING id"
            ).fetchone()[0]
            version_id = conn.execute(
                "INSERT INTO work_appversion (app_id, version, platform, bundle, bundle_sha256, bundle_size,"
                " signature, max_output_bytes, created) VALUES (%s, 1, 'any', 'bundles/bench-validation.zip',"
                " %s, 0, '', 1048576, now()) RETURNING id",
                (app_id, hashlib.sha256(b"").hexdigest()),
            ).fetchone()[0]
            conn.execute(SEED_UNITS, {"app": app_id, "units": opts.units})
            replicas = conn.execute(SEED_REPLICAS, {"version": version_id}).rowcount
        for table in ANALYZED:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")
    return Seeded(units=opts.units, replicas=replicas, seconds=time.monotonic() - started)


# --- sharing the machine -------------------------------------------------------------------


def _ancestors() -> set[int]:
    """This process and its parents: a shell that started us may mention bench.dispatch."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                pid = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def dispatch_running() -> list[int]:
    """Pids of a running ``bench.dispatch`` (``pgrep -f``), not counting ourselves."""
    try:
        out = subprocess.run(
            ["pgrep", "-f", "bench.dispatch"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    mine = _ancestors()
    return [int(pid) for pid in out.split() if pid.isdigit() and int(pid) not in mine]


def wait_for_quiet_machine(limit: float) -> float:
    """Wait (up to ``limit`` seconds) until no dispatch benchmark shares the 2 cores; returns the wait."""
    started = time.monotonic()
    announced = False
    while (pids := dispatch_running()) and time.monotonic() - started < limit:
        if not announced:
            print(f"# waiting for bench.dispatch (pids {pids}) to finish, up to {limit:.0f} s", flush=True)
            announced = True
        time.sleep(5.0)
    if pids:
        print(f"# ! bench.dispatch still running after {limit:.0f} s: timing anyway", flush=True)
    return time.monotonic() - started


# --- CPU accounting ------------------------------------------------------------------------


@dataclass
class Cpu:
    """CPU seconds of this process, of the database backend serving it, and of the machine."""

    python: float
    backend: float
    machine: tuple[float, float, float]

    @staticmethod
    def sample(backend_pid: int) -> Cpu:
        return Cpu(time.process_time(), _proc_cpu(backend_pid), _machine_cpu())

    def cores_until(self, later: Cpu, seconds: float) -> dict[str, float]:
        _, idle, steal = (a - b for a, b in zip(later.machine, self.machine, strict=True))
        return {
            "python": (later.python - self.python) / seconds,
            "db": (later.backend - self.backend) / seconds,
            "machine_idle": idle / seconds,
            "steal": steal / seconds,
        }


@dataclass
class RunResult:
    mode: str
    units: int
    replicas: int
    seconds: float
    chunks: int
    cpu: dict[str, float]
    waited_s: float
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.replicas / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "replicas_per_s": round(self.per_s, 1),
            "units_per_s": round(self.units / self.seconds, 1) if self.seconds else None,
            "seconds": round(self.seconds, 3),
            "chunks": self.chunks,
            "ms_per_chunk": round(1000 * self.seconds / self.chunks, 2) if self.chunks else None,
            "cpu_cores": {name: round(value, 2) for name, value in self.cpu.items()},
            # CPU per replica: what each side costs, whatever else runs on the machine.
            "cpu_us_per_replica": {
                name: round(1e6 * self.cpu[name] * self.seconds / self.replicas, 1)
                for name in ("python", "db")
            },
            "waited_for_dispatch_s": round(self.waited_s, 1),
        }


# --- the validator run ---------------------------------------------------------------------


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process for the benchmark's database (before any model import)."""
    os.environ.update(env)
    import django

    django.setup()


def django_backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def run_validator(opts: Options, seeded: Seeded) -> RunResult:
    """One validator, one thread: validate_due_units until no unit is left, timed.

    ``validate_due_units`` does at most ``max_chunks`` chunks per call (one sweep); calls
    are repeated, a bounded number of times, as the periodic sweep would.
    """
    from django.utils import timezone

    from coordinator.validation import services

    pid = django_backend_pid()  # connects before the clock starts
    waited = wait_for_quiet_machine(opts.wait)
    judged, calls = 0, 0
    before = Cpu.sample(pid)
    started = time.perf_counter()
    while judged < seeded.units and calls < math.ceil(seeded.units / opts.chunk) + 5:
        done = services.validate_due_units(now=timezone.now(), chunk=opts.chunk)
        calls += 1
        judged += done
        if done == 0:
            break
    seconds = time.perf_counter() - started
    after = Cpu.sample(pid)
    if judged != seeded.units:
        raise SystemExit(f"the validator judged {judged} units of {seeded.units} in {calls} calls")
    return RunResult(
        mode="validator",
        units=judged,
        replicas=seeded.replicas,
        seconds=seconds,
        chunks=math.ceil(judged / opts.chunk),
        cpu=before.cores_until(after, seconds),
        waited_s=waited,
    )


# --- the raw ceiling -----------------------------------------------------------------------

RAW_DUE = "SELECT id FROM work_workunit WHERE need_validate ORDER BY id LIMIT %s"
RAW_LOCK_UNITS = """
SELECT u.id, u.fpops_estimate, u.min_quorum FROM work_workunit AS u
WHERE u.id = ANY(%s) AND u.need_validate ORDER BY u.id FOR UPDATE SKIP LOCKED
"""
RAW_SUCCESSES = """
SELECT r.id, r.workunit_id, r.host_id, r.volunteer_id, r.output_sha256, r.cpu_time, h.flops, r.app_version_id
FROM work_replica AS r JOIN accounts_host AS h ON h.id = r.host_id
WHERE r.workunit_id = ANY(%s) AND r.outcome = 'success' AND r.validate_state <> 'invalid'
ORDER BY r.received_at, r.id
"""
RAW_REPLICAS = """
UPDATE work_replica AS r SET validate_state = 'valid', claimed_credit = v.claimed, granted_credit = v.granted
FROM unnest(%s::bigint[], %s::float8[], %s::numeric[]) AS v(id, claimed, granted) WHERE r.id = v.id
"""
RAW_UNITS = """
UPDATE work_workunit AS u
SET state = 'done', need_validate = false, transition_time = %s, canonical_replica_id = v.canonical,
    granted_credit = v.granted
FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[]) AS v(id, canonical, granted) WHERE u.id = v.id
"""
RAW_HEAD = "SELECT seq, hash FROM validation_ledgerhead WHERE id = 1 FOR UPDATE"
RAW_LEDGER = """
INSERT INTO validation_ledgerentry (seq, volunteer_id, host_id, replica_id, unit_id, credit, granted_at,
                                    prev_hash, hash)
SELECT e.seq, e.volunteer, e.host, e.replica, e.unit, e.credit, %s, e.prev, e.hash
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[],
            %s::text[], %s::text[]) AS e(seq, volunteer, host, replica, unit, credit, prev, hash)
"""
RAW_HEAD_UPDATE = "UPDATE validation_ledgerhead SET seq = %s, hash = %s WHERE id = 1"
RAW_LOCK_VOLUNTEERS = """
SELECT user_id, team_id, rac, rac_time FROM accounts_volunteer
WHERE user_id = ANY(%s) ORDER BY user_id FOR UPDATE
"""
RAW_LOCK_TEAMS = "SELECT id, rac, rac_time FROM accounts_team WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
RAW_LOCK_HOSTS = """
SELECT id, rac, rac_time, daily_quota FROM accounts_host WHERE id = ANY(%s) ORDER BY id FOR UPDATE
"""
# Each host's quota on the app version: made at its starting quota, doubled per valid result
# up to the cap (reputation.quota_after), as standing.record_events does.
RAW_QUOTAS_MADE = """
INSERT INTO validation_hostappversion (host_id, app_version_id, daily_quota, quota_used)
SELECT v.host, %s, v.start, 0 FROM unnest(%s::bigint[], %s::bigint[]) AS v(host, start)
ON CONFLICT (host_id, app_version_id) DO NOTHING
"""
RAW_QUOTAS = """
UPDATE validation_hostappversion AS q
SET daily_quota = least(%s::float8, q.daily_quota * power(2::float8, v.n))::bigint
FROM unnest(%s::bigint[], %s::int[]) AS v(host, n)
WHERE q.host_id = v.host AND q.app_version_id = %s
"""
RAW_CREDIT = """
UPDATE {table} AS t
SET total_credit = t.total_credit + v.amount, rac = v.rac, rac_time = %s, rac_rank = v.rank
FROM unnest(%s::bigint[], %s::numeric[], %s::float8[], %s::float8[]) AS v(id, amount, rac, rank)
WHERE t.{key} = v.id
"""
# The seeded hosts are new and of different volunteers: each valid result was agreed by an
# unrelated host that is not established (Event.VALID_INDEPENDENT), which counts toward
# becoming established, not toward trust (consecutive_valid stays).
RAW_HOSTS = """
UPDATE accounts_host AS t
SET total_credit = t.total_credit + v.amount, rac = v.rac, rac_time = %s, rac_rank = v.rank,
    valid_count = t.valid_count + v.valid, independent_valid = t.independent_valid + v.valid
FROM unnest(%s::bigint[], %s::numeric[], %s::float8[], %s::float8[], %s::int[])
     AS v(id, amount, rac, rank, valid)
WHERE t.id = v.id
"""
RAW_CREDIT_DAYS = """
INSERT INTO validation_creditday (volunteer_id, day, credit)
SELECT v.id, %s, v.amount FROM unnest(%s::bigint[], %s::numeric[]) AS v(id, amount)
ON CONFLICT (volunteer_id, day) DO UPDATE SET credit = validation_creditday.credit + excluded.credit
"""
# Only valid events happen here: each adds one to the run and the count, and decays the
# error rate by (1 - weight), exactly what reputation.after does for Event.VALID.
RAW_REPUTATION = """
INSERT INTO validation_hostappreputation AS r (host_id, app_id, consecutive_valid, valid, invalid, errors,
                                               error_rate)
SELECT v.host, v.app, 0, v.n, 0, 0, 0.0
FROM unnest(%s::bigint[], %s::bigint[], %s::int[]) AS v(host, app, n)
ON CONFLICT (host_id, app_id) DO UPDATE
SET valid = r.valid + excluded.valid, error_rate = r.error_rate * power(%s::float8, excluded.valid)
"""


def _stamp(moment: datetime) -> str:
    """A time as the ledger's chain spells it (coordinator.validation.ledger.stamp)."""
    return moment.astimezone(UTC).isoformat()


def _entry_fields(
    seq: int, volunteer: int, host: int, replica: int, unit: int, amount: Decimal, at: str
) -> dict[str, Any]:
    return {
        "seq": seq,
        "volunteer": volunteer,
        "host": host,
        "replica": replica,
        "unit": unit,
        "credit": f"{amount:.6f}",
        "granted_at": at,
    }


def _with_rac(
    rows: list[tuple[Any, ...]], amounts: dict[int, Decimal], now: datetime
) -> tuple[list[int], list[Decimal], list[float], list[float]]:
    """(ids, amounts, new RAC, new rank) for locked rows whose first columns are id, rac, rac_time."""
    from coordinator.validation import credit  # pure arithmetic: no ORM, no settings

    ids, added, racs, ranks = [], [], [], []
    for row_id, rac, rac_time, *_ in rows:
        amount = amounts[row_id]
        new_rac = credit.rac_after_grant(rac, rac_time, float(amount), now)
        ids.append(row_id)
        added.append(amount)
        racs.append(new_rac)
        ranks.append(credit.rac_rank_key(new_rac, now))
    return ids, added, racs, ranks


def raw_chunk(cur: psycopg.Cursor, chunk: int, app_id: int, now: datetime) -> int:
    """One chunk of validation in plain SQL, in the caller's transaction; returns units judged.

    It writes what ``services.validate_units`` writes for units whose two outputs agree (the
    only case the benchmark seeds; anything else is refused): the validator's locks in its
    order (units, ledger head, volunteers, teams, hosts, quotas), one statement per table.
    """
    from coordinator.validation import credit
    from coordinator.validation.reputation import ERROR_RATE_WEIGHT

    ids = [row[0] for row in cur.execute(RAW_DUE, (chunk,)).fetchall()]
    if not ids:
        return 0
    units = cur.execute(RAW_LOCK_UNITS, (ids,)).fetchall()
    if not units:
        return 0
    by_unit: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in cur.execute(RAW_SUCCESSES, ([u[0] for u in units],)).fetchall():
        by_unit[row[1]].append(row)

    replica_ids, claims_out, grants_out = [], [], []
    unit_ids, canonicals, unit_grants = [], [], []
    grants: list[tuple[int, int, int, int, Decimal]] = []  # volunteer, host, replica, unit, credit
    for unit_id, fpops, quorum in units:
        replicas = by_unit[unit_id]
        groups = Counter(r[4] for r in replicas)
        if not groups or len(groups) != 1 or len(replicas) < quorum:
            raise SystemExit(f"raw: unit {unit_id} is not a unit of agreeing successes")
        claims = [
            credit.claimed_credit(fpops_estimate=fpops, host_flops=r[6], cpu_time=r[5] or 0.0)
            for r in replicas
        ]
        cap = credit.grant_cap(fpops_estimate=fpops, credit_ratio=1.0)  # no vouched history here
        granted = Decimal(min(credit.granted_credit(claims), cap)).quantize(MICRO, ROUND_DOWN)
        unit_ids.append(unit_id)
        canonicals.append(replicas[0][0])  # the earliest of the (one) agreeing group
        unit_grants.append(granted)
        for replica, claim in zip(replicas, claims, strict=True):
            replica_ids.append(replica[0])
            claims_out.append(claim)
            grants_out.append(granted)
            grants.append((replica[3], replica[2], replica[0], unit_id, granted))

    cur.execute(RAW_REPLICAS, (replica_ids, claims_out, grants_out))
    cur.execute(RAW_UNITS, (now, unit_ids, canonicals, unit_grants))

    seq, prev = cur.execute(RAW_HEAD).fetchone()
    at = _stamp(now)
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
    for volunteer, host, replica, unit, amount in grants:
        seq += 1
        digest = entry_hash(_entry_fields(seq, volunteer, host, replica, unit, amount, at), prev)
        for column, value in zip(
            columns, (seq, volunteer, host, replica, unit, amount, prev, digest), strict=True
        ):
            column.append(value)
        prev = digest
    cur.execute(RAW_LEDGER, (now, *columns))
    cur.execute(RAW_HEAD_UPDATE, (seq, prev))

    by_volunteer: dict[int, Decimal] = defaultdict(Decimal)
    by_host: dict[int, Decimal] = defaultdict(Decimal)
    valid_by_host: Counter[int] = Counter()
    for volunteer, host, _, _, amount in grants:
        by_volunteer[volunteer] += amount
        by_host[host] += amount
        valid_by_host[host] += 1
    volunteers = cur.execute(RAW_LOCK_VOLUNTEERS, (sorted(by_volunteer),)).fetchall()
    by_team: dict[int, Decimal] = defaultdict(Decimal)
    for volunteer_id, team_id, *_ in volunteers:
        if team_id is not None:
            by_team[team_id] += by_volunteer[volunteer_id]
    rows = [(v[0], v[2], v[3]) for v in volunteers]
    cur.execute(
        sql.SQL(RAW_CREDIT).format(table=sql.Identifier("accounts_volunteer"), key=sql.Identifier("user_id")),
        (now, *_with_rac(rows, by_volunteer, now)),
    )
    if by_team:
        teams = cur.execute(RAW_LOCK_TEAMS, (sorted(by_team),)).fetchall()
        cur.execute(
            sql.SQL(RAW_CREDIT).format(table=sql.Identifier("accounts_team"), key=sql.Identifier("id")),
            (now, *_with_rac(teams, by_team, now)),
        )
    hosts = cur.execute(RAW_LOCK_HOSTS, (sorted(by_host),)).fetchall()
    host_ids = [h[0] for h in hosts]
    valid = [valid_by_host[h] for h in host_ids]
    version_id = by_unit[units[0][0]][0][7]
    cur.execute(RAW_QUOTAS_MADE, (version_id, host_ids, [h[3] for h in hosts]))
    cur.execute(RAW_QUOTAS, (DAILY_QUOTA_CAP, host_ids, valid, version_id))
    cur.execute(RAW_HOSTS, (now, *_with_rac(hosts, by_host, now), valid))
    cur.execute(RAW_CREDIT_DAYS, (now.date(), list(by_volunteer), list(by_volunteer.values())))
    cur.execute(
        RAW_REPUTATION,
        (host_ids, [app_id] * len(host_ids), [valid_by_host[h] for h in host_ids], 1 - ERROR_RATE_WEIGHT),
    )
    return len(units)


def run_raw(opts: Options, seeded: Seeded) -> RunResult:
    """The ceiling: raw_chunk in one transaction per chunk, until no unit is left, timed."""
    with psycopg.connect(opts.database_url) as conn:
        app_id = conn.execute("SELECT id FROM work_app WHERE name = 'bench-validation'").fetchone()[0]
        conn.commit()
        waited = wait_for_quiet_machine(opts.wait)
        pid = conn.info.backend_pid
        judged, chunks = 0, 0
        before = Cpu.sample(pid)
        started = time.perf_counter()
        for _ in range(math.ceil(seeded.units / opts.chunk) + 5):
            with conn.transaction(), conn.cursor() as cur:
                done = raw_chunk(cur, opts.chunk, app_id, datetime.now(UTC))
            if done == 0:
                break
            judged += done
            chunks += 1
        seconds = time.perf_counter() - started
        after = Cpu.sample(pid)
    if judged != seeded.units:
        raise SystemExit(f"the raw run judged {judged} units of {seeded.units}")
    return RunResult(
        mode="raw",
        units=judged,
        replicas=seeded.replicas,
        seconds=seconds,
        chunks=chunks,
        cpu=before.cores_until(after, seconds),
        waited_s=waited,
    )


# --- checks --------------------------------------------------------------------------------


class CheckFailed(SystemExit):
    """A run left the database in a state the validator must never leave it in."""


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(f"CHECK FAILED: {what}")


def verify(url: str, seeded: Seeded, label: str) -> dict[str, Any]:
    """Check the run's result in plain SQL, independently of the code that wrote it.

    Every replica valid with its credit, every unit done, one ledger entry per replica whose
    fields match it, seq 1..n, each entry's prev is the entry before's hash and its hash is
    entry_hash of its fields, the head is the last entry, and the totals of volunteers, hosts,
    teams and credit days equal the ledger's sums. Returns a fingerprint of the grants.
    """
    n = seeded.replicas
    with psycopg.connect(url, autocommit=True) as conn:
        bad_replicas, replicas = conn.execute(
            "SELECT count(*) FILTER (WHERE validate_state <> 'valid' OR claimed_credit IS NULL"
            " OR granted_credit IS NULL), count(*) FROM work_replica"
        ).fetchone()
        _expect(
            replicas == n and bad_replicas == 0, f"{label}: {bad_replicas} of {replicas} replicas not valid"
        )
        bad_units = conn.execute(
            "SELECT count(*) FROM work_workunit u WHERE u.state <> 'done' OR u.need_validate"
            " OR u.canonical_replica_id IS NULL OR u.granted_credit IS NULL OR EXISTS (SELECT 1 FROM"
            " work_replica r WHERE r.workunit_id = u.id AND r.granted_credit <> u.granted_credit)"
            " OR NOT EXISTS (SELECT 1 FROM work_replica r WHERE r.id = u.canonical_replica_id"
            " AND r.workunit_id = u.id)"
        ).fetchone()[0]
        _expect(bad_units == 0, f"{label}: {bad_units} units not done with a canonical replica and a grant")
        entries, distinct, low, high, mismatched = conn.execute(
            "SELECT count(*), count(DISTINCT e.replica_id), min(e.seq), max(e.seq),"
            " count(*) FILTER (WHERE r.id IS NULL OR e.credit <> r.granted_credit OR e.host_id <> r.host_id"
            " OR e.volunteer_id <> r.volunteer_id OR e.unit_id <> r.workunit_id)"
            " FROM validation_ledgerentry e LEFT JOIN work_replica r ON r.id = e.replica_id"
        ).fetchone()
        _expect(entries == n, f"{label}: {entries} ledger entries for {n} replicas")
        _expect(distinct == n, f"{label}: {n - distinct} replicas credited more than once")
        _expect((low, high) == (1, n), f"{label}: ledger seq runs {low}..{high}, not 1..{n}")
        _expect(mismatched == 0, f"{label}: {mismatched} ledger entries disagree with their replica")

        prev, last_seq = GENESIS_HASH, 0
        with conn.transaction(), conn.cursor(name="chain") as cur:
            cur.execute(
                "SELECT seq, volunteer_id, host_id, replica_id, unit_id, credit, granted_at, prev_hash, hash"
                " FROM validation_ledgerentry ORDER BY seq"
            )
            for seq, volunteer, host, replica, unit, amount, at, prev_hash, digest in cur:
                _expect(seq == last_seq + 1, f"{label}: ledger seq {seq} after {last_seq}")
                _expect(prev_hash == prev, f"{label}: entry {seq} does not link to the one before")
                fields = _entry_fields(seq, volunteer, host, replica, unit, amount, _stamp(at))
                _expect(entry_hash(fields, prev) == digest, f"{label}: entry {seq}'s hash is not its fields'")
                prev, last_seq = digest, seq
        head = conn.execute("SELECT seq, hash FROM validation_ledgerhead WHERE id = 1").fetchone()
        _expect(head == (last_seq, prev), f"{label}: the ledger head {head} is not the last entry")

        for table, key, ledger_key, what in (
            ("accounts_volunteer", "user_id", "volunteer_id", "volunteer"),
            ("accounts_host", "id", "host_id", "host"),
        ):
            off = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {t} x LEFT JOIN (SELECT {lk} AS id, sum(credit) AS s"
                    " FROM validation_ledgerentry GROUP BY {lk}) l ON l.id = x.{k}"
                    " WHERE x.total_credit <> coalesce(l.s, 0)"
                ).format(t=sql.Identifier(table), k=sql.Identifier(key), lk=sql.Identifier(ledger_key))
            ).fetchone()[0]
            _expect(off == 0, f"{label}: {off} {what} totals differ from the ledger's sums")
        off_teams = conn.execute(
            "SELECT count(*) FROM accounts_team t LEFT JOIN (SELECT v.team_id, sum(e.credit) AS s"
            " FROM validation_ledgerentry e JOIN accounts_volunteer v ON v.user_id = e.volunteer_id"
            " GROUP BY v.team_id) l ON l.team_id = t.id WHERE t.total_credit <> coalesce(l.s, 0)"
        ).fetchone()[0]
        _expect(off_teams == 0, f"{label}: {off_teams} team totals differ from their members' ledger sums")
        off_days = conn.execute(
            "SELECT count(*) FROM (SELECT volunteer_id, sum(credit) AS s FROM validation_creditday"
            " GROUP BY volunteer_id) d FULL JOIN (SELECT volunteer_id, sum(credit) AS s"
            " FROM validation_ledgerentry GROUP BY volunteer_id) l USING (volunteer_id)"
            " WHERE d.s IS DISTINCT FROM l.s"
        ).fetchone()[0]
        _expect(off_days == 0, f"{label}: {off_days} volunteers' credit per day differs from the ledger")
        off_counts = conn.execute(
            "SELECT count(*) FROM accounts_host h WHERE h.valid_count <> (SELECT count(*) FROM work_replica r"
            " WHERE r.host_id = h.id) OR (SELECT coalesce(sum(valid), 0) FROM validation_hostappreputation a"
            " WHERE a.host_id = h.id) <> h.valid_count"
        ).fetchone()[0]
        _expect(off_counts == 0, f"{label}: {off_counts} hosts' valid counts differ from their replicas")
        total = conn.execute("SELECT sum(credit) FROM validation_ledgerentry").fetchone()[0]
        # What both runs must have written alike (RAC and times aside, which move with the clock).
        prints = {
            name: conn.execute(
                sql.SQL(
                    "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (SELECT {} AS x FROM {}) AS s"
                ).format(sql.SQL(row), sql.Identifier(table))
            ).fetchone()[0]
            for name, (table, row) in FINGERPRINTS.items()
        }
    return {"ledger_entries": entries, "credit_total": str(total), "fingerprints": prints}


# (table, row text): rows of what a validation pass writes, compared between the runs.
FINGERPRINTS = {
    "replicas": (
        "work_replica",
        "concat_ws(':', id, validate_state, granted_credit, claimed_credit::numeric(20, 9))",
    ),
    "units": (
        "work_workunit",
        "concat_ws(':', id, state, need_validate, canonical_replica_id, granted_credit)",
    ),
    "volunteers": ("accounts_volunteer", "concat_ws(':', user_id, total_credit)"),
    "teams": ("accounts_team", "concat_ws(':', id, total_credit)"),
    "hosts": (
        "accounts_host",
        "concat_ws(':', id, total_credit, valid_count, invalid_count, error_count, consecutive_valid,"
        " daily_quota, independent_valid)",
    ),
    "quotas": ("validation_hostappversion", "concat_ws(':', host_id, app_version_id, daily_quota)"),
    "credit_days": ("validation_creditday", "concat_ws(':', volunteer_id, day, credit)"),
    "reputations": (
        "validation_hostappreputation",
        "concat_ws(':', host_id, app_id, consecutive_valid, valid, invalid, errors, error_rate)",
    ),
    "ledger": (
        "validation_ledgerentry",
        "concat_ws(':', seq, volunteer_id, host_id, replica_id, unit_id, credit)",
    ),
}


# --- profiling -----------------------------------------------------------------------------

# (label, "module:qualname"): the cumulative time of these functions, found by their code
# objects (so two functions of one name in one file are told apart).
PROBES = [
    ("validate_due_units", "coordinator.validation.services:validate_due_units"),
    ("  units_awaiting_validation (SELECT ids)", "coordinator.validation.services:units_awaiting_validation"),
    ("  validate_units (one transaction per chunk)", "coordinator.validation.services:validate_units"),
    ("    _judge_unit (quorum, claims; pure Python)", "coordinator.validation.services:_judge_unit"),
    ("    ledger.append", "coordinator.validation.ledger:append"),
    ("      entry_hash (JSON + SHA-256)", "tessera_client.ledger:entry_hash"),
    ("    standing.add_credit", "coordinator.validation.standing:add_credit"),
    ("      _credit_rows (SELECT FOR UPDATE + RAC)", "coordinator.validation.standing:_credit_rows"),
    ("      _add_credit_days", "coordinator.validation.standing:_add_credit_days"),
    ("    standing.record_events", "coordinator.validation.standing:record_events"),
    ("QuerySet.bulk_update (9 calls a chunk)", "django.db.models.query:QuerySet.bulk_update"),
    ("  When(pk=…, then=…) objects built", "django.db.models.expressions:When.__init__"),
    ("  QuerySet.update (resolve, compile, run)", "django.db.models.query:QuerySet.update"),
    (
        "    resolve the CASE WHEN (add_update_values)",
        "django.db.models.sql.subqueries:UpdateQuery.add_update_values",
    ),
    (
        "    compile the UPDATE (SQLUpdateCompiler.as_sql)",
        "django.db.models.sql.compiler:SQLUpdateCompiler.as_sql",
    ),
    ("QuerySet.bulk_create (ledger, reputation)", "django.db.models.query:QuerySet.bulk_create"),
    ("QuerySet._fetch_all (SELECTs, model instances)", "django.db.models.query:QuerySet._fetch_all"),
    ("  Model.__init__", "django.db.models.base:Model.__init__"),
    ("psycopg Cursor.execute (all statements)", "psycopg.cursor:Cursor.execute"),
    ("COMMIT", "django.db.backends.base.base:BaseDatabaseWrapper.commit"),
]


def _code_key(target: str) -> tuple[str, int, str] | None:
    """pstats' key (file, first line, name) of the function at ``module:qualname``."""
    import importlib
    import inspect

    module_name, _, qualname = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        code = inspect.unwrap(obj).__code__
    except (ImportError, AttributeError):
        return None
    return code.co_filename, code.co_firstlineno, code.co_name


def probe_table(stats: pstats.Stats, total: float) -> list[tuple[str, float, float, int]]:
    """(label, seconds, share of the profiled total, calls) per probe, from cumulative times."""
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for label, target in PROBES:
        key = _code_key(target)
        _, calls, _, cumulative, _ = table.get(key, (0, 0, 0.0, 0.0, {})) if key else (0, 0, 0.0, 0.0, {})
        rows.append((label, cumulative, cumulative / total if total else 0.0, calls))
    return rows


def top_functions(stats: pstats.Stats, count: int = 15) -> list[tuple[str, float, int]]:
    """The functions with the most own time: (where, seconds, calls)."""
    rows = []
    for (filename, line, funcname), (_, ncalls, tt, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = re.sub(r"^.*/(site-packages|main)/", "", filename)
        rows.append((f"{short}:{line}({funcname})", tt, ncalls))
    rows.sort(key=lambda row: row[1], reverse=True)
    return rows[:count]


_TABLE = re.compile(r'(?:FROM|UPDATE|INTO)\s+"([a-z_]+)"', re.IGNORECASE)


def statement_kind(text: str) -> str:
    """A short name for a statement: its verb and first table, and FOR UPDATE when it locks."""
    words = text.lstrip().split(None, 1)
    verb = words[0].upper() if words else "?"
    match = _TABLE.search(text)
    table = match.group(1) if match else ""
    lock = " FOR UPDATE" if "FOR UPDATE" in text.upper() else ""
    if verb == "UPDATE" and re.search(r"\bCASE WHEN\b", text):
        verb = "UPDATE … CASE WHEN"
    if verb == "INSERT" and "ON CONFLICT" in text.upper():
        verb = "INSERT … ON CONFLICT"
    if verb == "INSERT" and re.search(r"\bUNNEST\(", text, re.IGNORECASE):
        verb = "INSERT … SELECT FROM UNNEST"
    return f"{verb} {table}{lock}".strip()


@dataclass
class Profile:
    seconds: float  # the profiled run's wall time (cProfile inflates it)
    probes: list[tuple[str, float, float, int]]
    top: list[tuple[str, float, int]]
    chunks: int
    statements_per_chunk: float  # from connection.queries, BEGIN and COMMIT not counted
    sql_kb_per_chunk: float
    statements: list[tuple[str, float, float, float]]  # kind, per chunk, ms per chunk, KB per chunk
    sql_ms_per_chunk: float  # statements as the execute wrapper times them, and BEGIN/COMMIT
    chunk_ms: float  # median wall time of a chunk, query logging on
    units: int


def profile_validator(opts: Options) -> Profile:
    """cProfile around validate_due_units on a fresh seed, then statements per chunk on another.

    The second run drives validate_units chunk by chunk with Django's connection.queries on
    (CaptureQueriesContext) and times every statement with an execute wrapper, so the SQL
    time of a chunk splits from the Python time around it.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from coordinator.validation import services

    opts = replace(opts, units=opts.profile_units)
    seeded = seed(opts.database_url, opts)
    django_backend_pid()
    wait_for_quiet_machine(opts.wait)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    judged = 0
    for _ in range(math.ceil(seeded.units / opts.chunk) + 5):
        profiler.enable()
        done = services.validate_due_units(now=timezone.now(), chunk=opts.chunk)
        profiler.disable()
        judged += done
        if done == 0 or judged >= seeded.units:
            break
    seconds = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    key = _code_key("coordinator.validation.services:validate_due_units")
    total = stats.stats[key][3] if key in stats.stats else seconds  # type: ignore[attr-defined]
    verify(opts.database_url, seeded, "profiled validator")

    seeded = seed(opts.database_url, opts)
    django_backend_pid()
    wait_for_quiet_machine(opts.wait)
    timings: list[tuple[str, float]] = []

    def timed(execute: Callable[..., Any], text: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(text, params, many, context)
        finally:
            timings.append((text, time.perf_counter() - began))

    counts: list[int] = []
    sizes: list[int] = []
    chunk_times: list[float] = []
    kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for _ in range(math.ceil(seeded.units / opts.chunk) + 5):
        timings.clear()
        began = time.perf_counter()
        with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(timed):
            ids = services.units_awaiting_validation(limit=opts.chunk)
            done = services.validate_units(unit_ids=ids, now=timezone.now()) if ids else 0
        if not done:
            break
        chunk_times.append(1000 * (time.perf_counter() - began))
        # Django logs BEGIN and COMMIT among the queries (with their time), not through the wrapper.
        control = [q for q in captured.captured_queries if q["sql"] in ("BEGIN", "COMMIT")]
        counts.append(len(captured.captured_queries) - len(control))
        sizes.append(sum(len(q["sql"]) for q in captured.captured_queries))
        timings.extend((q["sql"], float(q["time"])) for q in control)
        for text, took in timings:
            kind = kinds[statement_kind(text)]
            kind[0] += 1
            kind[1] += took
            kind[2] += len(text)
    verify(opts.database_url, seeded, "statement-counting validator")
    chunks = len(counts)
    statements = sorted(
        ((kind, n / chunks, 1000 * t / chunks, size / chunks / 1024) for kind, (n, t, size) in kinds.items()),
        key=lambda row: row[2],
        reverse=True,
    )
    return Profile(
        seconds=seconds,
        probes=probe_table(stats, total),
        top=top_functions(stats),
        chunks=chunks,
        statements_per_chunk=statistics.mean(counts),
        sql_kb_per_chunk=statistics.mean(sizes) / 1024,
        statements=statements,
        sql_ms_per_chunk=sum(row[2] for row in statements),
        chunk_ms=statistics.median(chunk_times),
        units=seeded.units,
    )


def print_profile(profile: Profile, opts: Options) -> None:
    print()
    print(
        f"# cProfile of validate_due_units over {profile.units:,} units ({profile.seconds:.1f} s under the"
        " profiler; shares of its cumulative time):"
    )
    for label, seconds, share, calls in profile.probes:
        print(f"  {label:<58} {seconds:>8.2f} s {100 * share:>6.1f} %  {calls:>9,} calls")
    print("# most own time:")
    for where, seconds, calls in profile.top:
        print(f"  {seconds:>7.2f} s {calls:>10,}  {where}")
    print(
        f"# statements per chunk of {opts.chunk} units ({2 * opts.chunk} replicas), from connection.queries:"
        f" {profile.statements_per_chunk:.1f} and BEGIN/COMMIT, {profile.sql_kb_per_chunk:.0f} KB of SQL"
        " as logged"
    )
    for kind, per_chunk, ms, kb in profile.statements:
        print(f"  {per_chunk:>5.1f} x {kind:<52} {ms:>7.1f} ms {kb:>7.1f} KB")
    print(
        f"# per chunk: {profile.chunk_ms:.0f} ms wall (median, query logging on), of which statements and"
        f" COMMIT {profile.sql_ms_per_chunk:.0f} ms"
    )


# --- the whole benchmark -------------------------------------------------------------------


def format_row(result: RunResult) -> str:
    cpu = result.cpu
    cells = [
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
    return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))


COLUMNS = [
    ("mode", 9),
    ("units", 8),
    ("replicas", 9),
    ("seconds", 8),
    ("replicas/s", 11),
    ("ms/chunk", 9),
    ("python", 7),
    ("db", 6),
    ("idle", 6),
]


def format_header() -> str:
    return "  ".join(name.rjust(width) for name, width in COLUMNS)


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
    print()
    print(format_header())
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
        results: list[RunResult] = []
        fingerprints: list[dict[str, Any]] = []
        for round_number in range(opts.rounds):
            for runner in (run_validator, run_raw):
                seeded = seed(url, opts)
                print(
                    f"# round {round_number + 1}: seeded {seeded.units:,} units and "
                    f"{seeded.replicas:,} replicas in {seeded.seconds:.1f} s",
                    flush=True,
                )
                result = runner(opts, seeded)
                result.checks = verify(url, seeded, result.mode)
                fingerprints.append(result.checks)
                results.append(result)
                print("# " + format_row(result) + "  (checks passed)", flush=True)
        for name in FINGERPRINTS:
            if len({f["fingerprints"][name] for f in fingerprints}) != 1:
                raise CheckFailed(f"CHECK FAILED: the runs wrote different {name}")
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


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    summary = run(opts)
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
