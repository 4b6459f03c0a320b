"""What the project says to its volunteers: notices (BOINC's project news)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

TITLE_MAX = 200
BODY_MAX = 5000


class Notice(models.Model):
    """Project news an admin posts: the public pages show it, and clients fetch it to show
    their volunteer unread ones (as BOINC's notices). Plain text, never markup."""

    title = models.CharField(max_length=TITLE_MAX)
    body = models.TextField(max_length=BODY_MAX, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    published = models.BooleanField(default=True, help_text="unpublished notices are shown nowhere")

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.title
