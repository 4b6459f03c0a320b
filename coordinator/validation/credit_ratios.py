"""Each app's figures from its results: the credit ratio (what honest quorums claim against
the app's own estimate) and its hosts' usual turnaround."""

from __future__ import annotations

from django.conf import settings

from coordinator.standing import credit
from coordinator.standing.models import HostAppVersion
from coordinator.work.models import App, Replica

TURNAROUND_SAMPLES = 1000  # the host versions made last
TURNAROUND_MIN_SAMPLES = 5

CREDIT_RATIO_SAMPLES = 1000
CREDIT_RATIO_MIN_SAMPLES = 20


def refresh_credit_ratios() -> int:
    """Set each app's ``credit_ratio`` to the median claim, against the estimate, of its
    latest valid replicas on vouched units (where an established host agreed): what honest
    quorums claim, which colluders alone cannot move. Returns the apps updated."""
    updated = 0
    for app in App.objects.all():
        rows = (
            Replica.objects.filter(
                workunit__app=app, workunit__vouched_by__isnull=False, claimed_credit__isnull=False
            )
            .order_by("-id")
            .values_list("claimed_credit", "workunit__fpops_estimate")[:CREDIT_RATIO_SAMPLES]
        )
        ratios = [claim / credit.credit_for_flops(fp) for claim, fp in rows if claim is not None and fp > 0]
        if len(ratios) < CREDIT_RATIO_MIN_SAMPLES:
            continue
        ratio = min(credit.median(ratios), credit.CLAIM_CAP_FACTOR)
        updated += App.objects.filter(pk=app.pk).exclude(credit_ratio=ratio).update(credit_ratio=ratio)
    return updated


def refresh_turnarounds() -> int:
    """Set each app's ``turnaround`` to the median of its hosts' usual turnarounds (of the
    TURNAROUND_SAMPLES host versions made last), among hosts with ESTABLISHED_MIN_VALID results
    unrelated hosts agreed with: new accounts returning garbage fast cannot pull it down. A
    median: a few hosts reporting at once, or never, do not move it. Returns the apps updated."""
    updated = 0
    proven = settings.TESSERA["ESTABLISHED_MIN_VALID"]
    for app in App.objects.all():
        rows = list(
            HostAppVersion.objects.filter(
                app_version__app=app, turnaround__gt=0, host__independent_valid__gte=proven
            )
            .order_by("-id")
            .values_list("turnaround", flat=True)[:TURNAROUND_SAMPLES]
        )
        if len(rows) < TURNAROUND_MIN_SAMPLES:
            continue
        typical = credit.median(rows)
        updated += App.objects.filter(pk=app.pk).exclude(turnaround=typical).update(turnaround=typical)
    return updated
