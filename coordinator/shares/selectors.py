"""What the shares used, for the admin and the tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Sum

from coordinator.shares.models import Share, Use


def use_since(since: datetime) -> dict[int, tuple[int, float]]:
    """Replicas and estimated operations sent per share since ``since`` (by share id)."""
    rows = Use.objects.filter(minute__gte=since).values("share").annotate(n=Sum("replicas"), ops=Sum("fpops"))
    return {row["share"]: (row["n"], row["ops"]) for row in rows}


def day_use(now: datetime) -> dict[int, tuple[int, float]]:
    return use_since(now - timedelta(days=1))


def weights() -> dict[int, float]:
    return {pk: float(weight) for pk, weight in Share.objects.values_list("pk", "weight")}
