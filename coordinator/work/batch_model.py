"""A scientist's batch: one of the work app's models (re-exported by ``work.models``)."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class BatchState(models.TextChoices):
    SPLITTING = "splitting"  # units are being made, chunk by chunk
    RUNNING = "running"  # every unit exists; volunteers crunch them
    DONE = "done"
    CANCELLED = "cancelled"


class Batch(models.Model):
    """A scientist's set of work units, submitted together and split in the background."""

    name = models.CharField(max_length=200)
    app = models.ForeignKey("work.App", on_delete=models.PROTECT, related_name="batches")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="batches"
    )
    # The owner's computing share when it was submitted (shares.Member): fair share ranks
    # its work against other scientists' (docs/batches.md). None: the project's own.
    share = models.ForeignKey(
        "shares.Share", null=True, blank=True, on_delete=models.PROTECT, related_name="batches"
    )
    created = models.DateTimeField(auto_now_add=True)
    state = models.CharField(
        max_length=16, choices=BatchState.choices, default=BatchState.RUNNING, db_default=BatchState.RUNNING
    )
    parameters = models.JSONField(default=dict, blank=True, help_text="what the app's splitter reads")
    units_planned = models.PositiveIntegerField(default=0, db_default=0)
    units_created = models.PositiveIntegerField(default=0, db_default=0)
    # The redundancy and priority every unit of the batch gets.
    min_quorum = models.PositiveSmallIntegerField(default=2, db_default=2)
    target_nresults = models.PositiveSmallIntegerField(default=2, db_default=2)
    max_error_results = models.PositiveSmallIntegerField(default=3, db_default=3)
    max_total_results = models.PositiveSmallIntegerField(default=6, db_default=6)
    delay_bound = models.PositiveIntegerField(default=7 * 24 * 3600, db_default=7 * 24 * 3600)
    priority = models.SmallIntegerField(default=0, db_default=0)
    finished = models.DateTimeField(null=True, blank=True)
    result = models.FileField(
        upload_to="results/", blank=True, max_length=300, help_text="the assimilated result"
    )
    units_failed = models.PositiveIntegerField(default=0, db_default=0)
    # Why the app's assimilator could not make a result from the canonical outputs ("" when it could).
    assimilation_error = models.TextField(blank=True, default="", db_default="")
    # Clean-up: the outputs of non-canonical replicas go once the batch is assimilated; every
    # input and output (not the result) goes BATCH_RETENTION_DAYS after it finished.
    cleaned = models.BooleanField(default=False, db_default=False)
    purged = models.DateTimeField(null=True, blank=True)
    # A unit's canonical result was corrected after the batch was assimilated: assimilate
    # again. ``revision`` counts the results made after the first.
    reassimilate = models.BooleanField(default=False, db_default=False)
    revision = models.PositiveIntegerField(default=0, db_default=0)
    # When TAIL_FRACTION of its units were finished: from then on its overdue replicas get
    # backups and its new replicas go to reliable hosts first (docs/batches.md).
    tail_since = models.DateTimeField(null=True, blank=True)
    # The app's usual turnaround its tail's replicas out were last held to (work.tails).
    tail_turnaround = models.FloatField(default=0.0, db_default=0.0)
    # When TAIL_FINAL_FRACTION of its units were finished: every replica out then was made
    # overdue, so each got one backup (work.tails.final_call).
    final_call_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(units_created__lte=F("units_planned")), name="batch_created_within_plan"
            ),
        ]
        indexes = [models.Index(fields=["state"], name="batch_by_state")]

    def __str__(self) -> str:
        return self.name
