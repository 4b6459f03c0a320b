"""The hot path's statements are prepared once per connection on PostgreSQL, and only they:
the ORM's own statements are not; what goes through the prepared cursor is still in Django's
query log; and arrays go in binary only where their values are of one type."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordinator.accounts.models import Host
from coordinator.core.bulk import update_rows
from coordinator.core.prepared import placeholder, prepared_cursor
from coordinator.testing import make_host

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PROBE = "SELECT id FROM accounts_host WHERE id = %s"


def prepared_statements() -> dict[str, tuple[int, int]]:
    """This connection's prepared statements: their text, and their generic and custom plans."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return {statement: (generic, custom) for statement, generic, custom in cursor.fetchall()}


def test_a_statement_is_prepared_once_and_planned_for_any_value_after_five_runs():
    host, _ = make_host()
    for _ in range(8):
        with prepared_cursor() as cursor:
            cursor.execute(PROBE, [host.pk])
            assert cursor.fetchone() == (host.pk,)

    mine = {text: plans for text, plans in prepared_statements().items() if "accounts_host" in text}
    assert list(mine) == ["SELECT id FROM accounts_host WHERE id = $1"]
    generic, custom = mine["SELECT id FROM accounts_host WHERE id = $1"]
    assert custom == 5 and generic == 3  # PostgreSQL stopped planning it after five runs


def test_the_orms_own_statements_are_not_prepared():
    host, _ = make_host()
    for _ in range(8):
        assert Host.objects.filter(pk=host.pk).exists()
    assert not any("accounts_host" in text for text in prepared_statements())


def test_what_the_prepared_cursor_runs_is_in_djangos_query_log():
    host, _ = make_host()
    with CaptureQueriesContext(connection) as queries, prepared_cursor() as cursor:
        cursor.execute(PROBE, [host.pk])
    assert [query["sql"] for query in queries.captured_queries] == [
        "SELECT id FROM accounts_host WHERE id = $1"
    ]


def test_an_array_goes_in_binary_only_when_its_values_are_of_one_type():
    now = timezone.now()
    assert placeholder([now, None, now]) == "%b"
    assert placeholder([None, None]) == "%b"
    assert placeholder([1, 1.5]) == "%s"  # psycopg refuses it either way; the text form says so in SQL terms


def test_timestamps_and_numbers_written_in_binary_read_back_the_same():
    hosts = [make_host()[0] for _ in range(3)]
    moment = timezone.now().replace(microsecond=123456) - timedelta(days=400)
    for index, host in enumerate(hosts):
        host.rac, host.rac_time = 1.25 * index, moment + timedelta(seconds=index)
    assert update_rows(Host, hosts, ["rac", "rac_time"]) == 3

    for index, host in enumerate(hosts):
        stored = Host.objects.get(pk=host.pk)
        assert (stored.rac, stored.rac_time) == (1.25 * index, moment + timedelta(seconds=index))


def test_one_cursor_serves_a_connections_statements_in_turn_and_a_nested_one_gets_its_own():
    host, _ = make_host()
    with prepared_cursor() as first:
        first.execute(PROBE, [host.pk])
        with prepared_cursor() as inner:  # while the first one's rows are still unread
            assert inner is not first
            inner.execute("SELECT 2")
            assert inner.fetchone() == (2,)
        assert first.fetchone() == (host.pk,)
    with prepared_cursor() as again:
        assert again is first, "kept for the connection's next statement"
        again.execute(PROBE, [host.pk])
        assert again.fetchone() == (host.pk,)


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_gets_a_new_cursor():
    with prepared_cursor() as before:
        before.execute("SELECT 1")
    connection.close()
    with prepared_cursor() as after:
        assert after is not before
        after.execute("SELECT 1")
        assert after.fetchone() == (1,)
