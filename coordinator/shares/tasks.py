"""Housekeeping for fair share."""

import dramatiq
from django.utils import timezone

from coordinator.shares import services


@dramatiq.actor(max_retries=0, time_limit=60_000)
def forget_use_sweep() -> None:
    services.forget_old_use(now=timezone.now())
