"""The transitioner's sweep: a thin wrapper over the service, safe to run twice. What a
report sets in motion (transition, then validation) is wired in ``scheduler.tasks``."""

import dramatiq
from django.utils import timezone

from coordinator.work import services


@dramatiq.actor(max_retries=0, time_limit=300_000)
def transition_sweep() -> None:
    """Every unit whose transition time has come, or with a replica past its deadline."""
    services.transition_due_units(now=timezone.now())
