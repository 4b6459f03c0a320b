"""The validation benchmark's checks: what a run must leave behind, read in plain SQL.

Every run is checked independently of the code that wrote it: every replica valid with its
credit, every unit done, the ledger one entry per replica, chained and hashed, and the totals
equal to the ledger's sums. A fingerprint of what was written lets the runs be compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from tessera_client.ledger import GENESIS_HASH, entry_hash

from bench.validation_raw import entry_fields, stamp

if TYPE_CHECKING:
    from bench.validation_seed import Seeded


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
        _check_replicas_and_units(conn, n, label)
        entries = _check_ledger_entries(conn, n, label)
        _check_chain(conn, label)
        _check_totals(conn, label)
        total = conn.execute("SELECT sum(credit) FROM validation_ledgerentry").fetchone()[0]
        prints = fingerprints(conn)
    return {"ledger_entries": entries, "credit_total": str(total), "fingerprints": prints}


def _check_replicas_and_units(conn: psycopg.Connection, n: int, label: str) -> None:
    """Every replica valid with its credits; every unit done with a canonical replica and a grant."""
    bad_replicas, replicas = conn.execute(
        "SELECT count(*) FILTER (WHERE validate_state <> 'valid' OR claimed_credit IS NULL"
        " OR granted_credit IS NULL), count(*) FROM work_replica"
    ).fetchone()
    _expect(replicas == n and bad_replicas == 0, f"{label}: {bad_replicas} of {replicas} replicas not valid")
    bad_units = conn.execute(
        "SELECT count(*) FROM work_workunit u WHERE u.state <> 'done' OR u.need_validate"
        " OR u.canonical_replica_id IS NULL OR u.granted_credit IS NULL OR EXISTS (SELECT 1 FROM"
        " work_replica r WHERE r.workunit_id = u.id AND r.granted_credit <> u.granted_credit)"
        " OR NOT EXISTS (SELECT 1 FROM work_replica r WHERE r.id = u.canonical_replica_id"
        " AND r.workunit_id = u.id)"
    ).fetchone()[0]
    _expect(bad_units == 0, f"{label}: {bad_units} units not done with a canonical replica and a grant")


def _check_ledger_entries(conn: psycopg.Connection, n: int, label: str) -> int:
    """One ledger entry per replica, matching it, numbered 1..n; returns the count."""
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
    return entries


def _check_chain(conn: psycopg.Connection, label: str) -> None:
    """Each entry links to the one before and hashes its fields; the head is the last entry."""
    prev, last_seq = GENESIS_HASH, 0
    with conn.transaction(), conn.cursor(name="chain") as cur:
        cur.execute(
            "SELECT seq, volunteer_id, host_id, replica_id, unit_id, credit, granted_at, prev_hash, hash"
            " FROM validation_ledgerentry ORDER BY seq"
        )
        for seq, volunteer, host, replica, unit, amount, at, prev_hash, digest in cur:
            _expect(seq == last_seq + 1, f"{label}: ledger seq {seq} after {last_seq}")
            _expect(prev_hash == prev, f"{label}: entry {seq} does not link to the one before")
            fields = entry_fields(seq, volunteer, host, replica, unit, amount, stamp(at))
            _expect(entry_hash(fields, prev) == digest, f"{label}: entry {seq}'s hash is not its fields'")
            prev, last_seq = digest, seq
    head = conn.execute("SELECT seq, hash FROM validation_ledgerhead WHERE id = 1").fetchone()
    _expect(head == (last_seq, prev), f"{label}: the ledger head {head} is not the last entry")


def _check_totals(conn: psycopg.Connection, label: str) -> None:
    """Volunteers', hosts', teams' and credit days' totals equal the ledger's sums."""
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


def fingerprints(conn: psycopg.Connection) -> dict[str, str]:
    """What both runs must have written alike (RAC and times aside, which move with the clock)."""
    return {
        name: conn.execute(
            sql.SQL("SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (SELECT {} AS x FROM {}) AS s").format(
                sql.SQL(row), sql.Identifier(table)
            )
        ).fetchone()[0]
        for name, (table, row) in FINGERPRINTS.items()
    }


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
