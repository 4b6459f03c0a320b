"""Reputation per host and app, credit per day, and the append-only credit ledger."""

from django.db import models

from coordinator.accounts.models import Host, Volunteer
from coordinator.work.models import App, Replica, WorkUnit


class HostAppReputation(models.Model):
    """How a host has done on one app: the basis of adaptive replication."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="app_reputations")
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    consecutive_valid = models.PositiveIntegerField(default=0)
    valid = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error_rate = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "app"], name="reputation_once_per_host_app")]


class CreditDay(models.Model):
    """A volunteer's credit granted on one UTC day, for history charts."""

    volunteer = models.ForeignKey(Volunteer, on_delete=models.CASCADE, related_name="credit_days")
    day = models.DateField()
    credit = models.DecimalField(max_digits=20, decimal_places=6)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["volunteer", "day"], name="credit_day_once")]


class LedgerEntry(models.Model):
    """One credit grant, or the reversal of one, chained to the entry before by its hash.
    The database refuses updates and deletes (triggers in this app's migrations), so credit
    taken back is a new entry that names its grant, never a change to the grant."""

    class Kind(models.TextChoices):
        GRANT = "grant"
        REVERSAL = "reversal"

    seq = models.PositiveBigIntegerField(unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.GRANT, db_default=Kind.GRANT)
    volunteer = models.ForeignKey(Volunteer, on_delete=models.PROTECT, related_name="+")
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="+")
    replica = models.ForeignKey(Replica, on_delete=models.PROTECT, related_name="ledger_entries")
    unit = models.ForeignKey(WorkUnit, on_delete=models.PROTECT, related_name="+")
    # A reversal's amount is positive: what it takes back.
    credit = models.DecimalField(max_digits=20, decimal_places=6)
    granted_at = models.DateTimeField()  # for a reversal, when the credit was taken back
    # The grant a reversal takes back, by its seq (``reverses_id`` holds that seq), as the
    # exported chain names it.
    reverses = models.OneToOneField(
        "self", to_field="seq", null=True, blank=True, on_delete=models.PROTECT, related_name="reversal"
    )
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=models.Q(credit__gte=0), name="ledger_credit_not_negative"),
            # A replica has at most one grant and at most one reversal.
            models.UniqueConstraint(fields=["replica", "kind"], name="ledger_replica_once_per_kind"),
            models.CheckConstraint(
                condition=models.Q(kind="grant", reverses__isnull=True)
                | models.Q(kind="reversal", reverses__isnull=False),
                name="ledger_reversal_names_its_grant",
            ),
        ]


class LedgerHead(models.Model):
    """The chain's last entry: one row, locked by whoever appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="ledger_head_single_row")]


class LedgerSeal(models.Model):
    """The project's Ed25519 signature over the chain head at ``seq``."""

    seq = models.PositiveBigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField()
    signature = models.CharField(max_length=88)


class HostAppVersion(models.Model):
    """A host's daily quota on one app version (BOINC's host_app_version.max_jobs_per_day):
    starts at the host's starting quota, x2 on a valid result, -1 on an error, 1 when caught."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="app_versions")
    app_version = models.ForeignKey("work.AppVersion", on_delete=models.CASCADE, related_name="+")
    daily_quota = models.PositiveIntegerField()
    quota_day = models.DateField(null=True, blank=True)
    quota_used = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "app_version"], name="quota_once_per_host_version"),
            models.CheckConstraint(condition=models.Q(daily_quota__gte=1), name="quota_at_least_one"),
        ]
