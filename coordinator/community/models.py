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


class DeletedAccount(models.Model):
    """A volunteer account deleted on its owner's request (by them, or by an admin for them).
    The volunteer row stays, emptied, so the ledger's entries keep their anonymous id and the
    chain still verifies; the stats export lists these for downstream sites to forget, as
    BOINC's ``user_deleted`` table does."""

    volunteer = models.OneToOneField(
        "accounts.Volunteer", primary_key=True, on_delete=models.PROTECT, related_name="deletion"
    )
    deleted_at = models.DateTimeField()
    by = models.CharField(max_length=16, help_text="volunteer, or admin (on the volunteer's request)")
    cpid = models.CharField(
        max_length=32, blank=True, default="", help_text="the CPID stats sites knew it by"
    )

    def __str__(self) -> str:
        return f"volunteer {self.volunteer_id}, deleted {self.deleted_at:%Y-%m-%d}"
