"""The planner's statistics, refreshed when a writer has outgrown them.

Autovacuum analyzes a table only after its nap (a minute by default). A batch split in the
meantime leaves PostgreSQL believing the work tables hold the few rows they held before,
and it then plans dispatch as a nested loop over every unit of the app: measured in
``bench.throughput``, the dispatch query took 77-334 ms instead of under 1 ms. So a writer
that adds many rows counts them and asks here, and the tables are analyzed once those rows
outnumber half of what the planner believes they hold. The writer counts, because the
statistics views learn of inserts only a while after commit, and a table's size on disk
says nothing when it holds dead rows. ANALYZE reads a fixed sample (not the table) and
blocks neither reads nor writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model

GROWTH = 0.5  # analyze once the rows added pass this share of the rows the planner knows
MIN_ROWS = 500  # below this many new rows any plan is fast enough


def planner_rows(model: type[Model]) -> float:
    """How many rows the planner believes ``model``'s table holds (0 if never analyzed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT GREATEST(reltuples, 0) FROM pg_class WHERE relname = %s AND relkind = 'r'",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return float(row[0]) if row else 0.0


def refresh_if_outgrown(model: type[Model], added: int, *, alongside: Sequence[type[Model]] = ()) -> bool:
    """ANALYZE ``model``'s table, and the tables written ``alongside`` it, when the ``added``
    rows the caller wrote since it last got True outnumber ``GROWTH`` of the rows the planner
    believes the table holds (and ``MIN_ROWS``). Whether it did; on SQLite, never."""
    if connection.vendor != "postgresql" or added < MIN_ROWS or added <= GROWTH * planner_rows(model):
        return False
    names = [connection.ops.quote_name(m._meta.db_table) for m in (model, *alongside)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(names))
    return True
