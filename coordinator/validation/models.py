"""The append-only credit ledger: grants, reversals, its head and its seals."""

from django.db import models

from coordinator.accounts.models import Host, Volunteer
from coordinator.work.models import Replica, WorkUnit


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
    # The fuel a wasm replica's grant was computed from (hashed into the chain), else null.
    fuel = models.PositiveBigIntegerField(null=True, blank=True)
    # "bearer" when granted to a stock BOINC client's host, which proves itself with a bearer
    # account key only (accounts.Host.bearer), hashed into the chain; else null. (Nullable
    # without a default, so that SQLite adds the column without remaking the table and its
    # append-only triggers.)
    trust = models.CharField(max_length=8, null=True, blank=True)
    # The grant a reversal takes back, by its seq (``reverses_id`` holds that seq), as the
    # exported chain names it.
    reverses = models.OneToOneField(
        "self", to_field="seq", null=True, blank=True, on_delete=models.PROTECT, related_name="reversal"
    )
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        # A volunteer's entries in chain order: the account page's latest, the badges' first.
        indexes = [models.Index(fields=["volunteer", "seq"], name="ledger_by_volunteer")]
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
