"""Housekeeping for hosts."""

import dramatiq
from django.utils import timezone

from coordinator.accounts import services


@dramatiq.actor(max_retries=0, time_limit=60_000)
def purge_nonces_sweep() -> None:
    """Drop request nonces older than the signature window (they are refused as stale)."""
    services.purge_nonces(now=timezone.now())
