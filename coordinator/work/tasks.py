"""The transitioner's actors: thin wrappers over the services, safe to run twice."""

import dramatiq
from django.utils import timezone

from coordinator.core.hints import hint
from coordinator.validation.tasks import validate_units
from coordinator.work import services
from coordinator.work.models import WorkUnit


@dramatiq.actor(max_retries=3, time_limit=60_000)
def transition_units(unit_ids: list[int]) -> None:
    """Apply the lifecycle to units a report just touched, and wake the validator for them."""
    services.transition_units(unit_ids=unit_ids, now=timezone.now())
    ready = list(WorkUnit.objects.filter(id__in=unit_ids, need_validate=True).values_list("id", flat=True))
    if ready:
        hint(validate_units, ready)


@dramatiq.actor(max_retries=0, time_limit=300_000)
def transition_sweep() -> None:
    """Every unit whose transition time has come, or with a replica past its deadline."""
    services.transition_due_units(now=timezone.now())
