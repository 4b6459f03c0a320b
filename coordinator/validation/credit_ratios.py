"""Each app's credit ratio: what honest quorums claim against the app's own estimate."""

from __future__ import annotations

from coordinator.standing import credit
from coordinator.work.models import App, Replica

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
