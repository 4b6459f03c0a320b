"""The hot path's statements, prepared once per connection on PostgreSQL.

Django binds parameters on the client (psycopg's ``ClientCursor``): every statement reaches
PostgreSQL as new text, which it parses and plans again. Over one ``bench.throughput`` run
planning alone took 2.2 s of the database's CPU, 0.7 ms each time for the claim and 0.4 ms
for the request's host read (docs/benchmarks.md). A :func:`prepared_cursor` binds on the
server and prepares each statement the first time its connection runs it; PostgreSQL then
plans it with the values for its first five runs and, where a plan for any values costs no
more, keeps that one (``plan_cache_mode``). Only fixed SQL should go through it: psycopg
keeps a hundred statements a connection and drops the least used.

``binary`` placeholders (``%b``) send a value in PostgreSQL's binary form: for arrays of
timestamps about a fifth of the CPU of the text form.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorWrapper

_WORD = re.compile(r"[a-z_]+")


@contextmanager
def prepared_cursor() -> Iterator[CursorWrapper]:
    """Django's cursor (its error wrapping, its query log in tests), preparing on PostgreSQL;
    elsewhere the plain cursor. On PostgreSQL one cursor serves each connection's statements
    in turn (making one through Django cost as much as running a short statement); one used
    inside another's block gets a cursor of its own."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's own
    wrapper.close_if_health_check_failed()  # first, so the connection made below is the one used
    wrapper.ensure_connection()
    kept = _kept.get(wrapper)
    if kept is not None and kept.busy:  # a statement run inside another's block
        with _preparing(wrapper) as cursor:
            yield cursor
        return
    if kept is None or not kept.fits(wrapper.connection, wrapper.queries_logged):
        if kept is not None:
            kept.cursor.close()
        kept = _kept[wrapper] = _Kept(wrapper.connection, wrapper.queries_logged, _preparing(wrapper))
    kept.busy = True
    try:
        yield kept.cursor
    finally:
        kept.busy = False


def _preparing(wrapper: Any) -> CursorWrapper:
    raw = wrapper.connection
    plain, raw.cursor_factory = raw.cursor_factory, _PreparingCursor
    try:
        return wrapper.cursor()  # Django's own path: health check, time zone, wrapper
    finally:
        raw.cursor_factory = plain


class _Kept:
    """A connection's cursor, kept for its next statement."""

    def __init__(self, raw: Any, logged: bool, cursor: CursorWrapper) -> None:
        self.raw, self.logged, self.cursor, self.busy = raw, logged, cursor, False

    def fits(self, raw: Any, logged: bool) -> bool:
        """On this same server connection, logging as Django now would, and open."""
        return self.raw is raw and self.logged == logged and not self.cursor.closed


# Each thread's database connection (Django's wrapper) and the cursor it keeps.
_kept: weakref.WeakKeyDictionary[Any, _Kept] = weakref.WeakKeyDictionary()


def literal(value: str) -> str:
    """A constant of our own code (a state's name) spelled in the SQL, not bound: a plan for
    any values still knows it, and uses the partial indexes made for it. Only a plain word
    is taken, so nothing from outside can ride in on it."""
    text = str(value)  # a StrEnum's member is its value
    if not _WORD.fullmatch(text):
        raise ValueError(f"not a plain word: {text!r}")
    return f"'{text}'"


def placeholder(values: list[Any]) -> str:
    """``%b`` (binary) for an array whose values are all of one type on PostgreSQL, else
    ``%s`` (text), as Django sends it: an enum's values beside plain strings, say."""
    if connection.vendor == "postgresql" and len({type(v) for v in values if v is not None}) <= 1:
        return "%b"
    return "%s"


class _PreparingCursor(psycopg.Cursor):
    """Binds on the server and prepares every statement on its connection's first run."""

    def execute(  # the same call, another default
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> _PreparingCursor:
        return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

    def _send_query_prepared(self, name: bytes, pgq: Any, *, binary: bool | None = None) -> None:
        # psycopg keeps the statement it sent for Django's query log, but not when it runs a
        # prepared one (psycopg 3.3): keep it here too (test_prepared checks the log).
        self._query = pgq
        super()._send_query_prepared(name, pgq, binary=binary)
