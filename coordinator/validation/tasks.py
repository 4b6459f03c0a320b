"""The validator's actors: thin wrappers over the services, safe to run twice."""

import dramatiq
from django.utils import timezone

from coordinator.validation import services


@dramatiq.actor(max_retries=3, time_limit=120_000)
def validate_units(unit_ids: list[int]) -> None:
    """Judge units the transitioner just marked for validation."""
    services.validate_units(unit_ids=unit_ids, now=timezone.now())


@dramatiq.actor(max_retries=0, time_limit=300_000)
def validation_sweep() -> None:
    """Every unit marked for validation, whatever message was lost."""
    services.validate_due_units(now=timezone.now())
