"""Updating many rows with different values in one statement.

Django's ``bulk_update`` writes ``SET f = CASE WHEN id = … THEN … END`` with one ``When``
per row and field, and resolving and compiling those cost the validator 90 % of its time
(docs/benchmarks.md). On PostgreSQL this sends one ``UPDATE … FROM unnest(arrays)``
instead, one array per field; elsewhere it is ``bulk_update``.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model


def update_rows(model: type[Model], rows: Sequence[Model], fields: Sequence[str]) -> int:
    """Write ``fields`` of every row in ``rows`` (by primary key); returns rows updated."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        return model.objects.bulk_update(rows, fields)
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    quote = connection.ops.quote_name
    arrays = [
        [column.get_db_prep_save(getattr(row, column.attname), connection) for row in rows]
        for column in columns
    ]
    names = [f"c{i}" for i in range(len(columns))]
    sets = ", ".join(
        f"{quote(column.column)} = v.{name}" for column, name in zip(columns[1:], names[1:], strict=True)
    )
    casts = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {sets} FROM unnest({casts}) AS v({', '.join(names)}) "
        f"WHERE t.{quote(meta.pk.column)} = v.{names[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        return cursor.rowcount
