"""What the scenario runner and the collusion tests read from a coordinator, against ground truth.

``BOOKS`` runs after a run inside the coordinator's own Django (``CoordinatorProcess.django``):
every unit's right answer computed again, the ledger's grants and reversals, who was marked
invalid. ``ESTABLISH`` gives the hosts registered so far the history of volunteers of some
weeks, so that they are *established* before an attack starts. :class:`Progress` reads the
database straight over psycopg while hosts crunch: the units' states, the done units whose
canonical result is wrong right now, and what the correction sweep still has to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from workunits import montecarlo_pi
from workunits.interface import Checkpoint

# Every host registered so far: weeks old, with results unrelated hosts agreed with, and a
# full daily quota for the app versions it gets from now on.
ESTABLISH = """
from datetime import timedelta
from django.conf import settings
from django.utils import timezone
from coordinator.accounts.models import Host
limits = settings.TESSERA
result = Host.objects.all().update(
    created=timezone.now() - timedelta(days=values["age_days"]),
    independent_valid=max(limits["ESTABLISHED_MIN_VALID"], values["independent_valid"]),
    valid_count=max(limits["ESTABLISHED_MIN_VALID"], values["independent_valid"]),
    daily_quota=limits["DEFAULT_DAILY_QUOTA"],
)
"""

# The coordinator's books after a run. values: batch, acked ([replica, host, sha] an honest
# host saw accepted), honest and ring (host ids).
BOOKS = """
import hashlib
from collections import Counter, defaultdict
from decimal import Decimal
from django.db.models import Count
from coordinator.accounts.models import Host, Volunteer
from coordinator.validation.models import LedgerEntry
from coordinator.work.models import Batch, Replica, WorkUnit
from workunits import montecarlo_pi
from workunits.interface import Checkpoint

batch = Batch.objects.get(pk=values["batch"])
units = WorkUnit.objects.filter(batch=batch).select_related("canonical_replica")
truth, states, without_reason, bad_canonical, wrong, corrected = {}, Counter(), 0, 0, [], []
for unit in units:
    truth[unit.pk] = hashlib.sha256(montecarlo_pi.compute(bytes(unit.input_inline), Checkpoint())).hexdigest()
    states[unit.state + (f" ({unit.failure_reason})" if unit.failure_reason else "")] += 1
    without_reason += unit.state == "failed" and not unit.failure_reason
    if unit.corrected_at is not None:
        corrected.append(unit.pk)
    if unit.state != "done":
        continue
    canonical = unit.canonical_replica
    if canonical is None or canonical.validate_state != "valid":
        bad_canonical += 1
    elif canonical.output_sha256 != truth[unit.pk]:
        wrong.append([unit.pk, canonical.host_id])

GRANT, REVERSAL = LedgerEntry.Kind.GRANT, LedgerEntry.Kind.REVERSAL
signed = lambda kind, credit: credit if kind == GRANT else -credit
by_volunteer, by_host, wrong_credit = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
for kind, credit, volunteer, host, unit, sha in LedgerEntry.objects.values_list(
    "kind", "credit", "volunteer_id", "host_id", "unit_id", "replica__output_sha256"
):
    by_volunteer[volunteer] += signed(kind, credit)
    by_host[host] += signed(kind, credit)
    if unit in truth and sha != truth[unit]:
        wrong_credit[host] += signed(kind, credit)  # credit that stands for a wrong answer
volunteers_off = sum(v.total_credit != by_volunteer.get(v.pk, Decimal(0)) for v in Volunteer.objects.all())
hosts_off = sum(h.total_credit != by_host.get(h.pk, Decimal(0)) for h in Host.objects.all())
grants = LedgerEntry.objects.filter(kind=GRANT)
reversals = LedgerEntry.objects.filter(kind=REVERSAL)

acked = {int(r): (h, sha) for r, h, sha in values["acked"]}
kept = {
    r.pk: (r.host_id, r.outcome, r.output_sha256)
    for r in Replica.objects.filter(pk__in=list(acked)).only("host_id", "outcome", "output_sha256")
}
invalid = Replica.objects.filter(workunit__batch=batch, validate_state="invalid")
result = {
    "states": dict(states),
    "without_reason": without_reason,
    "bad_canonical": bad_canonical,
    "wrong": wrong,
    "corrected": corrected,
    "credited_replicas": Replica.objects.filter(granted_credit__isnull=False).count(),
    "grants": grants.count(),
    "granted_replicas": grants.values("replica").distinct().count(),
    "reversals": reversals.count(),
    "reversed_credit": str(sum(reversals.values_list("credit", flat=True), Decimal(0))),
    "granted_not_valid": grants.filter(reversal__isnull=True)
    .exclude(replica__validate_state="valid")
    .count(),
    "reversed_but_valid": reversals.filter(replica__validate_state="valid").count(),
    "volunteers_off": volunteers_off,
    "hosts_off": hosts_off,
    "host_credit": {h.pk: str(h.total_credit) for h in Host.objects.all()},
    "wrong_credit": {host: str(credit) for host, credit in wrong_credit.items() if credit},
    "lost": [r for r, (h, sha) in acked.items() if kept.get(r) != (h, "success", sha)],
    "replicas_sent": Replica.objects.filter(workunit__batch=batch, sent_at__isnull=False).count(),
    "right_marked_invalid": [
        pk for pk, unit, sha in invalid.values_list("pk", "workunit_id", "output_sha256")
        if sha == truth[unit]
    ],
    "honest_marked_invalid": invalid.filter(host_id__in=values["honest"]).count(),
    "honest_caught": Host.objects.filter(pk__in=values["honest"], caught_at__isnull=False).count(),
    "ring_caught": Host.objects.filter(pk__in=values["ring"], caught_at__isnull=False).count(),
    "units_with_two_ring_replicas": Replica.objects.filter(workunit__batch=batch, host_id__in=values["ring"])
    .values("workunit")
    .annotate(n=Count("id"))
    .filter(n__gte=2)
    .count(),
    "batch_revision": batch.revision,
    "batch_reassimilate": batch.reassimilate,
}
"""

# What the correction sweep still has to do for a batch (all zero: nothing).
PENDING_SQL = """
SELECT
  count(*) FILTER (WHERE state = 'active'),
  count(*) FILTER (WHERE audit_wanted),
  count(*) FILTER (WHERE need_validate),
  count(*) FILTER (WHERE state = 'done' AND vouched_by_id IS NULL AND min_quorum >= 2),
  (SELECT count(*) FROM accounts_host
   WHERE caught_at IS NOT NULL AND (corrected_at IS NULL OR corrected_at < caught_at)),
  (SELECT count(*) FROM work_batch WHERE id = %s AND (state <> 'done' OR reassimilate))
FROM work_workunit WHERE batch_id = %s
"""
PENDING_KEYS = ("active", "audit_wanted", "need_validate", "unvouched", "caught_uncorrected", "unassimilated")


def registered_hosts(connection: Any) -> int:
    return connection.execute("SELECT count(*) FROM accounts_host").fetchone()[0]


def right_sha256(data: bytes) -> str:
    return hashlib.sha256(montecarlo_pi.compute(data, Checkpoint())).hexdigest()


@dataclass
class Progress:
    """A batch as the database has it now, read over one psycopg connection (autocommit)."""

    batch: int
    truth: dict[int, str] = field(default_factory=dict)  # unit -> SHA-256 of its right answer

    def states(self, connection: Any) -> dict[str, int]:
        rows = connection.execute(
            "SELECT state, count(*) FROM work_workunit WHERE batch_id = %s GROUP BY state", [self.batch]
        ).fetchall()
        return dict(rows)

    def wrong_now(self, connection: Any) -> dict[int, int]:
        """Done units whose canonical output is not the right answer, right now, and the
        host of that canonical replica."""
        rows = connection.execute(
            "SELECT u.id, u.input_inline, r.output_sha256, r.host_id FROM work_workunit u"
            " JOIN work_replica r ON r.id = u.canonical_replica_id"
            " WHERE u.batch_id = %s AND u.state = 'done'",
            [self.batch],
        ).fetchall()
        wrong = {}
        for unit, data, sha, host in rows:
            if unit not in self.truth:
                self.truth[unit] = right_sha256(bytes(data))
            if sha != self.truth[unit]:
                wrong[unit] = host
        return wrong

    def pending(self, connection: Any) -> dict[str, int]:
        """What the correction sweep still has to do (PENDING_KEYS); all zero: nothing."""
        row = connection.execute(PENDING_SQL, [self.batch, self.batch]).fetchone()
        return dict(zip(PENDING_KEYS, row, strict=True))
