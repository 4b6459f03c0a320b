"""Who may do what with batches: scientists see and change only their own."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from coordinator.core.errors import NotFound
from coordinator.work.models import Batch

SCIENTISTS_GROUP = "scientists"


def is_scientist(user: Any) -> bool:
    """An active member of the scientists group (superusers run the project and count too)."""
    if user is None or not user.is_active:
        return False
    return user.is_superuser or user.groups.filter(name=SCIENTISTS_GROUP).exists()


def batches_of(user: Any) -> QuerySet[Batch]:
    """The batches ``user`` may see: their own; every batch for a superuser."""
    batches = Batch.objects.select_related("app", "owner")
    return batches if user.is_superuser else batches.filter(owner=user)


def batch_of(user: Any, batch_id: int) -> Batch:
    """One of ``user``'s batches. Another scientist's batch is "not found", exactly like a
    batch that does not exist, so ids tell nobody what others run."""
    batch = batches_of(user).filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(f"batch {batch_id} does not exist", code="unknown_batch")
    return batch
