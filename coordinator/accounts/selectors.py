"""Reads about hosts that other apps need without knowing the accounts tables."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from coordinator.accounts.models import Host
from coordinator.accounts.relation import Holder
from coordinator.core.compiled import CompiledReadMany

HOLDER_FIELDS = (
    "id",
    "volunteer_id",
    "network",
    "registered_network",
    "volunteer__signup_network",
    "volunteer__signup_burst",
)


def holder_from_row(row: tuple) -> Holder:
    host_id, volunteer_id, network, registered, signup_network, signup_burst = row
    return Holder.of(
        host_id=host_id,
        volunteer_id=volunteer_id,
        network=network,
        registered_network=registered,
        signup_network=signup_network,
        signup_burst=signup_burst,
    )


def holders(host_ids: Iterable[int]) -> dict[int, Holder]:
    """Each host's relation keys (accounts.relation), in one query."""
    ids = set(host_ids)
    if not ids:
        return {}
    return {row[0]: holder_from_row(row) for row in _HOLDER_ROWS.many(sorted(ids))}


# Read by every validation pass: compiled once per connection (core.compiled).
_HOLDER_ROWS = CompiledReadMany(lambda ids: Host.objects.filter(pk__in=ids).values_list(*HOLDER_FIELDS))


def related_sql(holder: Holder, *, host: str, volunteer: str) -> tuple[str, list[object]]:
    """``relation.related`` by network or sign-up burst, spelled for the database: SQL true
    when the host row aliased ``host`` (its account aliased ``volunteer``) is related to
    ``holder``, with its parameters; ("", []) when only the account could relate it."""
    networks = sorted(holder.networks)
    tests: list[str] = []
    params: list[object] = []
    if networks:
        marks = ", ".join(["%s"] * len(networks))
        for column in (f"{host}.network", f"{host}.registered_network", f"{volunteer}.signup_network"):
            tests.append(f"{column} IN ({marks})")
            params.extend(networks)
    if holder.burst:
        tests.append(f"{volunteer}.signup_burst = %s")
        params.append(holder.burst)
    return (f"({' OR '.join(tests)})" if tests else ""), params


def active_host_count(*, since: datetime) -> int:
    """How many hosts called in at or after ``since``."""
    return Host.objects.filter(last_contact__gte=since).count()
