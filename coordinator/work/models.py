"""Apps, app versions, batches, work units and their replicas (BOINC's results).

Rules that can live in the database do: redundancy bounds, state/field agreement, and
"no two replicas of a unit for one volunteer" as a unique constraint.
"""

import secrets
from enum import Enum

from django.db import models
from django.db.models import F, Q

from coordinator.accounts.models import Host, Volunteer
from coordinator.work.batch_model import Batch as Batch  # one of this app's models
from coordinator.work.batch_model import BatchState as BatchState
from coordinator.work.comparison import CompareMode
from coordinator.work.lifecycle import FailureReason, Outcome, ReplicaState, UnitState, ValidateState
from coordinator.work.plan_class_model import PlanClass as PlanClass  # one of this app's models


def choices(enum: type[Enum]) -> list[tuple[str, str]]:
    return [(member.value, member.name.replace("_", " ").lower()) for member in enum]


class App(models.Model):
    """A science application; its code ships as signed app versions."""

    name = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200, blank=True)
    # How the validator compares two outputs (validation.compare).
    compare_mode = models.CharField(
        max_length=16,
        choices=choices(CompareMode),
        default=CompareMode.BITWISE,
        db_default=CompareMode.BITWISE,
    )
    abs_tolerance = models.FloatField(default=0.0, db_default=0.0)
    rel_tolerance = models.FloatField(default=0.0, db_default=0.0)
    # What independent quorums of this app typically claim against the estimate (the median,
    # refreshed by the validation sweep): the most any valid replica earns is the estimate
    # times this (standing.credit.grant_cap).
    credit_ratio = models.FloatField(default=1.0, db_default=1.0)
    # Its hosts' usual turnaround (the median of their running means, refreshed by the
    # validation sweep; 0 until measured): in a batch's tail no replica is overdue later than
    # TAIL_OVERDUE_FACTOR times this, however slow its host (docs/batches.md).
    turnaround = models.FloatField(default=0.0, db_default=0.0)
    # Homogeneous redundancy (docs/platforms.md): replicas of one unit only on hosts of one
    # class (1: OS and CPU vendor; 2: also CPU family and model), or only of one app version.
    hr_level = models.PositiveSmallIntegerField(
        default=0, db_default=0, choices=[(0, "none"), (1, "coarse"), (2, "fine")]
    )
    homogeneous_app_version = models.BooleanField(default=False, db_default=False)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


RUNTIMES = [
    ("python", "Python"),
    ("wasm", "WebAssembly (WASI preview 1)"),
    ("native", "native executable"),
    # A native executable under our launcher, as the stock BOINC client runs it (coordinator.boinc).
    ("boinc", "for BOINC clients"),
]


class AppVersion(models.Model):
    """One signed bundle of an app that hosts download, verify and run."""

    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    platform = models.CharField(max_length=64, default="any")
    bundle = models.FileField(upload_to="bundles/", max_length=300)
    bundle_sha256 = models.CharField(max_length=64)
    bundle_size = models.PositiveBigIntegerField()
    signature = models.CharField(max_length=88, help_text="Ed25519 signature of the bundle, base64")
    max_output_bytes = models.PositiveBigIntegerField(default=1024 * 1024)
    # What runs the bundle: "python" (its main.py) or "wasm" (a WebAssembly module whose
    # tasks carry a fuel bound and report the fuel they used; docs/science-apps.md).
    runtime = models.CharField(max_length=8, choices=RUNTIMES, default="python", db_default="python")
    # The plan class's name (work.PlanClass); "cpu" unless the version is multithreaded or a GPU's.
    plan_class = models.SlugField(max_length=64, default="cpu", db_default="cpu")
    beta = models.BooleanField(
        default=False, db_default=False, help_text="only for volunteers who want beta work"
    )
    # "3.11" when the version's wheels are built for one Python; blank: any Python 3.9+.
    python = models.CharField(max_length=8, blank=True, default="", db_default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["app", "version", "platform", "plan_class", "runtime"], name="app_version_once"
            ),
            models.CheckConstraint(condition=Q(max_output_bytes__gte=1), name="app_version_output_limit"),
        ]

    def __str__(self) -> str:
        plan = "" if self.plan_class == "cpu" else f" {self.plan_class}"
        return f"{self.app.name} v{self.version} ({self.platform}{plan})"


class WorkUnit(models.Model):
    """One piece of computation, done redundantly by several hosts."""

    # Indexed below with the id (unit_by_app); a batch's units by unit_once_per_batch_index.
    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="units", db_index=False)
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="units", db_index=False
    )
    batch_index = models.PositiveIntegerField(
        null=True, blank=True, help_text="its place in the batch's split"
    )
    name = models.CharField(max_length=200)  # unique: unit_name_once
    # Small inputs live in the row and travel inside the scheduler reply; large ones are files.
    input_inline = models.BinaryField(null=True, blank=True)
    input_file = models.FileField(upload_to="inputs/", blank=True, max_length=300)
    input_sha256 = models.CharField(max_length=64)
    input_size = models.PositiveBigIntegerField()
    # Redundancy policy (BOINC's names).
    min_quorum = models.PositiveSmallIntegerField(default=2)
    target_nresults = models.PositiveSmallIntegerField(default=2)
    max_error_results = models.PositiveSmallIntegerField(default=3)
    max_total_results = models.PositiveSmallIntegerField(default=6)
    delay_bound = models.PositiveIntegerField(default=7 * 24 * 3600, help_text="seconds")
    priority = models.SmallIntegerField(default=0)
    memory_bytes = models.PositiveBigIntegerField(default=0, help_text="memory the app needs")
    disk_bytes = models.PositiveBigIntegerField(default=0, db_default=0, help_text="disk the task needs")
    # Homogeneous redundancy: the class (plan_classes.hr_class) or the app version every
    # replica must share, fixed by the first host that got one; cleared when none is left to agree.
    hr_class = models.CharField(max_length=128, blank=True, default="", db_default="")
    pinned_version = models.ForeignKey(
        AppVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # Until when they hold: a delay bound after the last replica went out, so a unit whose
    # class no host of which comes back for is finished by another (docs/platforms.md).
    homogeneous_until = models.DateTimeField(null=True, blank=True)
    fpops_estimate = models.FloatField(default=1e12, help_text="floating-point operations per unit")
    # A wasm unit's most fuel (BOINC's rsc_fpops_bound): a task past it is stopped as an error.
    fuel_bound = models.PositiveBigIntegerField(null=True, blank=True)
    fuel = models.PositiveBigIntegerField(null=True, blank=True)  # what its quorum settled on

    state = models.CharField(max_length=16, choices=choices(UnitState), default=UnitState.ACTIVE)
    failure_reason = models.CharField(max_length=32, choices=choices(FailureReason), blank=True)
    transition_time = models.DateTimeField(null=True, blank=True)
    need_validate = models.BooleanField(default=False)
    canonical_replica = models.ForeignKey(
        "Replica", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # What each valid replica of this unit was granted (late valid replicas get the same).
    granted_credit = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    # Two outputs disagreed: from then on only established hosts unrelated to the others get
    # its new replicas, and a verdict needs one of them in the agreeing group.
    disputed = models.BooleanField(default=False, db_default=False)
    # When outputs first disagreed: a dispute no established host settles within
    # DISPUTE_WAIT_SECONDS (a young project has none) is settled by any unrelated hosts, and
    # its result audited once someone can.
    disputed_at = models.DateTimeField(null=True, blank=True)
    # The established host, unrelated to the others, whose agreement vouches for the canonical
    # result (null: no one yet, and the correction sweep audits it once someone can).
    vouched_by = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # One more replica, for an established host, is wanted to check the canonical result.
    audit_wanted = models.BooleanField(default=False, db_default=False)
    # Reopened after it was done: the canonical replica it had then, to tell whether it changed.
    reopened_from = models.ForeignKey(
        "Replica", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    # When a correction replaced its canonical result with a different one.
    corrected_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A constraint, not unique=True: that adds a second index for LIKE on PostgreSQL,
            # which nothing reads and every new row version of a unit would have written.
            models.UniqueConstraint(fields=["name"], name="unit_name_once"),
            models.UniqueConstraint(
                fields=["batch", "batch_index"],
                condition=Q(batch__isnull=False),
                name="unit_once_per_batch_index",
            ),
            models.CheckConstraint(condition=Q(min_quorum__gte=1), name="unit_quorum_positive"),
            models.CheckConstraint(
                condition=Q(target_nresults__gte=F("min_quorum")), name="unit_target_reaches_quorum"
            ),
            models.CheckConstraint(
                condition=Q(max_total_results__gte=F("target_nresults")), name="unit_total_covers_target"
            ),
            models.CheckConstraint(condition=Q(delay_bound__gte=1), name="unit_delay_bound_positive"),
            models.CheckConstraint(
                condition=Q(state=UnitState.FAILED, failure_reason__gt="")
                | (~Q(state=UnitState.FAILED) & Q(failure_reason="")),
                name="unit_failure_has_reason",
            ),
            # A finished unit's input may be purged (science.cleanup); an active one needs it.
            models.CheckConstraint(
                condition=Q(input_inline__isnull=False) | ~Q(input_file="") | ~Q(state=UnitState.ACTIVE),
                name="unit_has_input",
            ),
        ]
        # Each UPDATE of a unit writes a new version of its row into every index whose
        # condition it meets (no update of a unit is HOT: transition_time is indexed), so the
        # unit has no index that nothing reads, and the rarely set references are partial.
        indexes = [
            models.Index(fields=["transition_time"], name="unit_transition_due"),
            # An app's units, and the claim's join by id within an app: on statistics a batch's
            # split left stale, a plain app index made the planner join each candidate to every
            # unit of the app (bench.throughput's first seconds, docs/benchmarks.md).
            models.Index(fields=["app", "id"], name="unit_by_app"),
            models.Index(
                fields=["pinned_version"],
                condition=Q(pinned_version__isnull=False),
                name="unit_pinned_version",
            ),
            models.Index(
                fields=["canonical_replica"],
                condition=Q(canonical_replica__isnull=False),
                name="unit_canonical_replica",
            ),
            # Whether a batch has an active unit left, as one probe: a batch is assimilated as
            # its last unit settles (work.selectors.finished_batches), however large it is; and
            # a tail's active units from a point by id (scheduler.idle_hosts.tail_sample).
            models.Index(
                fields=["batch", "id"],
                condition=Q(state=UnitState.ACTIVE, batch__isnull=False),
                name="unit_active_by_batch",
            ),
            models.Index(fields=["id"], condition=Q(need_validate=True), name="unit_need_validate"),
            # Few units are vouched for or reopened: indexes of those alone cost the hot path's
            # unit updates nothing (a full index gains an entry on every one).
            models.Index(
                fields=["vouched_by"], condition=Q(vouched_by__isnull=False), name="unit_vouched_by"
            ),
            models.Index(
                fields=["reopened_from"], condition=Q(reopened_from__isnull=False), name="unit_reopened_from"
            ),
            # The correction sweep's audits: done units nobody vouched for that could be
            # computed again (validation.correction); they leave the index once vouched for.
            models.Index(
                fields=["id"],
                condition=Q(
                    state=UnitState.DONE, vouched_by__isnull=True, audit_wanted=False, min_quorum__gte=2
                )
                & (Q(input_inline__isnull=False) | ~Q(input_file="")),
                name="unit_unvouched",
            ),
        ]

    def __str__(self) -> str:
        return self.name


DISPATCH_RANDOM_BITS = 32


def dispatch_key(unit_id: int, block_units: int) -> int:
    """Where a new replica sits in the dispatch order: by its unit's block of
    ``block_units`` consecutive units (older work first, and a block's rows lie together on
    disk), then at random, so a unit's replicas are far apart in the queue and who asks next
    cannot predict which units they get (docs/validation.md)."""
    block = unit_id // max(1, block_units)
    return (block << DISPATCH_RANDOM_BITS) | secrets.randbits(DISPATCH_RANDOM_BITS)


class Replica(models.Model):
    """One copy of a work unit sent to one host (BOINC's result)."""

    workunit = models.ForeignKey(WorkUnit, on_delete=models.CASCADE, related_name="replicas")
    state = models.CharField(max_length=16, choices=choices(ReplicaState), default=ReplicaState.UNSENT)
    outcome = models.CharField(max_length=16, choices=choices(Outcome), default=Outcome.INIT)
    validate_state = models.CharField(
        max_length=16, choices=choices(ValidateState), default=ValidateState.INIT
    )
    # Copied from the unit so that dispatch reads one index in order.
    priority = models.SmallIntegerField(default=0)
    # Dispatch order within a priority (see dispatch_key); 0 only for rows older than it.
    dispatch_key = models.BigIntegerField(default=0, db_default=0)
    # Its batch's share, copied so that dispatch reads each share's queue by one index.
    share = models.ForeignKey(
        "shares.Share", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # Made to settle a dispute: only an established host unrelated to the unit's others may
    # take it, never simply whoever asks next.
    reserved = models.BooleanField(default=False, db_default=False)
    # Set for a reissue or a batch's tail work (accelerated, as BOINC's retries): only reliable
    # hosts may take it until then, and one gets a shorter deadline (docs/batches.md).
    reliable_until = models.DateTimeField(null=True, blank=True)

    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.PROTECT, related_name="replicas")
    volunteer = models.ForeignKey(
        Volunteer, null=True, blank=True, on_delete=models.PROTECT, related_name="replicas"
    )
    app_version = models.ForeignKey(
        AppVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="replicas"
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    # Later than its host usually takes (set when sent): in a batch's tail, a backup goes out.
    overdue_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)

    # What the host reported, and what it uploaded before reporting.
    output_sha256 = models.CharField(max_length=64, blank=True)
    output_size = models.PositiveBigIntegerField(null=True, blank=True)
    output_inline = models.BinaryField(null=True, blank=True)
    output_file = models.FileField(upload_to="outputs/", blank=True, max_length=300)
    uploaded_sha256 = models.CharField(max_length=64, blank=True)
    cpu_time = models.FloatField(null=True, blank=True)
    fuel = models.PositiveBigIntegerField(null=True, blank=True)  # a wasm task's reported fuel
    exit_code = models.IntegerField(null=True, blank=True)
    message = models.CharField(max_length=1000, blank=True)
    # Adaptive replication: sent alone to a trusted host (its unit then needs one success).
    trusted_single = models.BooleanField(default=False, db_default=False)
    claimed_credit = models.FloatField(null=True, blank=True)
    granted_credit = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workunit", "volunteer"],
                condition=Q(volunteer__isnull=False),
                name="replica_one_per_volunteer",
            ),
            models.CheckConstraint(
                condition=~Q(state=ReplicaState.UNSENT)
                | Q(host__isnull=True, volunteer__isnull=True, outcome=Outcome.INIT),
                name="replica_unsent_is_unassigned",
            ),
            models.CheckConstraint(
                condition=~Q(state=ReplicaState.IN_PROGRESS)
                | Q(
                    host__isnull=False, volunteer__isnull=False, deadline__isnull=False, outcome=Outcome.INIT
                ),
                name="replica_in_progress_is_assigned",
            ),
            models.CheckConstraint(
                condition=~Q(state=ReplicaState.OVER) | ~Q(outcome=Outcome.INIT),
                name="replica_over_has_outcome",
            ),
            models.CheckConstraint(
                condition=~Q(outcome=Outcome.SUCCESS) | ~Q(output_sha256=""),
                name="replica_success_has_output",
            ),
            models.CheckConstraint(
                condition=Q(cpu_time__isnull=True) | Q(cpu_time__gte=0), name="replica_cpu_time"
            ),
        ]
        indexes = [
            # Dispatch: each share's best unsent replicas first, read in index order; the
            # reserved ones (disputes) have their own, read only for established hosts.
            models.Index(
                "share",
                F("priority").desc(),
                "dispatch_key",
                condition=Q(state=ReplicaState.UNSENT, reserved=False),
                name="replica_dispatch_by_share",
            ),
            models.Index(
                F("priority").desc(),
                "dispatch_key",
                condition=Q(state=ReplicaState.UNSENT, reserved=True),
                name="replica_dispatch_reserved",
            ),
            # Tasks in progress per volunteer, and per host among them: the limits on hoarding.
            models.Index(
                fields=["volunteer"],
                condition=Q(state=ReplicaState.IN_PROGRESS),
                name="replica_out_by_volunteer",
            ),
            models.Index(
                fields=["deadline"], condition=Q(state=ReplicaState.IN_PROGRESS), name="replica_deadline"
            ),
        ]

    def __str__(self) -> str:
        return f"replica {self.pk} of {self.workunit_id}"
