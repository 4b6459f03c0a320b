"""The validation benchmark's seed: units of two agreeing successes, ready to validate.

People (teams, volunteers, one host each), one app version, N units and 2N replicas are
written in plain SQL, every table a validation pass writes emptied first and identities
restarted, so that every run (validator, raw, profiled) starts from the very same rows.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from tessera_client.ledger import GENESIS_HASH

from bench.database import (
    APP_COLUMNS,
    PEOPLE_COLUMNS,
    REPLICA_COLUMNS,
    WORKUNIT_COLUMNS,
    check_schema,
    checkpoint,
    vacuum_analyze,
)

if TYPE_CHECKING:
    from bench.validation import Options

FPOPS_ESTIMATE = 1e12  # per unit: about 2.3 credits on the reference machine
SEED_DAILY_QUOTA = 100  # what each host starts with (valid results double it up to the cap)
OUTPUT_BYTES = 64
DELAY_BOUND = 7 * 24 * 3600

# The columns the seeding SQL below fills, per table; a NOT NULL column without a default
# that is not here fails loudly before seeding rather than mid-insert.
SEEDED_COLUMNS = {
    **APP_COLUMNS,
    "accounts_team": {"name", "created"},
    **PEOPLE_COLUMNS,
    "work_workunit": WORKUNIT_COLUMNS,
    "work_replica": REPLICA_COLUMNS,
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
        vacuum_analyze(conn, ANALYZED)
        checkpoint(conn)
    return Seeded(units=opts.units, replicas=replicas, seconds=time.monotonic() - started)
