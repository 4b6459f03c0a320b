"""What a scientist starts from a page or the API: the request does what a few seconds
allow, and hints a worker (``tasks``) for the rest; the sweeps finish it if a hint is lost."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from coordinator.core.hints import hint
from coordinator.science import services
from coordinator.science.tasks import finish_cancel, split_batch


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
