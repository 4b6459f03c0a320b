"""The planner's statistics, refreshed when a table outgrows them.

Autovacuum analyzes a table only after its nap (a minute by default). A batch split in the
meantime leaves PostgreSQL believing the work tables hold the few rows they held before,
and it then plans dispatch as a nested loop over every unit of the app: measured in
``bench.throughput``, the dispatch query took 77-334 ms instead of under 1 ms. So whoever
adds many rows asks here, and the tables that grew by more than half since their last
analysis are analyzed at once. ANALYZE reads a fixed sample (not the table) and blocks
neither reads nor writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model

GROWTH = 0.5  # analyze once a table has grown by half the pages its statistics know
MIN_PAGES = 16  # below this any plan is fast enough (128 kB, some hundreds of rows)


def stale_tables(models: Sequence[type[Model]]) -> list[str]:
    """The tables of ``models`` now larger than their statistics say by more than ``GROWTH``
    (and at least ``MIN_PAGES``). Their size on disk grows with each insert, at once, where
    the counters of changed rows reach the statistics views only a while after commit."""
    if connection.vendor != "postgresql" or not models:
        return []
    tables = [model._meta.db_table for model in models]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'"
            " AND pg_relation_size(oid) / current_setting('block_size')::int"
            " > GREATEST(%s, (1 + %s) * relpages)",
            [tables, MIN_PAGES, GROWTH],
        )
        return sorted(row[0] for row in cursor.fetchall())


def refresh_if_grown(models: Sequence[type[Model]]) -> list[str]:
    """ANALYZE the stale tables among those of ``models``; returns their names."""
    stale = stale_tables(models)
    if stale:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(name) for name in stale))
    return stale
