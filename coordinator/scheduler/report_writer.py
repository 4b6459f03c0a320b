"""Writing a batch of reports in one statement: the scheduler RPC's hottest write.

Built with Django's ``Case``/``When``, this one UPDATE cost more CPU to compile than
PostgreSQL spent running it (docs/benchmarks.md), so it is written in SQL here: on
PostgreSQL one ``UPDATE … FROM unnest(arrays)``, elsewhere one ``executemany``. The WHERE
clause is the conditional update used everywhere: only replicas this host holds and may
still report.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import connection

from coordinator.core.bulk import any_of, for_update
from coordinator.core.prepared import prepared_cursor
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica, WorkUnit

TABLE = Replica._meta.db_table
UNITS = WorkUnit._meta.db_table
# (replica id, outcome, cpu time, exit code, message, output sha256, output size, inline output,
#  stored output's name, its SHA-256 as the coordinator measured it, a wasm task's fuel)
ReportRow = tuple[int, str, float, int, str, str, int | None, bytes | None, str, str, int | None]

POSTGRES = f"""
UPDATE {TABLE} AS r
SET state = %s, received_at = %s, outcome = v.outcome, cpu_time = v.cpu_time, exit_code = v.exit_code,
    message = v.message, output_sha256 = v.output_sha256, output_size = v.output_size,
    output_inline = v.output_inline, output_file = v.output_file, uploaded_sha256 = v.uploaded_sha256,
    fuel = v.fuel
FROM unnest(%s::bigint[], %s::varchar[], %s::float8[], %s::integer[], %s::varchar[], %s::varchar[],
            %s::bigint[], %s::bytea[], %s::varchar[], %s::varchar[], %s::bigint[])
     AS v(id, outcome, cpu_time, exit_code, message, output_sha256, output_size, output_inline,
          output_file, uploaded_sha256, fuel)
WHERE r.id = v.id AND r.host_id = %s AND (r.state = %s OR (r.state = %s AND r.outcome = %s))
"""

PER_ROW = f"""
UPDATE {TABLE}
SET state = %s, received_at = %s, outcome = %s, cpu_time = %s, exit_code = %s, message = %s,
    output_sha256 = %s, output_size = %s, output_inline = %s, output_file = %s, uploaded_sha256 = %s,
    fuel = %s
WHERE id = %s AND host_id = %s AND (state = %s OR (state = %s AND outcome = %s))
"""

REPORTABLE_PARAMS = [ReplicaState.IN_PROGRESS.value, ReplicaState.OVER.value, Outcome.NO_REPLY.value]


def write_reports(*, host_id: int, rows: Sequence[ReportRow], now: datetime) -> int:
    """Record ``rows`` for replicas ``host_id`` may report; returns how many were written."""
    received = connection.ops.adapt_datetimefield_value(now)
    over = ReplicaState.OVER.value
    with prepared_cursor() as cursor:
        if connection.vendor == "postgresql":
            columns = [list(column) for column in zip(*rows, strict=True)]
            cursor.execute(POSTGRES, [over, received, *columns, host_id, *REPORTABLE_PARAMS])
        else:
            cursor.executemany(
                PER_ROW,
                [[over, received, *row[1:], row[0], host_id, *REPORTABLE_PARAMS] for row in rows],
            )
        return cursor.rowcount


def lock_and_mark_units(unit_ids: Sequence[int], now: datetime) -> dict[int, tuple[int, float]]:
    """Lock the reported replicas' units, in id order (as every writer of units does, so two
    requests never wait on each other in a cycle), and mark them due for the transitioner
    now, in one statement; returns each one's app and operations."""
    among, params = any_of("id", unit_ids)
    with prepared_cursor() as cursor:
        cursor.execute(
            f"UPDATE {UNITS} SET transition_time = %s"
            f" WHERE id IN (SELECT id FROM {UNITS} WHERE {among} ORDER BY id{for_update()})"
            " RETURNING id, app_id, fpops_estimate",
            [connection.ops.adapt_datetimefield_value(now), *params],
        )
        return {unit_id: (app_id, fpops) for unit_id, app_id, fpops in cursor.fetchall()}
