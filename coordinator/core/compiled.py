"""A hot ORM read compiled once per connection, then run with new values.

Django compiles a query set's SQL each time it runs: for the host read every signed request
starts with (a host, its volunteer and user, ``select_related``) that is about four fifths of
the read's CPU (docs/benchmarks.md). A :class:`CompiledRead` compiles its query set once per
database connection with a placeholder value, keeps the SQL, and builds the model instances
(related ones included) with Django's own converters and populators from each run's rows.
A :class:`CompiledReadMany` does the same for a read of a list of keys, one array on
PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet
from django.db.models.base import ModelState
from django.db.models.query import (  # type: ignore[attr-defined]  # get_related_populators: not in the stubs
    FlatValuesListIterable,
    ModelIterable,
    ValuesIterable,
    ValuesListIterable,
    get_related_populators,
)
from django.db.models.signals import post_init, pre_init
from django.db.models.sql.compiler import SQLCompiler

from coordinator.core.prepared import prepared_cursor

M = TypeVar("M", bound=Model)
R = TypeVar("R")  # a row: a model, or what values() or values_list() gives
SHAPES = (ModelIterable, ValuesIterable, ValuesListIterable, FlatValuesListIterable)

# Stands for the value in the compiled parameters: no real key is this negative.
PLACEHOLDER = -7_340_168_052_227_119_913
_MARK = re.compile(r"%[%s]")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    compiler: SQLCompiler
    init_list: list[str]
    fields: slice
    populators: list[Any]
    shape: type = ModelIterable  # what the query set gives: models, values() or values_list()
    names: tuple[str, ...] = ()  # values(): each dict's keys
    # Django's converters for the selected columns, and the columns when some of them are
    # composite: what ``results_iter`` works out again on every run, once.
    converters: dict[int, Any] = field(default_factory=dict)
    composite: list[Any] | None = None


class CompiledRead(Generic[M]):
    """``read.get(value)``: the one row of ``queryset_for(value)``, or None.

    ``queryset_for`` must use ``value`` as a plain parameter (a filter on an integer column),
    and have no annotations and no ``prefetch_related``: what ``select_related`` and the
    model's fields give is built; anything else is refused when compiled.
    """

    def __init__(self, queryset_for: Callable[[int], QuerySet[M]]) -> None:
        self._queryset_for = queryset_for
        self._by_connection: WeakKeyDictionary[BaseDatabaseWrapper, _Compiled] = WeakKeyDictionary()

    def get(self, value: int) -> M | None:
        connection = connections[DEFAULT_DB_ALIAS]  # this thread's own: compiled for it alone
        compiled = self._by_connection.get(connection)
        if compiled is None:
            compiled = self._by_connection[connection] = _compile(self._queryset_for(PLACEHOLDER), connection)
        params = [value if param == PLACEHOLDER else param for param in compiled.params]
        with prepared_cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchmany(2)
        if not rows:
            return None
        if len(rows) > 1:
            raise ValueError(f"{compiled.sql!r} gave more than one row")
        return _built(compiled, connection, rows)[0]


class CompiledReadMany(Generic[R]):
    """``read.many(values)``: the rows of ``queryset_for(values)``, in its order.

    ``queryset_for`` filters an integer column ``__in`` the list it is given, once, with the
    rules of :class:`CompiledRead`; it may also be a ``values()`` or ``values_list()`` query
    set. On PostgreSQL the list is one array (``= ANY(%s)``), so one prepared statement
    serves every count; elsewhere the query set runs as it is.
    """

    def __init__(self, queryset_for: Callable[[list[int]], QuerySet[Any, R]]) -> None:
        self._queryset_for = queryset_for
        self._by_connection: WeakKeyDictionary[BaseDatabaseWrapper, _Compiled] = WeakKeyDictionary()

    def many(self, values: Sequence[int]) -> list[R]:
        if not values:
            return []
        connection = connections[DEFAULT_DB_ALIAS]
        if connection.vendor != "postgresql":
            return list(self._queryset_for(list(values)))
        compiled = self._by_connection.get(connection)
        if compiled is None:
            compiled = self._by_connection[connection] = _as_any(
                _compile(self._queryset_for([PLACEHOLDER]), connection)
            )
        params = [list(values) if param == PLACEHOLDER else param for param in compiled.params]
        with prepared_cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        return _built(compiled, connection, rows) if rows else []


def _compile(queryset: QuerySet[Any, Any], connection: BaseDatabaseWrapper) -> _Compiled:
    if getattr(queryset, "_prefetch_related_lookups", ()) or queryset.query.annotation_select:
        raise ValueError("a compiled read takes no annotations and no prefetch_related")
    shape = queryset._iterable_class
    if shape not in SHAPES:
        raise ValueError(f"a compiled read gives models, values() or values_list(), not {shape.__name__}")
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    if list(params).count(PLACEHOLDER) != 1:
        raise ValueError("the query set must use its value once, as a plain parameter")
    columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
    conversion = {
        "converters": compiler.get_converters(columns),
        "composite": columns if compiler.has_composite_fields(columns) else None,
    }
    if shape is not ModelIterable:
        names = (*queryset.query.extra_select, *queryset.query.values_select)
        return _Compiled(
            sql, tuple(params), compiler, [], slice(0), [], shape=shape, names=names, **conversion
        )
    select, klass_info = compiler.select, compiler.klass_info
    first, last = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    return _Compiled(
        sql=sql,
        params=tuple(params),
        compiler=compiler,
        init_list=[column[0].target.attname for column in select[first:last]],
        fields=slice(first, last),
        populators=get_related_populators(klass_info, select, connection.alias),
        **conversion,
    )


def _as_any(compiled: _Compiled) -> _Compiled:
    """The placeholder's ``IN (%s)`` made ``= ANY(%s)``, found by its place among the
    parameters (``%%`` is a percent sign, not a parameter)."""
    index = compiled.params.index(PLACEHOLDER)
    marks = [match for match in _MARK.finditer(compiled.sql) if match.group() == "%s"]
    at = marks[index].start()
    if compiled.sql[at - 4 : at] != "IN (" or compiled.sql[at + 2 : at + 3] != ")":
        raise ValueError("the query set must filter on its values with __in")
    return replace(compiled, sql=f"{compiled.sql[: at - 4]}= ANY(%s){compiled.sql[at + 3 :]}")


def _built(compiled: _Compiled, connection: BaseDatabaseWrapper, rows: list[Any]) -> list[Any]:
    """Model instances from the rows, related ones included, with Django's converters (or
    the dicts, tuples or values a values query set gives)."""
    converted = _converted(compiled, rows)
    if compiled.shape is not ModelIterable:
        if compiled.shape is ValuesIterable:
            return [dict(zip(compiled.names, row, strict=True)) for row in converted]
        if compiled.shape is FlatValuesListIterable:
            return [row[0] for row in converted]
        return [tuple(row) for row in converted]
    model = compiled.compiler.klass_info["model"]
    build = partial(_from_db, model) if _plain(model) else model.from_db
    instances = []
    for row in converted:
        instance = build(connection.alias, compiled.init_list, row[compiled.fields])
        for populator in compiled.populators:
            populator.populate(row, instance)
        instances.append(instance)
    return instances


def _plain(model: type[Model]) -> bool:
    """Whether ``Model.from_db`` may be skipped: the model keeps Django's own, and nothing
    listens to the creation of its instances (``pre_init``, ``post_init``)."""
    own = getattr(model.from_db, "__func__", None) is not Model.from_db.__func__  # type: ignore[attr-defined]
    return not own and not pre_init.has_listeners(model) and not post_init.has_listeners(model)


def _from_db(model: type[M], alias: str, names: list[str], values: Sequence[Any]) -> M:
    """What ``Model.from_db`` makes, without ``__init__``'s pass over every field: the values
    set as the instance's attributes (a field not read stays deferred, as Django leaves it)."""
    instance = model.__new__(model)
    instance.__dict__.update(zip(names, values, strict=True))
    state = instance._state = ModelState()
    state.adding, state.db = False, alias
    return instance


def _converted(compiled: _Compiled, rows: list[Any]) -> Iterable[Any]:
    """The rows as ``results_iter`` gives them, with the converters worked out at compile."""
    converted: Iterable[Any] = rows
    if compiled.converters:
        converted = compiled.compiler.apply_converters(converted, compiled.converters)
    if compiled.composite is not None:
        converted = compiled.compiler.composite_fields_to_tuples(converted, compiled.composite)
    return converted
