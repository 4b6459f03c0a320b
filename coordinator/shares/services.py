"""Shares: each scientist's, made when they first submit, and their use's upkeep."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from coordinator.shares.models import Member, Share, Use


def share_of(user: Any) -> Share | None:
    """The share a batch of ``user``'s is charged to: their group's, or their own, made now
    with the default weight (None for a batch without an owner: the project's own work)."""
    if user is None:
        return None
    member = Member.objects.select_related("share").filter(user=user).first()
    if member is not None:
        return member.share
    try:
        with transaction.atomic():
            share, _ = Share.objects.get_or_create(
                name=_free_name(user.get_username()),
                defaults={"weight": settings.TESSERA["FAIR_SHARE_DEFAULT_WEIGHT"]},
            )
            Member.objects.create(user=user, share=share)
            return share
    except IntegrityError:  # a concurrent submission by the same scientist made it first
        return Member.objects.select_related("share").get(user=user).share


def _free_name(username: str) -> str:
    """The scientist's name, unless a group already has it."""
    if not Share.objects.filter(name=username).exists():
        return username
    return f"{username} (own)"


def forget_old_use(*, now: datetime) -> int:
    """Drop use rows older than FAIR_SHARE_KEEP_DAYS: dispatch reads a window of minutes, the
    admin the last day."""
    cutoff = now - timedelta(days=settings.TESSERA["FAIR_SHARE_KEEP_DAYS"])
    deleted, _ = Use.objects.filter(minute__lt=cutoff).delete()
    return deleted
