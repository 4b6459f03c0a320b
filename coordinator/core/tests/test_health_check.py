"""A kept PostgreSQL connection is checked before each request reuses it without a round
trip while the server is there, and replaced when the server has ended its session."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def asked(monkeypatch) -> list[int]:
    """Each ``SELECT 1`` Django's own check sends (its calls, counted, then made)."""
    calls: list[int] = []
    own = PostgresWrapper.is_usable

    def counted(self):
        calls.append(1)
        return own(self)

    monkeypatch.setattr(PostgresWrapper, "is_usable", counted)
    return calls


def as_a_request_starts() -> None:
    connection.health_check_done = False  # what Django resets when a request starts
    connection.close_if_health_check_failed()


def test_a_connection_the_server_still_holds_is_kept_without_asking(monkeypatch):
    connection.ensure_connection()
    raw, calls = connection.connection, asked(monkeypatch)
    for _ in range(3):
        as_a_request_starts()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    assert connection.connection is raw and calls == []


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it(monkeypatch):
    connection.ensure_connection()
    raw, calls = connection.connection, asked(monkeypatch)
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [raw.info.backend_pid])
    deadline = time.monotonic() + 5
    while not select.select([raw.fileno()], [], [], 0.05)[0] and time.monotonic() < deadline:
        pass  # until the server's goodbye reaches the socket

    as_a_request_starts()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    assert calls == [1]  # the socket had something to read: asked, and found dead
    assert connection.connection is not raw and pid != raw.info.backend_pid
