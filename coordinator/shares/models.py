"""Who gets what part of the project's computing (docs/batches.md, fair share).

A ``Share`` is one scientist's, or a group's, part of the project, set by admins as a
weight. Each batch is charged to its owner's share when it is submitted, and each replica
of it carries the share, so dispatch reads a share's queue by one index. ``ShareUse`` counts
the work sent per share by the minute: dispatch ranks the shares by their use over the last
FAIR_SHARE_WINDOW_SECONDS against their weight, and the admin shows the last day's.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Share(models.Model):
    name = models.CharField(max_length=150, unique=True)
    weight = models.PositiveIntegerField(
        default=100,
        db_default=100,
        help_text="its part against other shares' weights; 0: what no other share wants",
    )
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Member(models.Model):
    """A scientist's share: each scientist has one (their own until an admin puts them in a group)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_member"
    )
    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="members")

    def __str__(self) -> str:
        return f"{self.user} in {self.share}"


class Use(models.Model):
    """Work sent to hosts for a share in one minute. Concurrent claims add to one of
    FAIR_SHARE_SLOTS rows of the minute (by host), so they seldom wait on each other."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="use")
    minute = models.DateTimeField()
    slot = models.PositiveSmallIntegerField()
    replicas = models.PositiveIntegerField()
    fpops = models.FloatField(help_text="estimated floating-point operations of the replicas sent")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["share", "minute", "slot"], name="share_use_once_per_slot"),
            models.CheckConstraint(condition=Q(fpops__gte=0), name="share_use_fpops"),
        ]
        indexes = [models.Index(fields=["minute"], name="share_use_by_minute")]
