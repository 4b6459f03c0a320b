"""While the database is away, requests get 503 with Retry-After, never a 500.

The outage is real: the connection's settings point at a database that cannot be reached
(a closed port on PostgreSQL, a file in a missing folder on SQLite) until they are put back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from coordinator.testing import SignedHost, make_host

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_away(tmp_path: Path) -> Iterator[None]:
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = "9"  # discard: nothing listens
    else:
        connection.settings_dict["NAME"] = str(tmp_path / "missing" / "db.sqlite3")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def test_an_api_call_while_the_database_is_away_is_503_with_retry_after(client, tmp_path):
    with database_away(tmp_path):
        response = client.get("/api/v1/leaderboards/volunteers")

    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    assert response.json()["error"] == "database_unavailable"


def test_a_page_while_the_database_is_away_is_503(client, tmp_path):
    with database_away(tmp_path):
        response = client.get("/status")

    assert response.status_code == 503 and response["Retry-After"] == "10"


def test_a_host_is_told_to_wait_during_the_outage_and_served_after_it(tmp_path):
    host = SignedHost(*make_host())
    with database_away(tmp_path):
        assert host.rpc(tasks=1).status_code == 503
    assert host.rpc(tasks=1).status_code == 200
