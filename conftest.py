"""Fixtures for the whole suite: a scratch media folder, an empty cache and broker, and the
PostgreSQL marker."""

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings

# A persistent connection outlives a live server's keep-alive request thread and keeps the
# test database from being dropped; in tests, every request closes its connection.
django_settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


# The client's own tests touch no database: the SQLite pass and the Python 3.9 pass run them,
# and the PostgreSQL pass leaves them out (a minute of CI saved, nothing left untested).
CLIENT_TESTS = Path(__file__).resolve().parent / "client" / "tests"


def on_postgres_pass() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))


def pytest_report_header(config):
    if on_postgres_pass():
        return "tessera: database PostgreSQL (client and `sqlite_pass` tests run in the SQLite pass)"
    return "tessera: database SQLite (PostgreSQL-only tests skip)"


def pytest_collection_modifyitems(config, items):
    if on_postgres_pass():
        client = [item for item in items if CLIENT_TESTS in Path(item.path).parents]
        if client:
            config.hook.pytest_deselected(items=client)
            items[:] = [item for item in items if CLIENT_TESTS not in Path(item.path).parents]
        for item in items:
            marker = item.get_closest_marker("sqlite_pass")
            if marker is not None:
                item.add_marker(pytest.mark.skip(reason=f"runs in the SQLite pass only: {marker.args[0]}"))
        return
    skip = pytest.mark.skip(
        reason="needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Rate limits live in the cache, keyed by host id or address; ids come back after a
    rolled-back test, so one test's requests must not count against the next one's host."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fresh_process_caches():
    """Plan classes and app versions cached by an earlier test may have been rolled back."""
    from coordinator.work.selectors import forget_caches

    forget_caches()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 is slow on purpose; tests make many accounts and do not test hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_broker():
    """Hints sent by one test (to dramatiq's in-memory broker) must not run in another."""
    import dramatiq

    broker = dramatiq.get_broker()
    _fresh_queues(broker)
    yield broker
    _fresh_queues(broker)


def _fresh_queues(broker) -> None:
    """Empty the in-memory broker's queues and forget their unfinished counts.

    A worker stopped with prefetched messages never acks them, and the stub broker's
    requeue does nothing, so `flush_all` would leave the count above zero and a later
    `broker.join` would wait forever (a CI run hung on exactly this).
    """
    from queue import Queue

    broker.flush_all()
    for name in broker.queues:
        broker.queues[name] = Queue()


@pytest.fixture(autouse=True)
def project_key_file(settings, tmp_path):
    """No test signs with a developer's real key in var/: each starts with no key file."""
    settings.PROJECT_KEY_FILE = tmp_path / "project-signing.key"
    return settings.PROJECT_KEY_FILE


@pytest.fixture(autouse=True)
def ledger_rows_removable_for_flush(request):
    """Let a transactional test's flush empty the append-only ledger on SQLite.

    Django ends such a test with ``DELETE FROM`` on every table, which the ledger's SQLite
    triggers refuse; PostgreSQL flushes with TRUNCATE, which row triggers do not see. So,
    after the test and before the flush, drop the triggers, delete the rows, and put the
    triggers back exactly as the migration made them.
    """
    from pytest_django.fixtures import validate_django_db

    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and validate_django_db(marker)[0]) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if not transactional:
        yield
        return
    # Set the database up now, so that its flush comes after this fixture's teardown.
    request.getfixturevalue("_django_db_helper")
    yield

    import importlib

    from django.db import connection, transaction

    if connection.vendor != "sqlite":
        return
    triggers = importlib.import_module("coordinator.validation.migrations.0002_ledger_append_only")
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in triggers.SQLITE_DOWN:
            cursor.execute(statement)
        cursor.execute("DELETE FROM validation_ledgerentry")
        for statement in triggers.SQLITE_UP:
            cursor.execute(statement)
