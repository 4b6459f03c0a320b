"""The splitter's actors: thin wrappers over the services, safe to run twice."""

import dramatiq
from django.db import transaction
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


def cancel(batch_id: int) -> int:
    """Cancel a batch for a request: mark it, call off what a few seconds allow, and leave
    the rest to a worker. Returns how many units changed during the request."""
    services.cancel_batch(batch_id=batch_id, now=timezone.now())
    changed, finished = services.call_off_units(
        batch_id=batch_id, now=timezone.now(), budget_seconds=services.CANCEL_REQUEST_SECONDS
    )
    if not finished:
        hint(finish_cancel, batch_id)
    return changed


def split_soon(batch_id: int) -> None:
    """Once the submitting transaction commits, ask a worker to split the batch now (the
    sweep would find it anyway, a little later)."""
    transaction.on_commit(lambda: hint(split_batch, batch_id))
