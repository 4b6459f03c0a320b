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
    """One credit grant, chained to the one before by its hash. The database refuses
    updates and deletes (triggers in this app's migrations)."""

    seq = models.PositiveBigIntegerField(unique=True)
    volunteer = models.ForeignKey(Volunteer, on_delete=models.PROTECT, related_name="+")
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="+")
    replica = models.OneToOneField(Replica, on_delete=models.PROTECT, related_name="ledger_entry")
    unit = models.ForeignKey(WorkUnit, on_delete=models.PROTECT, related_name="+")
    credit = models.DecimalField(max_digits=20, decimal_places=6)
    granted_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=models.Q(credit__gte=0), name="ledger_credit_not_negative")
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
