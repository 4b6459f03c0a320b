"""The validation benchmark's raw ceiling: one chunk of validation in plain SQL.

It writes what ``services.validate_units`` writes for units whose two outputs agree (the
only case the benchmark seeds), through psycopg with one statement per table and no ORM:
the floor under which the coordinator's own validator cannot go on this machine.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import psycopg
from psycopg import sql
from tessera_client.ledger import entry_hash

DAILY_QUOTA_CAP = 2000  # DEFAULT_DAILY_QUOTA for the coordinator, and the raw run's cap
MICRO = Decimal("0.000001")

Grant = tuple[int, int, int, int, Decimal]  # volunteer, host, replica, unit, credit

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


def stamp(moment: datetime) -> str:
    """A time as the ledger's chain spells it (coordinator.validation.ledger.stamp)."""
    return moment.astimezone(UTC).isoformat()


def entry_fields(
    seq: int, volunteer: int, host: int, replica: int, unit: int, amount: Decimal, at: str
) -> dict[str, Any]:
    """A ledger entry's hashed fields, as coordinator.validation.ledger spells them."""
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
    from coordinator.standing import credit  # pure arithmetic: no ORM, no settings

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
    ids = [row[0] for row in cur.execute(RAW_DUE, (chunk,)).fetchall()]
    if not ids:
        return 0
    units = cur.execute(RAW_LOCK_UNITS, (ids,)).fetchall()
    if not units:
        return 0
    by_unit: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in cur.execute(RAW_SUCCESSES, ([u[0] for u in units],)).fetchall():
        by_unit[row[1]].append(row)
    replica_rows, unit_rows, grants = _judge(units, by_unit)
    cur.execute(RAW_REPLICAS, replica_rows)
    cur.execute(RAW_UNITS, (now, *unit_rows))
    _append_ledger(cur, grants, now)
    version_id = by_unit[units[0][0]][0][7]
    _add_credit(cur, grants, now, app_id=app_id, version_id=version_id)
    return len(units)


def _judge(
    units: list[tuple[Any, ...]], by_unit: dict[int, list[tuple[Any, ...]]]
) -> tuple[tuple[list[Any], ...], tuple[list[Any], ...], list[Grant]]:
    """Claims and grants: (replica columns, unit columns, one grant per replica)."""
    from coordinator.standing import credit  # pure arithmetic: no ORM, no settings

    replica_ids, claims_out, grants_out = [], [], []
    unit_ids, canonicals, unit_grants = [], [], []
    grants: list[Grant] = []
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
    return (replica_ids, claims_out, grants_out), (unit_ids, canonicals, unit_grants), grants


def _append_ledger(cur: psycopg.Cursor, grants: list[Grant], now: datetime) -> None:
    """One chained entry per grant, under the ledger head's lock, and the head moved on."""
    seq, prev = cur.execute(RAW_HEAD).fetchone()
    at = stamp(now)
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
    for volunteer, host, replica, unit, amount in grants:
        seq += 1
        digest = entry_hash(entry_fields(seq, volunteer, host, replica, unit, amount, at), prev)
        for column, value in zip(
            columns, (seq, volunteer, host, replica, unit, amount, prev, digest), strict=True
        ):
            column.append(value)
        prev = digest
    cur.execute(RAW_LEDGER, (now, *columns))
    cur.execute(RAW_HEAD_UPDATE, (seq, prev))


def _add_credit(
    cur: psycopg.Cursor, grants: list[Grant], now: datetime, *, app_id: int, version_id: int
) -> None:
    """Credit and RAC to volunteers, teams and hosts; quotas, credit per day and reputation."""
    from coordinator.standing.reputation import ERROR_RATE_WEIGHT

    by_volunteer: dict[int, Decimal] = defaultdict(Decimal)
    by_host: dict[int, Decimal] = defaultdict(Decimal)
    valid_by_host: Counter[int] = Counter()
    for volunteer, host, _, _, amount in grants:
        by_volunteer[volunteer] += amount
        by_host[host] += amount
        valid_by_host[host] += 1
    _credit_volunteers_and_teams(cur, by_volunteer, now)
    hosts = cur.execute(RAW_LOCK_HOSTS, (sorted(by_host),)).fetchall()
    host_ids = [h[0] for h in hosts]
    valid = [valid_by_host[h] for h in host_ids]
    cur.execute(RAW_QUOTAS_MADE, (version_id, host_ids, [h[3] for h in hosts]))
    cur.execute(RAW_QUOTAS, (DAILY_QUOTA_CAP, host_ids, valid, version_id))
    cur.execute(RAW_HOSTS, (now, *_with_rac(hosts, by_host, now), valid))
    cur.execute(RAW_CREDIT_DAYS, (now.date(), list(by_volunteer), list(by_volunteer.values())))
    cur.execute(
        RAW_REPUTATION,
        (host_ids, [app_id] * len(host_ids), [valid_by_host[h] for h in host_ids], 1 - ERROR_RATE_WEIGHT),
    )


def _credit_volunteers_and_teams(
    cur: psycopg.Cursor, by_volunteer: dict[int, Decimal], now: datetime
) -> None:
    """Lock the volunteers, then their teams, and add each one's credit and RAC."""
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
