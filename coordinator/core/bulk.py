"""Updating many rows with different values in one statement.

Django's ``bulk_update`` writes ``SET f = CASE WHEN id = … THEN … END`` with one ``When``
per row and field, and resolving and compiling those cost the validator 90 % of its time
(docs/benchmarks.md). On PostgreSQL this sends one ``UPDATE … FROM unnest(arrays)``
instead, one array per field, each in binary where its values are of one type
(``core.prepared``); elsewhere it is ``bulk_update``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any, cast

from django.db import connection
from django.db.models import DecimalField, Field, JSONField, Model
from django.db.models.expressions import BaseExpression

from coordinator.core.prepared import placeholder, prepared_cursor


def update_rows(model: type[Model], rows: Sequence[Model], fields: Sequence[str]) -> int:
    """Write ``fields`` of every row in ``rows`` (by primary key); returns rows updated."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        return model._default_manager.bulk_update(rows, fields)
    meta = model._meta
    # Concrete fields by name: never a relation's reverse side or a generic foreign key.
    columns = [meta.pk, *(cast(Field, meta.get_field(name)) for name in fields)]
    quote = connection.ops.quote_name
    arrays = [list(map(_preparer(column), map(attrgetter(column.attname), rows))) for column in columns]
    names = [f"c{i}" for i in range(len(columns))]
    sets = ", ".join(
        f"{quote(column.column)} = v.{name}" for column, name in zip(columns[1:], names[1:], strict=True)
    )
    casts = ", ".join(
        f"{placeholder(values)}::{_db_type(column)}[]" for column, values in zip(columns, arrays, strict=True)
    )
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {sets} FROM unnest({casts}) AS v({', '.join(names)}) "
        f"WHERE t.{quote(meta.pk.column)} = v.{names[0]}"
    )
    with prepared_cursor() as cursor:
        cursor.execute(sql, arrays)
        return cursor.rowcount


PLAIN = (int, float, str, bytes, bool, type(None))


@lru_cache(maxsize=1024)
def _db_type(field: Field) -> str:
    """The column's type on PostgreSQL, for the arrays' casts, worked out once: Django formats
    it anew at each call, a quarter of ``update_rows``' time in the validator's profile."""
    return cast(str, field.db_type(connection))


@lru_cache(maxsize=1024)
def _preparer(field: Field) -> Callable[[object], object]:
    """How a value of ``field`` becomes the database's. A plain Python value already is (most
    cells, most time: Django's chain of calls per cell was 7 % of the validator's profile),
    except in a JSON field, where a string or a number is JSON to encode, and a decimal one,
    which rounds a float to its own places."""
    prepare = field.get_db_prep_save
    if isinstance(field, (JSONField, DecimalField)):
        return lambda value: prepare(value, connection)
    return lambda value: value if type(value) in PLAIN else prepare(value, connection)


def _prepared(field: Field, value: object) -> object:
    """One value of ``field`` as the database's (:func:`_preparer`)."""
    return _preparer(field)(value)


def _cell(field: Field) -> Callable[[Model], Any]:
    """How a row's value of ``field`` is read for an INSERT: its attribute, or its
    ``pre_save`` where the field computes one (``auto_now_add``, a file's name)."""
    if type(field).pre_save is Field.pre_save:
        return attrgetter(field.attname)
    return lambda row: field.pre_save(row, True)


def insert_rows(model: type[Model], rows: Sequence[Model]) -> None:
    """Insert ``rows`` and set their primary keys, like ``bulk_create``.

    Django's ``bulk_create`` builds one ``VALUES`` tuple per row and one parameter per cell,
    which costs a batch's splitter most of its time (docs/benchmarks.md). On PostgreSQL this
    sends one ``INSERT … SELECT FROM unnest(arrays) RETURNING id`` instead, one array per
    column, in row order; elsewhere it is ``bulk_create``.
    """
    if not rows:
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk]
    values = [list(map(_preparer(field), map(_cell(field), rows))) for field in fields]
    if connection.vendor != "postgresql" or any(
        isinstance(v, BaseExpression) for column in values for v in column
    ):
        model._default_manager.bulk_create(rows)
        return
    ids = _insert(model, dict(zip(fields, values, strict=True)), {}, returning=True)
    for row, pk in zip(rows, ids, strict=True):
        row.pk = pk
        row._state.adding, row._state.db = False, connection.alias


def insert_columns(model: type[Model], columns: Mapping[str, Sequence[Any]]) -> None:
    """Insert one row per place in ``columns`` (field names to equal-length lists of values);
    every other field gets what a new instance would hold (its default, ``auto_now_add``'s
    now), worked out once. No model instance is built for the rows: a split chunk's
    replicas are thousands, and building them cost it more than writing them."""
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    if not lengths.pop():
        return
    meta = model._meta
    given = {cast(Field, meta.get_field(name)): values for name, values in columns.items()}
    if connection.vendor != "postgresql":
        names = [field.attname for field in given]
        model._default_manager.bulk_create(
            [model(**dict(zip(names, row, strict=True))) for row in zip(*given.values(), strict=True)]
        )
        return
    template = model()
    constants = {
        field: _prepared(field, field.pre_save(template, True))
        for field in meta.concrete_fields
        if field is not meta.pk and field not in given
    }
    arrays = {field: list(map(_preparer(field), values)) for field, values in given.items()}
    _insert(model, arrays, constants, returning=False)


def _insert(
    model: type[Model], arrays: dict[Field, list[Any]], constants: dict[Field, Any], *, returning: bool
) -> list[int]:
    """``INSERT … SELECT FROM unnest(arrays)`` in the arrays' order, one value for each of
    ``constants``' columns; the new primary keys in order when ``returning``."""
    meta = model._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in [*arrays, *constants])
    casts = ", ".join(f"{placeholder(values)}::{_db_type(field)}[]" for field, values in arrays.items())
    names = [f"c{i}" for i in range(len(arrays))]
    selected = [*names, *(f"%s::{_db_type(field)}" for field in constants)]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {', '.join(selected)} "
        f"FROM unnest({casts}) WITH ORDINALITY AS v({', '.join(names)}, position) ORDER BY position"
    )
    if returning:
        sql += f" RETURNING {quote(meta.pk.column)}"
    with prepared_cursor() as cursor:
        cursor.execute(sql, [*constants.values(), *arrays.values()])  # in the SQL's order
        return [row[0] for row in cursor.fetchall()] if returning else []


def any_of(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """SQL true when ``column`` is one of ``values``, with its parameters: one array on
    PostgreSQL (one parameter to adapt, one plan whatever the count), a list elsewhere."""
    if not values:  # SQLite refuses "IN ()"
        return "1 = 0", []
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def for_no_key_update() -> str:
    """``FOR NO KEY UPDATE`` on PostgreSQL: the row is held against other writers as with
    ``FOR UPDATE``, but a row elsewhere that refers to it (a foreign key's check takes ``FOR KEY
    SHARE``) is written meanwhile; elsewhere as :func:`for_update`."""
    if connection.features.has_select_for_no_key_update:
        return " FOR NO KEY UPDATE"
    return for_update()


def for_update() -> str:
    """`` FOR UPDATE`` where the database locks rows that way; SQLite locks the whole
    database for a write transaction instead."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""
