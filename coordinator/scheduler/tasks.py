"""What a report sets in motion, wired here and nowhere else: the lifecycle's transition of
the units it touched, then the validator for the units that transition marked."""

import dramatiq
from django.utils import timezone

from coordinator.core.hints import hint
from coordinator.validation.tasks import validate_units
from coordinator.work import services as transitioner
from coordinator.work.selectors import marked_for_validation


@dramatiq.actor(max_retries=3, time_limit=60_000)
def after_reports(unit_ids: list[int]) -> None:
    """Apply the lifecycle to units a report just touched, and wake the validator for them.
    Safe to run twice; the sweeps find the same work if this message is lost."""
    transitioner.transition_units(unit_ids=unit_ids, now=timezone.now())
    ready = marked_for_validation(unit_ids)
    if ready:
        hint(validate_units, ready)
