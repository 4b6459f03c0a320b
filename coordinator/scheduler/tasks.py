"""What a report sets in motion, wired here and nowhere else: the lifecycle's transition of
the units it touched, the validator for the units that transition marked, and the word that
a batch's last unit settled."""

import dramatiq
from django.utils import timezone

from coordinator.validation import services as validator
from coordinator.work import services as transitioner
from coordinator.work.selectors import marked_for_validation


@dramatiq.actor(max_retries=3, time_limit=60_000)
def after_reports(unit_ids: list[int]) -> None:
    """Apply the lifecycle to units a report just touched, with those other reports marked
    meanwhile, then judge those it marked, with whatever else waits for the validator (in
    this message: a second one would cost a broker round trip and a task per report). Under
    load one pass takes the work of many messages, and the ones behind it find theirs done
    and stop after one query.
    Safe to run twice; the sweeps find the same work if this message is lost. A batch whose
    last active unit settled here is announced, to be assimilated at once rather than at the
    next sweep."""
    taken = transitioner.transition_units_and_waiting(unit_ids=unit_ids, now=timezone.now())
    ready = marked_for_validation(taken) if taken else []
    judged = validator.validate_units_and_waiting(unit_ids=ready, now=timezone.now()) if ready else []
    settled = sorted(set(taken).union(judged))
    if settled:
        transitioner.announce_finished_batches(settled)
