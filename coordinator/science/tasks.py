"""The splitter's actors: thin wrappers over the services, safe to run twice."""

import dramatiq
from django.utils import timezone

from coordinator.core.hints import hint
from coordinator.science import cleanup, services


@dramatiq.actor(max_retries=3, time_limit=120_000)
def split_batch(batch_id: int) -> None:
    """Make a new batch's units now (the sweep finishes what a time limit cut short)."""
    services.split_batch(batch_id=batch_id, now=timezone.now())


@dramatiq.actor(max_retries=0, time_limit=120_000)
def split_sweep() -> None:
    services.split_due_batches(now=timezone.now())


@dramatiq.actor(max_retries=3, time_limit=300_000)
def assimilate_batch(batch_id: int) -> None:
    """A batch whose last unit just settled: its result now (the sweep does it otherwise)."""
    services.assimilate_batch(batch_id=batch_id, now=timezone.now())


def assimilate_soon(sender: object, batch_ids: list[int], **kwargs: object) -> None:
    """The ``work.signals.batches_finished`` receiver: a message for each batch."""
    for batch_id in batch_ids:
        hint(assimilate_batch, batch_id)


@dramatiq.actor(max_retries=0, time_limit=300_000)
def assimilation_sweep() -> None:
    """Finished batches: their canonical outputs to the app's assimilator, the result kept."""
    services.assimilate_due_batches(now=timezone.now())


@dramatiq.actor(max_retries=0, time_limit=300_000)
def cleanup_sweep() -> None:
    """Outputs nobody needs after assimilation; inputs and outputs of retired batches."""
    cleanup.finish_cancelled_batches(now=timezone.now())
    cleanup.clean_assimilated_batches()
    cleanup.purge_retired_batches(now=timezone.now())


@dramatiq.actor(max_retries=3, time_limit=300_000)
def finish_cancel(batch_id: int) -> None:
    """Call off the rest of a big cancelled batch's units (the cleanup sweep would, later)."""
    cleanup.finish_cancelled_batches(now=timezone.now(), budget_seconds=240)
