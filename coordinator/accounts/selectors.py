"""Reads about hosts that other apps need without knowing the accounts tables."""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.accounts.models import Host
from coordinator.accounts.relation import Holder

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
    rows = Host.objects.filter(pk__in=ids).values_list(*HOLDER_FIELDS)
    return {row[0]: holder_from_row(row) for row in rows}
