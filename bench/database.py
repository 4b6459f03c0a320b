"""The benchmarks' own PostgreSQL database: created, migrated, checked, analyzed.

Every benchmark that times SQL starts from a database of its own that it drops and creates
again, so its name must contain "bench" (nothing else is ever dropped). The schema comes
from the coordinator's own migrations, never from a benchmark; the seeding SQL is checked
against it first, so that a new NOT NULL column fails loudly rather than mid-insert. Bulk
seeds go in with the secondary indexes dropped and rebuilt from the catalog, then VACUUM
ANALYZE and a CHECKPOINT leave the tables as a long-lived database would have them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent

# The columns the benchmarks' seeding SQL fills in the tables they all seed alike.
APP_COLUMNS = {
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
}
PEOPLE_COLUMNS = {
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
}
WORKUNIT_COLUMNS = {
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
}
REPLICA_COLUMNS = {
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
}


def database_name(url: str) -> str:
    """The database a URL names: the one thing a benchmark may drop."""
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
        # The benchmarks' hosts ask for ``batch`` tasks and must get them: bench.dispatch's are
        # about 1,000 s each on 4 cores, and the default work buffer (60 s beyond a task per
        # free core, issue 18) would give 4. A day's buffer is what a BOINC client with a
        # large cache asks for.
        WORK_BUFFER_SECONDS="86400",
        DJANGO_SETTINGS_MODULE="coordinator.settings",
    )
    return env


def migrate(env: dict[str, str]) -> None:
    """The schema comes from the coordinator's own migrations, never from a benchmark."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=300,
    )


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process for the benchmark's database (before any model import)."""
    os.environ.update(env)
    import django

    django.setup()


def django_backend_pid() -> int:
    """The PostgreSQL backend serving this process's Django connection (connecting if need be)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def check_schema(conn: psycopg.Connection, seeded: dict[str, set[str]]) -> None:
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


def vacuum_analyze(conn: psycopg.Connection, tables: Iterable[str]) -> None:
    """Fresh statistics and visibility maps, and no dead tuples (autovacuum may be off)."""
    for table in tables:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def checkpoint(conn: psycopg.Connection) -> None:
    """Flush a seed's writes now: its WAL would otherwise trigger a checkpoint in the timed run."""
    conn.execute("CHECKPOINT")


def droppable_indexes(
    conn: psycopg.Connection, tables: Iterable[str]
) -> list[tuple[str, sql.Composable, sql.Composable]]:
    """(table, drop, create) statements for the tables' secondary indexes and unique constraints.

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
        (list(tables),),
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


@contextlib.contextmanager
def secondary_indexes_dropped(
    conn: psycopg.Connection, tables: Iterable[str], *, drop: bool
) -> Iterator[None]:
    """Drop the tables' secondary indexes for a bulk insert and rebuild them after it.

    Run it inside the insert's transaction; with ``drop`` false it does nothing (a small seed
    is quicker with the indexes in place).
    """
    rebuild = droppable_indexes(conn, tables) if drop else []
    for _, statement, _ in rebuild:
        conn.execute(statement)
    yield
    for _, _, statement in rebuild:
        conn.execute(statement)
