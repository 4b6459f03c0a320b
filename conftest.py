"""Fixtures for the whole suite: a scratch media folder and the PostgreSQL marker."""

import os

import pytest
from django.conf import settings as django_settings

# A persistent connection outlives a live server's keep-alive request thread and keeps the
# test database from being dropped; in tests, every request closes its connection.
django_settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def pytest_report_header(config):
    url = os.environ.get("DATABASE_URL", "")
    kind = "PostgreSQL" if url.startswith(("postgres", "pgsql")) else "SQLite (PostgreSQL-only tests skip)"
    return f"tessera: database {kind}"


def pytest_collection_modifyitems(config, items):
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres", "pgsql")):
        return
    skip = pytest.mark.skip(
        reason="needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 is slow on purpose; tests make many accounts and do not test hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_broker():
    """Hints sent by one test (to dramatiq's in-memory broker) must not run in another."""
    import dramatiq

    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()
