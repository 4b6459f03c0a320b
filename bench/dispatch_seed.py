"""The dispatch benchmark's data: hosts with real keys, a queue of units, held at its length.

``seed_fixture`` makes the app, its signed version and the hosts once; ``seed_queue`` empties
the work tables and queues a fresh, analyzed queue before every run, so that each run starts
from the same state; ``QueueTopUp`` keeps the queue at its nominal length while hosts drain
it, alike in the HTTP run and in its raw ceiling.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from nacl.signing import SigningKey
from psycopg.types.json import Jsonb

from bench.database import (
    APP_COLUMNS,
    PEOPLE_COLUMNS,
    REPLICA_COLUMNS,
    WORKUNIT_COLUMNS,
    checkpoint,
    secondary_indexes_dropped,
    vacuum_analyze,
)

WORK_TABLES = ("work_workunit", "work_replica")
INPUT_BYTES = 100  # each unit's inline input; it travels base64 in the scheduler reply
DELAY_BOUND = 7 * 24 * 3600
TOPUP_INTERVAL = 0.25

# The columns the seeding SQL below fills, per table; check_schema() compares them with the
# migrated schema so that a new NOT NULL column fails loudly here rather than mid-insert.
SEEDED_COLUMNS = {
    **APP_COLUMNS,
    **PEOPLE_COLUMNS,
    "work_workunit": WORKUNIT_COLUMNS | {"batch_id", "transition_time", "canonical_replica_id"},
    "work_replica": REPLICA_COLUMNS,
}


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
        made = [_seed_host(conn, index) for index in range(hosts)]
    return Fixture(app_id=app_id, app_version_id=version_id, hosts=made)


def _seed_host(conn: psycopg.Connection, index: int) -> BenchHost:
    """A volunteer and its one host, with a fresh Ed25519 key."""
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
    return BenchHost(host_id=host_id, volunteer_id=user_id, seed=bytes(key))


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


# The mixed fleet (``python -m bench.dispatch``'s "mixed" runs): hosts of four kinds, cycled,
# and app versions for several platforms and plan classes; a second app with homogeneous
# redundancy takes every other span of units.
MIXED_HOSTS = (
    {
        "platforms": ["x86_64-pc-linux-gnu", "i686-pc-linux-gnu"],
        "os_name": "Linux",
        "cpu_vendor": "GenuineIntel",
        "n_cpus": 8,
        "gpus": [
            {
                "vendor": "nvidia",
                "api": "cuda",
                "model": "NVIDIA H100",
                "count": 1,
                "memory_bytes": 80 << 30,
                "driver_version": "550.54.15",
                "compute_capability": "9.0",
            }
        ],
    },
    {
        "platforms": ["x86_64-pc-linux-gnu"],
        "os_name": "Linux",
        "cpu_vendor": "AuthenticAMD",
        "n_cpus": 16,
        "gpus": [],
    },
    {
        "platforms": ["aarch64-unknown-linux-gnu"],
        "os_name": "Linux",
        "cpu_vendor": "ARM",
        "n_cpus": 4,
        "gpus": [],
    },
    {
        "platforms": ["windows_x86_64"],
        "os_name": "Windows",
        "cpu_vendor": "GenuineIntel",
        "n_cpus": 4,
        "gpus": [],
    },
)
MIXED_VERSIONS = (  # platform, runtime, plan class; beside the fixture's own python "any" version
    ("any", "wasm", "cpu"),
    ("x86_64-pc-linux-gnu", "native", "cpu"),
    ("x86_64-pc-linux-gnu", "native", "mt"),
    ("x86_64-pc-linux-gnu", "native", "cuda"),
    ("aarch64-unknown-linux-gnu", "native", "cpu"),
)
HR_APP = "bench-hr"


def mix_fleet(conn: psycopg.Connection, fixture: Fixture) -> int:
    """Give the hosts their mixed descriptions and the apps their versions; the HR app's id."""
    with conn.transaction():
        bundle, sha, size, signature = conn.execute(
            "SELECT bundle, bundle_sha256, bundle_size, signature FROM work_appversion WHERE id = %s",
            (fixture.app_version_id,),
        ).fetchone()
        hr_app = conn.execute(
            "INSERT INTO work_app (name, title, created, hr_level) VALUES (%s, 'HR benchmark', now(), 1)"
            " RETURNING id",
            (HR_APP,),
        ).fetchone()[0]
        for app_id in (fixture.app_id, hr_app):
            rows = [("any", "python", "cpu")] * (app_id == hr_app) + list(MIXED_VERSIONS)
            for platform, runtime, plan in rows:
                conn.execute(
                    "INSERT INTO work_appversion (app_id, version, platform, runtime, plan_class, bundle,"
                    " bundle_sha256, bundle_size, signature, max_output_bytes, created)"
                    " VALUES (%s, 1, %s, %s, %s, %s, %s, %s, %s, %s, now())",
                    (app_id, platform, runtime, plan, bundle, sha, size, signature, 1 << 20),
                )
        for index, host in enumerate(fixture.hosts):
            kind = MIXED_HOSTS[index % len(MIXED_HOSTS)]
            conn.execute(
                "UPDATE accounts_host SET platform = %s, platforms = %s, os_name = %s, cpu_vendor = %s,"
                " n_cpus = %s, gpus = %s, runtimes = %s, disk_free_bytes = %s WHERE id = %s",
                (
                    kind["platforms"][0],
                    Jsonb(kind["platforms"]),
                    kind["os_name"],
                    kind["cpu_vendor"],
                    kind["n_cpus"],
                    Jsonb(kind["gpus"]),
                    Jsonb(["python", "wasm", "native"]),
                    100 << 30,
                    host.host_id,
                ),
            )
    return hr_app


def plain_fleet(conn: psycopg.Connection, fixture: Fixture) -> None:
    """Undo ``mix_fleet``: one python version, hosts as seeded (call on an empty queue)."""
    with conn.transaction():
        conn.execute("DELETE FROM work_appversion WHERE id <> %s", (fixture.app_version_id,))
        conn.execute("DELETE FROM work_app WHERE name = %s", (HR_APP,))
        conn.execute(
            "UPDATE accounts_host SET platform = 'linux-x86_64', platforms = '[]', os_name = '',"
            " cpu_vendor = '', n_cpus = 4, gpus = '[]', runtimes = '[]', disk_free_bytes = NULL"
        )


def seed_queue(conn: psycopg.Connection, *, app_ids: tuple[int, ...], units: int) -> float:
    """Empty the work tables and queue ``units`` units of two unsent replicas; returns seconds.

    A million units go in with the secondary indexes dropped and rebuilt from the catalog and
    with the deferred foreign-key checks off (the rows reference the one app by construction):
    that is 15 s instead of a minute. VACUUM ANALYZE leaves fresh statistics and a visibility
    map, as a long-lived queue would have, and a CHECKPOINT flushes the seed's writes.
    """
    started = time.monotonic()
    empty_queue(conn)
    fill_queue(conn, app_ids=app_ids, units=units)
    return time.monotonic() - started


def empty_queue(conn: psycopg.Connection) -> None:
    """The work tables emptied, and the hosts as if they had never called."""
    conn.execute("TRUNCATE work_replica, work_workunit, accounts_hostnonce RESTART IDENTITY CASCADE")
    conn.execute("UPDATE accounts_host SET last_contact = NULL")
    conn.execute("DELETE FROM validation_hostappversion")


def fill_queue(conn: psycopg.Connection, *, app_ids: tuple[int, ...], units: int) -> None:
    """``units`` units (shared between ``app_ids``) of two unsent replicas on an empty queue."""
    with conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        conn.execute("SET LOCAL session_replication_role = replica")
        with secondary_indexes_dropped(conn, WORK_TABLES, drop=units >= 50_000):
            share = -(-units // len(app_ids))
            for index, app_id in enumerate(app_ids):
                first, last = 1 + index * share, min(units, (index + 1) * share)
                conn.execute(INSERT_UNITS, {"app": app_id, "first": first, "last": last})
    vacuum(conn)
    checkpoint(conn)


def vacuum(conn: psycopg.Connection) -> None:
    """Clear the dead tuples a run leaves at the head of the dispatch index (autovacuum may be off)."""
    vacuum_analyze(conn, WORK_TABLES)


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
        self, url: str, *, app_ids: tuple[int, ...], next_unit: int, dispatched: Any, connections: int = 4
    ) -> None:
        self.url = url
        self.app_ids = app_ids
        self.spans = 0  # spans taken: each goes to the next app in turn
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

    def _take(self) -> tuple[int, int, int] | None:
        """The next range of unit numbers to insert and its app, or None when the queue is full."""
        with self.lock:
            deficit = self.dispatched.value - self.added_replicas
            self.largest_deficit = max(self.largest_deficit, deficit)
            units = (self.dispatched.value - self.reserved_replicas) // 2
            if units < 1:
                return None
            first = self.next_unit
            self.next_unit += units
            self.reserved_replicas += 2 * units
            self.spans += 1
            return first, first + units - 1, self.app_ids[self.spans % len(self.app_ids)]

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("SET session_replication_role = replica")
                while not self.stopping.wait(TOPUP_INTERVAL):
                    while not self.stopping.is_set() and (span := self._take()) is not None:
                        started = time.monotonic()
                        conn.execute(INSERT_UNITS, {"app": span[2], "first": span[0], "last": span[1]})
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
