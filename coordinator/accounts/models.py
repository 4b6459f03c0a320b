"""Who computes: volunteers (Django users with a profile), their teams and their hosts."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, JSONField, Q, Value


class CreditTotals(models.Model):
    """Credit kept on the row, updated with each grant (never by scanning history).

    ``rac`` is recent average credit as of ``rac_time``; ``rac_rank`` orders rows by RAC at
    any common moment without decaying them (see standing.credit.rac_rank_key).
    """

    total_credit = models.DecimalField(
        max_digits=20, decimal_places=6, default=Decimal(0), db_default=Decimal(0)
    )
    rac = models.FloatField(default=0.0, db_default=0.0)
    rac_time = models.DateTimeField(null=True, blank=True)
    rac_rank = models.FloatField(default=-1e18, db_default=-1e18)

    class Meta:
        abstract = True


class Team(CreditTotals):
    name = models.CharField(max_length=64, unique=True)
    # accounts.names.name_skeleton(name): one team per look of a name. Empty for teams not
    # made by accounts.teams.create_team.
    name_skeleton = models.CharField(max_length=64, null=True, blank=True, editable=False)
    founder = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(F("total_credit").desc(), "id", name="team_by_total"),
            models.Index(F("rac_rank").desc(), "id", name="team_by_rac"),
        ]
        constraints = [models.UniqueConstraint(fields=["name_skeleton"], name="team_name_skeleton_once")]

    def __str__(self) -> str:
        return self.name


class Volunteer(CreditTotals):
    """A person who lends computers. The account token is kept only as its SHA-256."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="volunteer"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="members")
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    token_created = models.DateTimeField(null=True, blank=True)
    # accounts.names.name_skeleton(username): one volunteer per look of a name. Empty for
    # accounts not made by accounts.services.create_volunteer.
    name_skeleton = models.CharField(max_length=64, null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    # Who signed up together (accounts.relation): the sign-up address's network and the
    # sign-up burst. Empty for accounts an operator made, and for loopback addresses.
    signup_network = models.CharField(max_length=64, blank=True, default="", db_default="")
    signup_burst = models.CharField(max_length=32, blank=True, default="", db_default="")
    # BOINC's "run test applications?": app versions marked beta go only to those who said yes.
    beta_work = models.BooleanField(default=False, db_default=False)
    # Which apps (and beta versions) its computers run, per venue (accounts.science_choice).
    science = models.JSONField(default=dict, db_default={}, blank=True)
    # Off: left out of the leaderboards and the stats export (coordinator.boinc.stats), its
    # computers unnamed. Asked at sign-up (consent_at says when it was answered).
    listed = models.BooleanField(
        default=True, db_default=True, help_text="shown on leaderboards and in stats exports"
    )
    email_ok = models.BooleanField(default=False, db_default=False, help_text="agreed to be emailed")
    consent_at = models.DateTimeField(
        null=True, blank=True, help_text="when listing and email were agreed or refused"
    )
    # BOINC's cross-project id: random hex, made by the first stats export that needs it and
    # kept, so the exported CPID (its md5 with the email) stays the same between exports.
    cross_project_id = models.CharField(max_length=32, blank=True, default="", db_default="")

    class Meta:
        indexes = [
            models.Index(F("total_credit").desc(), "user_id", name="volunteer_by_total"),
            models.Index(F("rac_rank").desc(), "user_id", name="volunteer_by_rac"),
        ]
        constraints = [models.UniqueConstraint(fields=["name_skeleton"], name="volunteer_name_skeleton_once")]

    def __str__(self) -> str:
        return self.user.get_username()


class Host(CreditTotals):
    """A volunteer's device, known by the Ed25519 public key it made itself."""

    volunteer = models.ForeignKey(Volunteer, on_delete=models.CASCADE, related_name="hosts")
    public_key = models.CharField(max_length=44, unique=True, help_text="Ed25519 public key, base64")
    name = models.CharField(max_length=64)
    # Where the computer is (BOINC's venue): "", home, school or work; its science follows it.
    venue = models.CharField(max_length=8, blank=True, default="", db_default="")
    platform = models.CharField(max_length=64)
    n_cpus = models.PositiveIntegerField()
    memory_bytes = models.PositiveBigIntegerField()
    flops = models.FloatField(default=0.0, help_text="Measured floating-point speed per core")
    # What its client said about it (docs/platforms.md): the platforms it runs (the first is
    # ``platform``), its CPU, disk, GPUs and runtimes. Untrusted: used to choose what to send.
    platforms = models.JSONField(default=list, db_default=Value([], JSONField()), blank=True)
    os_name = models.CharField(max_length=32, blank=True, default="", db_default="")
    os_version = models.CharField(max_length=64, blank=True, default="", db_default="")
    cpu_vendor = models.CharField(max_length=64, blank=True, default="", db_default="")
    cpu_model = models.CharField(max_length=128, blank=True, default="", db_default="")
    cpu_family = models.CharField(max_length=32, blank=True, default="", db_default="")
    cpu_features = models.JSONField(default=list, db_default=Value([], JSONField()), blank=True)
    disk_free_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    gpus = models.JSONField(default=list, db_default=Value([], JSONField()), blank=True)
    use_gpus = models.BooleanField(default=True, db_default=True)
    runtimes = models.JSONField(default=list, db_default=Value([], JSONField()), blank=True)
    python_version = models.CharField(max_length=16, blank=True, default="", db_default="")
    # BOINC's time_stats as the client measures them (docs/platforms.md): 1 until it says.
    on_fraction = models.FloatField(default=1.0, db_default=1.0)
    active_fraction = models.FloatField(default=1.0, db_default=1.0)
    # Made by a stock BOINC client (coordinator.boinc): it proves itself with a bearer account
    # key, not a host key, so it is never trusted alone and the ledger says so.
    bearer = models.BooleanField(default=False, db_default=False)
    created = models.DateTimeField(auto_now_add=True)
    last_contact = models.DateTimeField(null=True, blank=True)
    # The daily quota each of this host's app versions starts with (validation.HostAppVersion
    # keeps the quota per app version); 1 for a volunteer caught cheating.
    daily_quota = models.PositiveIntegerField()
    # The network (/24 or /48) of the host's address when it registered and when it last
    # called: hosts on one network never check each other's work (accounts.relation).
    registered_network = models.CharField(max_length=64, blank=True, default="", db_default="")
    network = models.CharField(max_length=64, blank=True, default="", db_default="")
    # Reputation over all apps (per app: validation.HostAppReputation).
    consecutive_valid = models.PositiveIntegerField(default=0, db_default=0)
    valid_count = models.PositiveIntegerField(default=0, db_default=0)
    invalid_count = models.PositiveIntegerField(default=0, db_default=0)
    error_count = models.PositiveIntegerField(default=0, db_default=0)
    # Valid results an unrelated host agreed with, since the host was last caught: with age,
    # what makes it established (standing.reputation.is_established).
    independent_valid = models.PositiveIntegerField(default=0, db_default=0)
    # The last time its result lost against an independent quorum, and the last time the
    # correction sweep reopened what it had accepted (validation.correction).
    caught_at = models.DateTimeField(null=True, blank=True)
    corrected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(F("total_credit").desc(), "id", name="host_by_total"),
            models.Index(F("rac_rank").desc(), "id", name="host_by_rac"),
            # Hosts ever caught, for the correction sweep (validation.correction).
            models.Index(fields=["caught_at"], condition=Q(caught_at__isnull=False), name="host_caught"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(n_cpus__gte=1), name="host_has_a_cpu"),
            models.CheckConstraint(condition=Q(flops__gte=0), name="host_flops_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.volunteer})"


class HostNonce(models.Model):
    """A nonce a host has used; the unique pair is what refuses a replayed request."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    nonce = models.CharField(max_length=64)
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "nonce"], name="host_nonce_once")]
