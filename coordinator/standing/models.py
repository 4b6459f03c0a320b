"""A host's and volunteer's standing: reputation per host and app, quota per app version,
credit per day. The totals themselves live on accounts' volunteers, teams and hosts."""

from django.db import models

from coordinator.accounts.models import Host, Volunteer
from coordinator.work.models import App, AppVersion


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
        db_table = "validation_hostappreputation"  # kept from the validation app
        constraints = [models.UniqueConstraint(fields=["host", "app"], name="reputation_once_per_host_app")]


class HostAppVersion(models.Model):
    """A host's daily quota on one app version (BOINC's host_app_version.max_jobs_per_day):
    starts at the host's starting quota, x2 on a valid result, -1 on an error, 1 when caught."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="app_versions")
    app_version = models.ForeignKey(AppVersion, on_delete=models.CASCADE, related_name="+")
    daily_quota = models.PositiveIntegerField()
    quota_day = models.DateField(null=True, blank=True)
    quota_used = models.PositiveIntegerField(default=0)
    # The host's measured speed on this version (floating-point operations of its successful
    # results per second of elapsed time, a running mean), BOINC's host_app_version.et.
    speed_flops = models.FloatField(default=0.0, db_default=0.0)
    speed_samples = models.PositiveIntegerField(default=0, db_default=0)
    # Seconds from sending to a successful report, a running mean over the same samples
    # (BOINC's host_app_version.turnaround): what makes a host reliable and a replica overdue.
    turnaround = models.FloatField(default=0.0, db_default=0.0)

    class Meta:
        db_table = "validation_hostappversion"  # kept from the validation app
        constraints = [
            models.UniqueConstraint(fields=["host", "app_version"], name="quota_once_per_host_version"),
            models.CheckConstraint(condition=models.Q(daily_quota__gte=1), name="quota_at_least_one"),
        ]


class CreditDay(models.Model):
    """A volunteer's credit granted on one UTC day, for history charts."""

    volunteer = models.ForeignKey(Volunteer, on_delete=models.CASCADE, related_name="credit_days")
    day = models.DateField()
    credit = models.DecimalField(max_digits=20, decimal_places=6)

    class Meta:
        db_table = "validation_creditday"  # kept from the validation app
        constraints = [models.UniqueConstraint(fields=["volunteer", "day"], name="credit_day_once")]
