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

Only its own database (the name must contain "bench") and 127.0.0.1 are touched.
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import hashlib
import io
import json
import multiprocessing as mp
import os
import queue as queue_module
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from nacl.signing import SigningKey
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
WSGI_APP = "coordinator.wsgi"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench"
WORK_TABLES = ("work_workunit", "work_replica")
INPUT_BYTES = 100  # each unit's inline input; it travels base64 in the scheduler reply
OUTPUT_BYTES = 64  # each report's inline output; it travels base64 in the request
DELAY_BOUND = 7 * 24 * 3600
TOPUP_INTERVAL = 0.25
RPC_TIMEOUT = 15.0
ERROR_STREAK_LIMIT = 3  # after this many failed RPCs in a row a host forgets what it held


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
    args = parser.parse_args(argv)
    queues = tuple(int(part.replace("_", "")) for part in args.queues.split(",") if part.strip())
    if not queues or min(queues) < 1:
        parser.error("--queues needs positive unit counts")
    if args.hosts < 1 or args.batch < 1 or args.workers < 1 or args.procs < 1:
        parser.error("--hosts, --batch, --workers and --procs must be positive")
    name = urlsplit(args.database_url).path.lstrip("/")
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
    )


# --- the database --------------------------------------------------------------------------


def database_name(url: str) -> str:
    """The database a URL names: the one thing this benchmark may drop."""
    return urlsplit(url).path.lstrip("/")


def admin_url(url: str) -> str:
    """The ``postgres`` maintenance database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def recreate_database(url: str) -> None:
    """Drop and create the benchmark's own database; any other name is refused."""
    name = database_name(url)
    if "bench" not in name:
        raise SystemExit(f"refusing to drop {name!r}: a benchmark database's name contains 'bench'")
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def coordinator_env(url: str, media_root: Path, batch: int) -> dict[str, str]:
    """The environment the coordinator runs with: this database, no broker, quiet logs."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        BROKER_URL="memory://",
        DEBUG="0",
        LOG_LEVEL="WARNING",
        SECRET_KEY="tessera-bench-" + os.urandom(16).hex(),
        MEDIA_ROOT=str(media_root),
        DEFAULT_DAILY_QUOTA=str(10**9),
        FORWARDED_ALLOW_IPS="127.0.0.1",
        MAX_TASKS_PER_RPC=str(max(100, batch)),
        DJANGO_SETTINGS_MODULE="coordinator.settings",
    )
    return env


def migrate(env: dict[str, str]) -> None:
    """The schema comes from the coordinator's own migrations, never from this file."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=300,
    )


# The columns the seeding SQL below fills, per table; check_schema() compares them with the
# migrated schema so that a new NOT NULL column fails loudly here rather than mid-insert.
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
        "batch_id",
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
        "transition_time",
        "need_validate",
        "canonical_replica_id",
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
}


def check_schema(conn: psycopg.Connection, seeded: dict[str, set[str]] = SEEDED_COLUMNS) -> None:
    """Refuse to seed if the migrations added a NOT NULL column without a default we do not fill."""
    rows = conn.execute(
        """
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = ANY(%s) AND is_nullable = 'NO'
          AND column_default IS NULL AND is_identity = 'NO' AND is_generated = 'NEVER'
        """,
        (list(seeded),),
    ).fetchall()
    missing = sorted(f"{table}.{column}" for table, column in rows if column not in seeded[table])
    if missing:
        raise SystemExit(f"the schema has NOT NULL columns the benchmark does not fill: {', '.join(missing)}")


@dataclass(frozen=True)
class BenchHost:
    host_id: int
    volunteer_id: int
    seed: bytes  # the Ed25519 private key seed; the public key is in the database


@dataclass(frozen=True)
class Fixture:
    app_id: int
    app_version_id: int
    hosts: list[BenchHost]


def make_bundle() -> bytes:
    """A small but real app bundle: a zip with a manifest and a compute script."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps({"name": "bench", "version": 1, "entry": "compute.py"}))
        archive.writestr(
            "compute.py", "import sys\nsys.stdout.buffer.write(b'ok ' + sys.stdin.buffer.read())\n"
        )
    return buffer.getvalue()


def seed_fixture(conn: psycopg.Connection, *, hosts: int, media_root: Path) -> Fixture:
    """One app, one signed app version, and hosts with real keys, each its own volunteer.

    One volunteer per host, because a unit's replicas never go to two hosts of one volunteer:
    shared volunteers would starve each other of units in a benchmark this dense.
    """
    code_key = SigningKey.generate()
    bundle = make_bundle()
    bundle_name = "bundles/bench-1-any.zip"
    (media_root / "bundles").mkdir(parents=True, exist_ok=True)
    (media_root / bundle_name).write_bytes(bundle)
    signature = base64.b64encode(code_key.sign(bundle).signature).decode()
    with conn.transaction():
        app_id = conn.execute(
            "INSERT INTO work_app (name, title, created) VALUES ('bench', 'Dispatch benchmark', now()) "
            "RETURNING id"
        ).fetchone()[0]
        version_id = conn.execute(
            "INSERT INTO work_appversion (app_id, version, platform, bundle, bundle_sha256, bundle_size,"
            " signature, max_output_bytes, created) VALUES (%s, 1, 'any', %s, %s, %s, %s, %s, now())"
            " RETURNING id",
            (app_id, bundle_name, hashlib.sha256(bundle).hexdigest(), len(bundle), signature, 1 << 20),
        ).fetchone()[0]
        made: list[BenchHost] = []
        for index in range(hosts):
            key = SigningKey.generate()
            public_key = base64.b64encode(bytes(key.verify_key)).decode()
            user_id = conn.execute(
                "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
                " is_staff, is_active, date_joined) VALUES (%s, false, %s, '', '', '', false, true, now())"
                " RETURNING id",
                ("!" + os.urandom(20).hex(), f"bench-volunteer-{index}"),
            ).fetchone()[0]
            conn.execute("INSERT INTO accounts_volunteer (user_id, created) VALUES (%s, now())", (user_id,))
            host_id = conn.execute(
                "INSERT INTO accounts_host (volunteer_id, public_key, name, platform, n_cpus, memory_bytes,"
                " flops, created, daily_quota) VALUES (%s, %s, %s, 'linux-x86_64', 4, %s, 1e9,"
                " now(), %s) RETURNING id",
                (user_id, public_key, f"bench-host-{index}", 8 << 30, 10**9),
            ).fetchone()[0]
            made.append(BenchHost(host_id=host_id, volunteer_id=user_id, seed=bytes(key)))
    return Fixture(app_id=app_id, app_version_id=version_id, hosts=made)


# Units with an inline input of INPUT_BYTES and its real SHA-256, and two unsent replicas each;
# every NOT NULL column is given, and the values satisfy the schema's check constraints. The
# replicas are written in dispatch order, as the coordinator's transitioner writes them.
INSERT_UNITS = f"""
WITH units AS (
    INSERT INTO work_workunit (
        app_id, batch_id, name, input_inline, input_file, input_sha256, input_size,
        min_quorum, target_nresults, max_error_results, max_total_results, delay_bound,
        priority, memory_bytes, fpops_estimate, state, failure_reason, transition_time,
        need_validate, canonical_replica_id, created)
    SELECT %(app)s, NULL, 'bench-' || i, data, '', encode(sha256(data), 'hex'), octet_length(data),
           2, 2, 3, 6, {DELAY_BOUND}, 0, 0, 1e12, 'active', '', NULL, false, NULL, now()
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i,
         LATERAL (SELECT convert_to(rpad('input ' || i || ' ', {INPUT_BYTES}, '.'), 'UTF8') AS data) AS d
    RETURNING id
)
INSERT INTO work_replica (
    workunit_id, state, outcome, validate_state, priority, output_sha256, output_file,
    uploaded_sha256, message, created, dispatch_key)
SELECT units.id, 'unsent', 'init', 'init', 0, '', '', '', '', now(),
       ((units.id / 2048) << 32) | floor(random() * 4294967296)::bigint AS dispatch_key
FROM units CROSS JOIN generate_series(1, 2) AS copy
ORDER BY dispatch_key
"""


def _droppable_indexes(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(drop, create) statements for the work tables' secondary indexes and unique constraints.

    Read from the catalog, so whatever the migrations made is rebuilt exactly; primary keys
    and indexes a foreign key depends on stay.
    """
    rows = conn.execute(
        """
        SELECT t.relname, ic.relname, pg_get_indexdef(i.indexrelid), c.conname, pg_get_constraintdef(c.oid)
        FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_class ic ON ic.oid = i.indexrelid
        LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('u', 'x')
        WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
        ORDER BY t.relname, ic.relname
        """,
        (list(WORK_TABLES),),
    ).fetchall()
    statements = []
    for table, index, indexdef, constraint, constraintdef in rows:
        if constraint:
            drop = sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(constraint)
            )
            create = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                sql.Identifier(table), sql.Identifier(constraint)
            ) + sql.SQL(constraintdef)
        else:
            drop = sql.SQL("DROP INDEX {}").format(sql.Identifier(index))
            create = sql.SQL(indexdef)
        statements.append((table, drop, create))
    return statements


def seed_queue(conn: psycopg.Connection, *, app_id: int, units: int) -> float:
    """Empty the work tables and queue ``units`` units of two unsent replicas; returns seconds.

    A million units go in with the secondary indexes dropped and rebuilt from the catalog and
    with the deferred foreign-key checks off (the rows reference the one app by construction):
    that is 15 s instead of a minute. VACUUM ANALYZE leaves fresh statistics and a visibility
    map, as a long-lived queue would have, and a CHECKPOINT flushes the seed's writes.
    """
    started = time.monotonic()
    conn.execute("TRUNCATE work_replica, work_workunit, accounts_hostnonce RESTART IDENTITY CASCADE")
    conn.execute("UPDATE accounts_host SET last_contact = NULL")
    conn.execute("DELETE FROM validation_hostappversion")
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        conn.execute("SET LOCAL session_replication_role = replica")
        rebuild = _droppable_indexes(conn) if units >= 50_000 else []
        for _, drop, _ in rebuild:
            conn.execute(drop)
        conn.execute(INSERT_UNITS, {"app": app_id, "first": 1, "last": units})
        for _, _, create in rebuild:
            conn.execute(create)
    vacuum(conn)
    # The seed's WAL would otherwise trigger a checkpoint that writes during the timed run.
    conn.execute("CHECKPOINT")
    return time.monotonic() - started


def vacuum(conn: psycopg.Connection) -> None:
    """Clear the dead tuples a run leaves at the head of the dispatch index (autovacuum may be off)."""
    for table in WORK_TABLES:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def replicas_sent(conn: psycopg.Connection) -> int:
    """Replicas ever sent, to check the clients' count against."""
    return int(conn.execute("SELECT count(*) FROM work_replica WHERE state <> 'unsent'").fetchone()[0])


class QueueTopUp:
    """Holds the queue at its length: adds as many units' replicas as were dispatched.

    It runs in both modes alike, so its cost (INSERT … SELECT as often as every quarter
    second) is shared by the HTTP run and its raw ceiling. A few inserting connections work
    side by side, or one connection among two dozen busy ones falls behind the raw run.
    Foreign keys are not checked for its rows (they reference the one app by construction).
    """

    def __init__(
        self, url: str, *, app_id: int, next_unit: int, dispatched: Any, connections: int = 4
    ) -> None:
        self.url = url
        self.app_id = app_id
        self.next_unit = next_unit
        self.dispatched = dispatched
        self.added_replicas = 0  # committed
        self.reserved_replicas = 0  # being inserted or committed
        self.largest_deficit = 0  # replicas: how far below its length the queue fell
        self.slowest_insert = 0.0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._run, name=f"queue-top-up-{i}", daemon=True)
            for i in range(connections)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _take(self) -> tuple[int, int] | None:
        """The next range of unit numbers to insert, or None when the queue is full."""
        with self.lock:
            deficit = self.dispatched.value - self.added_replicas
            self.largest_deficit = max(self.largest_deficit, deficit)
            units = (self.dispatched.value - self.reserved_replicas) // 2
            if units < 1:
                return None
            first = self.next_unit
            self.next_unit += units
            self.reserved_replicas += 2 * units
            return first, first + units - 1

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("SET session_replication_role = replica")
                while not self.stopping.wait(TOPUP_INTERVAL):
                    while not self.stopping.is_set() and (span := self._take()) is not None:
                        started = time.monotonic()
                        conn.execute(INSERT_UNITS, {"app": self.app_id, "first": span[0], "last": span[1]})
                        with self.lock:
                            self.slowest_insert = max(self.slowest_insert, time.monotonic() - started)
                            deficit = self.dispatched.value - self.added_replicas
                            self.largest_deficit = max(self.largest_deficit, deficit)
                            self.added_replicas += 2 * (span[1] - span[0] + 1)
        except BaseException as error:  # reported by the caller; the run goes on without top-up
            self.error = error

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            if thread.ident is not None:
                thread.join(timeout=30)


# --- CPU accounting from /proc -------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def _postgres_pids(dbname: str) -> list[int]:
    """This database's backends and the server's background processes (WAL writer, …).

    Backends of other databases on a shared server are left out.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                title = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if not title.startswith("postgres"):
            continue
        parts = title.split(": ", 2)
        if len(parts) < 3:
            continue  # the postmaster itself
        words = parts[2].split()
        is_backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
        if not is_backend or words[1] == dbname:
            pids.append(int(entry))
    return pids


def _machine_cpu() -> tuple[float, float, float]:
    """(busy, idle, steal) CPU seconds of the whole machine, all cores."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICKS, (idle + iowait) / TICKS, steal / TICKS


@dataclass
class CpuSample:
    groups: dict[str, dict[int, float]]
    machine: tuple[float, float, float]


def cpu_sample(groups: dict[str, list[int]]) -> CpuSample:
    """CPU seconds so far of each group of processes and of the machine."""
    return CpuSample(
        {name: {pid: _proc_cpu(pid) for pid in pids} for name, pids in groups.items()}, _machine_cpu()
    )


def cpu_cores(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
    """Cores used by each group between two samples (a process seen only at the end counts whole)."""
    used = {}
    for name, pids in after.groups.items():
        earlier = before.groups.get(name, {})
        used[name] = sum(max(0.0, cpu - earlier.get(pid, 0.0)) for pid, cpu in pids.items()) / seconds
    busy, idle, steal = (a - b for a, b in zip(after.machine, before.machine, strict=True))
    used["machine_busy"] = busy / seconds
    used["machine_idle"] = idle / seconds
    used["steal"] = steal / seconds
    return used


# --- the load generators (run in child processes) ------------------------------------------


@dataclass
class HostRecord:
    """What one simulated host saw: every RPC's start and latency, and what it carried."""

    started: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))
    dispatched: array = field(default_factory=lambda: array("i"))
    reported: array = field(default_factory=lambda: array("i"))
    replica_ids: array = field(default_factory=lambda: array("q"))
    errors: list[tuple[float, str]] = field(default_factory=list)

    def merge(self, other: HostRecord) -> None:
        for name in ("started", "latency", "dispatched", "reported", "replica_ids"):
            getattr(self, name).extend(getattr(other, name))
        self.errors.extend(other.errors)


def output_for(replica_id: int) -> bytes:
    """The small inline output a simulated host reports for a replica."""
    return f"ok {replica_id} ".encode().ljust(OUTPUT_BYTES, b".")


def _count(counter: Any, amount: int) -> None:
    if amount:
        with counter.get_lock():
            counter.value += amount


def _http_host(
    base_url: str, host: BenchHost, batch: int, times: tuple[float, float], counter: Any
) -> HostRecord:
    """One host's loop: report what it holds as successes and fetch the next batch, until the end."""
    from nacl.signing import SigningKey
    from tessera_client.protocol import HostKey, ProjectSession, ProtocolError, Report

    start, end = times
    record = HostRecord()
    session = ProjectSession(
        base_url, HostKey(SigningKey(host.seed)), host_id=host.host_id, timeout=RPC_TIMEOUT
    )
    # Each host on a network of its own, as the proxy in front of the coordinator says: the
    # claim then checks the unit's other holders for related hosts, as in production.
    session.http.headers["X-Forwarded-For"] = f"198.18.{host.host_id % 250}.{1 + host.host_id // 250}"
    held: list[int] = []
    streak = 0
    time.sleep(max(0.0, start - time.monotonic()))
    while time.monotonic() < end:
        reports = [Report(replica=r, status="success", cpu_time=1.0, output=output_for(r)) for r in held]
        began = time.monotonic()
        try:
            reply = session.scheduler_rpc(reports=reports, tasks=batch)
        except ProtocolError as error:
            record.errors.append((time.monotonic(), f"{error.status} {error.code}"))
        except Exception as error:  # connection refused or reset, timeout: counted, never fatal
            record.errors.append((time.monotonic(), type(error).__name__))
        else:
            finished = time.monotonic()
            got = [task["replica"] for task in reply["tasks"]]
            record.started.append(began)
            record.latency.append(finished - began)
            record.dispatched.append(len(got))
            record.reported.append(len(reply["acks"]))
            record.replica_ids.extend(got)
            _count(counter, len(got))
            held, streak = got, 0
            continue
        streak += 1
        if streak >= ERROR_STREAK_LIMIT:
            held, streak = [], 0  # stop re-reporting what keeps failing
        time.sleep(0.05)
    session.http.close()
    return record


RAW_REPORT = """
UPDATE work_replica AS r
SET state = 'over', outcome = 'success', received_at = now(), cpu_time = 1.0, exit_code = 0,
    message = '', output_sha256 = v.sha256, output_size = octet_length(v.data), output_inline = v.data
FROM unnest(%s::bigint[], %s::text[], %s::bytea[]) AS v(id, sha256, data)
WHERE r.id = v.id AND r.host_id = %s AND r.state = 'in_progress'
"""
# The filters of claim_work, as plain SQL: the volunteer holds no replica of the unit, and no
# trusted host has the unit out alone (adaptive replication). OFFSET 0 keeps each NOT EXISTS
# a per-row index probe: without it PostgreSQL may plan an anti-join that reads every replica
# the volunteer ever held, or the whole table (see docs/benchmarks.md).
RAW_CLAIM = """
SELECT r.id, r.workunit_id FROM work_replica AS r
WHERE r.state = 'unsent' AND NOT r.reserved
  AND NOT EXISTS (
      SELECT 1 FROM work_replica AS mine
      WHERE mine.workunit_id = r.workunit_id AND mine.volunteer_id = %s OFFSET 0)
  AND NOT EXISTS (
      SELECT 1 FROM work_replica AS alone
      WHERE alone.workunit_id = r.workunit_id AND alone.trusted_single
        AND (alone.state = 'in_progress' OR (alone.outcome = 'success' AND alone.validate_state <> 'invalid'))
      OFFSET 0)
ORDER BY r.priority DESC, r.dispatch_key
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
RAW_ASSIGN = f"""
UPDATE work_replica
SET state = 'in_progress', host_id = %s, volunteer_id = %s, app_version_id = %s,
    sent_at = now(), deadline = now() + interval '{DELAY_BOUND} seconds'
WHERE id = ANY(%s) AND state = 'unsent'
"""


def candidates_per_task() -> int:
    """How many candidates claim_work locks per task wanted, read from its source.

    The raw claim must lock as many rows as the coordinator's, and the coordinator's module
    cannot be imported without Django; the constant is found by parsing instead (2 if absent).
    """
    source = REPO / "coordinator" / "scheduler" / "dispatch.py"
    try:
        tree = ast.parse(source.read_text())
    except (OSError, SyntaxError):
        return 2
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            names = [target.id for target in node.targets if isinstance(target, ast.Name)]
            if "CANDIDATES_PER_TASK" in names and isinstance(node.value.value, int):
                return node.value.value
    return 2


def _raw_host(
    url: str,
    host: BenchHost,
    batch: int,
    version_id: int,
    candidates: int,
    times: tuple[float, float],
    counter: Any,
) -> HostRecord:
    """The same work as one host's RPC in one plain transaction: report, claim, assign.

    The claim is claim_work's: ``candidates`` x batch rows locked with SKIP LOCKED in
    dispatch-index order, one replica per unit kept (the unique (unit, volunteer) rule), the
    rest released at commit.
    """
    start, end = times
    record = HostRecord()
    held: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:
        time.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < end:
            outputs = [output_for(r) for r in held]
            shas = [hashlib.sha256(data).hexdigest() for data in outputs]
            began = time.monotonic()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    reported = 0
                    if held:
                        cur.execute(RAW_REPORT, (held, shas, outputs, host.host_id))
                        reported = cur.rowcount
                    cur.execute(RAW_CLAIM, (host.volunteer_id, candidates * batch))
                    chosen, units = [], set()
                    for replica_id, unit_id in cur.fetchall():
                        if unit_id not in units:
                            units.add(unit_id)
                            chosen.append(replica_id)
                            if len(chosen) == batch:
                                break
                    if chosen:
                        cur.execute(RAW_ASSIGN, (host.host_id, host.volunteer_id, version_id, chosen))
                        if cur.rowcount != len(chosen):
                            raise RuntimeError("a claimed replica was not unsent")
            except Exception as error:  # deadlock, serialization failure…: counted, never fatal
                record.errors.append((time.monotonic(), type(error).__name__))
                time.sleep(0.05)
                continue
            finished = time.monotonic()
            record.started.append(began)
            record.latency.append(finished - began)
            record.dispatched.append(len(chosen))
            record.reported.append(reported)
            record.replica_ids.extend(chosen)
            _count(counter, len(chosen))
            held = chosen
    return record


def _load_process(
    mode: str,
    target: str,
    hosts: list[BenchHost],
    batch: int,
    version_id: int,
    candidates: int,
    ready: Any,
    go: Any,
    times: Any,
    counter: Any,
    results: Any,
) -> None:
    """A child process of simulated hosts, one thread each; sends back one merged record."""
    if mode == "http":
        import tessera_client.protocol  # noqa: F401  (import before the clock starts)
    ready.put(os.getpid())
    if not go.wait(120):
        results.put(None)
        return
    window = (times[0], times[1])
    records: list[HostRecord] = [HostRecord() for _ in hosts]

    def run(index: int, host: BenchHost) -> None:
        try:
            if mode == "http":
                records[index] = _http_host(target, host, batch, window, counter)
            else:
                records[index] = _raw_host(target, host, batch, version_id, candidates, window, counter)
        except Exception as error:
            records[index].errors.append((time.monotonic(), f"host crashed: {error!r}"))

    threads = [threading.Thread(target=run, args=(i, h), daemon=True) for i, h in enumerate(hosts)]
    for thread in threads:
        thread.start()
    deadline = window[1] + RPC_TIMEOUT + 10
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    merged = HostRecord()
    for record in records:
        merged.merge(record)
    results.put(merged)


# --- one timed run -------------------------------------------------------------------------


@dataclass
class RunResult:
    mode: str
    queue: int
    seconds: float
    rpcs: int
    replicas_per_s: float
    reported_per_s: float
    rpc_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    errors: dict[str, int]
    duplicates: int
    unaccounted: int
    cpu: dict[str, float]
    queue_low_water: int = 0  # fewest unsent replicas the top-up let the queue fall to
    slowest_topup_s: float = 0.0
    topup_error: str | None = None

    @property
    def own_cores(self) -> float:
        """Cores this benchmark's processes used (server, database, load generator)."""
        return sum(self.cpu.get(name, 0.0) for name in ("server", "db", "loadgen"))

    @property
    def other_cores(self) -> float:
        """Cores other processes on the machine used meanwhile: the noise of a shared machine."""
        return max(0.0, self.cpu.get("machine_busy", 0.0) - self.own_cores)

    @property
    def replicas_per_cpu_s(self) -> float:
        """Replicas per second of CPU spent by this benchmark: steadier than the rate when
        other processes take a share of the machine."""
        return self.replicas_per_s / self.own_cores if self.own_cores else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "replicas_per_s": round(self.replicas_per_s, 1),
            "replicas_per_cpu_s": round(self.replicas_per_cpu_s, 1),
            "other_processes_cores": round(self.other_cores, 2),
            "reported_per_s": round(self.reported_per_s, 1),
            "rpc_per_s": round(self.rpc_per_s, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "mean_batch": round(self.mean_batch, 2),
            "rpcs": self.rpcs,
            "errors": self.errors,
            "duplicate_assignments": self.duplicates,
            "unaccounted_replicas": self.unaccounted,
            "queue_low_water_replicas": self.queue_low_water,
            "slowest_top_up_s": round(self.slowest_topup_s, 3),
            "cpu_cores": {name: round(value, 2) for name, value in self.cpu.items()},
            # CPU each part spent per RPC: the machine's 2 cores divided among them.
            "cpu_ms_per_rpc": {
                name: round(1000 * self.cpu[name] / self.rpc_per_s, 2) if self.rpc_per_s else None
                for name in ("server", "db", "loadgen")
                if name in self.cpu
            },
        }


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _await_ready(ready: Any, procs: list[Any], limit: float = 120.0) -> None:
    """Wait for every load process to say it is ready, failing fast if one dies instead."""
    deadline = time.monotonic() + limit
    waiting = len(procs)
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{waiting} load processes were not ready after {limit:.0f} s")
        try:
            ready.get(timeout=1.0)
            waiting -= 1
        except queue_module.Empty:
            dead = [proc.name for proc in procs if proc.exitcode is not None]
            if dead:
                raise RuntimeError(f"load processes died while starting: {', '.join(dead)}") from None


def timed_run(
    mode: str,
    *,
    target: str,
    opts: Options,
    fixture: Fixture,
    queue: int,
    cpu_groups: dict[str, list[int]],
) -> RunResult:
    """Drive all hosts for warm-up + measured seconds on a queue of ``queue`` units.

    Throughput counts the RPCs that complete inside the measured window; latencies are theirs.
    """
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    times = ctx.Array("d", 2)
    counter = ctx.Value("q", 0)
    shares = [fixture.hosts[i :: opts.procs] for i in range(opts.procs)]
    procs = [
        ctx.Process(
            target=_load_process,
            args=(
                mode,
                target,
                share,
                opts.batch,
                fixture.app_version_id,
                candidates_per_task(),
                ready,
                go,
                times,
                counter,
                results,
            ),
            name=f"bench-{mode}-{index}",
            daemon=True,
        )
        for index, share in enumerate(shares)
        if share
    ]
    topup = QueueTopUp(opts.database_url, app_id=fixture.app_id, next_unit=queue + 1, dispatched=counter)
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        sent_before = replicas_sent(conn)
    merged = HostRecord()
    try:
        for proc in procs:
            proc.start()
        _await_ready(ready, procs)
        start = time.monotonic() + 0.5
        measure_from = start + opts.warmup
        end = measure_from + opts.seconds
        times[0], times[1] = start, end
        topup.start()
        go.set()
        groups = dict(cpu_groups, loadgen=[p.pid for p in procs if p.pid])
        groups["db"] = _postgres_pids(database_name(opts.database_url))
        time.sleep(max(0.0, measure_from - time.monotonic()))
        groups["db"] = _postgres_pids(database_name(opts.database_url))
        before = cpu_sample(groups)
        time.sleep(max(0.0, end - time.monotonic()))
        after = cpu_sample(groups)
        cpu = cpu_cores(before, after, end - measure_from)
        for _ in procs:
            part = results.get(timeout=RPC_TIMEOUT + 60)
            if part is not None:
                merged.merge(part)
    finally:
        for proc in procs:
            if proc.pid is None:
                continue  # never started
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        topup.stop()
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        sent_after = replicas_sent(conn)

    in_window = [
        i for i, began in enumerate(merged.started) if measure_from <= began + merged.latency[i] < end
    ]
    seconds = end - measure_from
    latencies = sorted(merged.latency[i] * 1000 for i in in_window)
    dispatched = sum(merged.dispatched[i] for i in in_window)
    reported = sum(merged.reported[i] for i in in_window)
    errors = Counter(kind for at, kind in merged.errors if measure_from <= at < end)
    all_errors = Counter(kind for _, kind in merged.errors)
    for kind, count in all_errors.items():
        if kind not in errors:
            errors[f"{kind} (outside window)"] = count
    ids = merged.replica_ids
    result = RunResult(
        mode=mode,
        queue=queue,
        seconds=seconds,
        rpcs=len(in_window),
        replicas_per_s=dispatched / seconds,
        reported_per_s=reported / seconds,
        rpc_per_s=len(in_window) / seconds,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        mean_batch=dispatched / len(in_window) if in_window else 0.0,
        errors=dict(errors),
        duplicates=len(ids) - len(set(ids)),
        # Replicas the database sent that no client saw (an RPC that timed out after committing).
        unaccounted=(sent_after - sent_before) - len(ids),
        cpu=cpu,
        queue_low_water=2 * queue - topup.largest_deficit,
        slowest_topup_s=topup.slowest_insert,
        topup_error=repr(topup.error) if topup.error else None,
    )
    return result


# --- gunicorn ------------------------------------------------------------------------------


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on, for this run's gunicorn."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, log_path: Path) -> Iterator[tuple[str, int]]:
    """Serve the coordinator with gunicorn's sync workers; always stopped on the way out."""
    port = free_port()
    gunicorn_bin = (
        VENV_BIN / "gunicorn"
        if (VENV_BIN / "gunicorn").exists()
        else Path(sys.executable).parent / "gunicorn"
    )
    command = [
        str(gunicorn_bin),
        WSGI_APP,
        "-b",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "60",
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_serving(base_url, proc, workers, log_path)
        yield base_url, proc.pid
    finally:
        _stop(proc)


def _wait_until_serving(base_url: str, proc: subprocess.Popen, workers: int, log_path: Path) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            requests.get(base_url + "/api/v1/scheduler", timeout=2)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        # Every worker has booted (imported Django) once the master has that many children.
        while len(_children(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        return
    raise RuntimeError(f"gunicorn did not answer within 60 s:\n{log_path.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """TERM the master (graceful), then KILL its own process group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --- the whole benchmark -------------------------------------------------------------------


def run(opts: Options) -> dict[str, Any]:
    """Seed, measure HTTP then raw for each queue length, and return the JSON figures."""
    bench_started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    media_root = workdir / "media"
    media_root.mkdir()
    env = coordinator_env(opts.database_url, media_root, opts.batch)
    url = opts.database_url
    print(f"# dispatch benchmark: {opts.hosts} hosts, batch {opts.batch}, {opts.workers} gunicorn workers,")
    queues = ", ".join(f"{queue:,}" for queue in opts.queues)
    print(f"# {opts.seconds:g} s measured after {opts.warmup:g} s warm-up; queues of {queues} units")
    try:
        with psycopg.connect(admin_url(url), autocommit=True) as conn:
            max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        if opts.hosts + opts.workers + 10 > max_connections:
            raise SystemExit(
                f"{opts.hosts} hosts need as many connections; the server allows {max_connections}"
            )
        recreate_database(url)
        migrate(env)
        with psycopg.connect(url, autocommit=True) as conn:
            check_schema(conn)
            fixture = seed_fixture(conn, hosts=opts.hosts, media_root=media_root)
        results: list[RunResult] = []
        log_tail = ""
        for queue in opts.queues:
            for mode in ("http", "raw"):
                # Each run starts from the same freshly queued, analyzed table.
                with psycopg.connect(url, autocommit=True) as conn:
                    took = seed_queue(conn, app_id=fixture.app_id, units=queue)
                print(f"# queued {queue:,} units ({2 * queue:,} replicas) in {took:.1f} s", flush=True)
                if mode == "http":
                    with gunicorn(env, opts.workers, workdir / "gunicorn.log") as (base_url, master):
                        result = timed_run(
                            "http",
                            target=base_url,
                            opts=opts,
                            fixture=fixture,
                            queue=queue,
                            cpu_groups={"server": [master, *_children(master)]},
                        )
                    log_tail = (workdir / "gunicorn.log").read_text()[-2000:]
                else:
                    result = timed_run(
                        "raw", target=url, opts=opts, fixture=fixture, queue=queue, cpu_groups={}
                    )
                print("# " + format_row(result), flush=True)
                results.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(opts, results)
    print_summary(summary, results, log_tail)
    summary["elapsed_s"] = round(time.monotonic() - bench_started, 1)
    return summary


COLUMNS = [
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
]


def format_row(result: RunResult) -> str:
    """One line of the table (CPU in cores used during the measured window)."""
    cpu = result.cpu
    cells = [
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
    return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))


def format_header() -> str:
    """The table's column names, aligned as format_row aligns its cells."""
    return "  ".join(name.rjust(width) for name, width in COLUMNS)


def summarize(opts: Options, results: list[RunResult]) -> dict[str, Any]:
    """The JSON figures: the largest queue's at the top (the issue's keys), then per queue."""
    per_queue: dict[str, Any] = {}
    for queue in opts.queues:
        http = next(r for r in results if r.queue == queue and r.mode == "http")
        raw = next(r for r in results if r.queue == queue and r.mode == "raw")
        per_queue[str(queue)] = {
            **http.as_json(),
            "raw_replicas_per_s": round(raw.replicas_per_s, 1),
            "ratio_to_raw": round(http.replicas_per_s / raw.replicas_per_s, 3)
            if raw.replicas_per_s
            else None,
            "raw": raw.as_json(),
        }
    largest = per_queue[str(max(opts.queues))]
    smallest = per_queue[str(min(opts.queues))]
    return {
        "benchmark": "dispatch",
        "replicas_per_s": largest["replicas_per_s"],
        "reported_per_s": largest["reported_per_s"],
        "raw_replicas_per_s": largest["raw_replicas_per_s"],
        "ratio_to_raw": largest["ratio_to_raw"],
        "p50_ms": largest["p50_ms"],
        "p99_ms": largest["p99_ms"],
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
        "per_queue": per_queue,
    }


def print_summary(summary: dict[str, Any], results: list[RunResult], log_tail: str) -> None:
    """The readable part: the table again, per-queue ratios, problems, and the targets."""
    print()
    print(format_header())
    for result in results:
        print(format_row(result))
    print()
    for queue, figures in summary["per_queue"].items():
        print(
            f"queue {int(queue):>9,}: {figures['replicas_per_s']:>8,.0f} replicas/s over HTTP, "
            f"{figures['raw_replicas_per_s']:>8,.0f} raw, ratio {figures['ratio_to_raw']:.3f}"
        )
    for result in results:
        problems = []
        if result.errors:
            problems.append(f"errors {result.errors}")
        if result.duplicates:
            problems.append(f"{result.duplicates} replicas handed out twice")
        if result.unaccounted:
            problems.append(f"{result.unaccounted} replicas sent that no client saw")
        if result.topup_error:
            problems.append(f"queue top-up failed: {result.topup_error}")
        if result.other_cores > 0.2:
            problems.append(
                f"other processes took {result.other_cores:.2f} cores; compare replicas per cpu-s"
            )
        if problems:
            print(f"! {result.mode} at {result.queue:,}: " + "; ".join(problems))
    if any(r.errors for r in results if r.mode == "http") and log_tail.strip():
        print("! last lines of the gunicorn log:\n" + log_tail)
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
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
