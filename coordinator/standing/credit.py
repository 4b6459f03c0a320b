"""Credit in cobblestones and recent average credit: pure arithmetic, no ORM.

BOINC's cobblestone: 200 credits for one day of CPU time on a reference machine doing
1 GFLOPS. Recent average credit (RAC) decays exponentially with a one-week half-life and
is kept as (value, time) so that a grant updates it without reading any history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

REFERENCE_FLOPS = 1e9
CREDIT_PER_REFERENCE_DAY = 200.0
SECONDS_PER_DAY = 86_400.0
RAC_HALF_LIFE_SECONDS = 7 * SECONDS_PER_DAY
# A host's own figures (speed x CPU time) may claim at most this many times the app's
# estimate: a lying host cannot claim a fortune, and the grant takes the lower claims anyway.
CLAIM_CAP_FACTOR = 4.0


def credit_for_flops(flops: float) -> float:
    return max(0.0, flops) / (REFERENCE_FLOPS * SECONDS_PER_DAY) * CREDIT_PER_REFERENCE_DAY


def claimed_credit(*, fpops_estimate: float, host_flops: float, cpu_time: float) -> float:
    """What one replica claims: its measured work when the host measured itself, else the
    app's estimate; never more than ``CLAIM_CAP_FACTOR`` times the estimate."""
    estimate = credit_for_flops(fpops_estimate)
    if host_flops > 0 and cpu_time > 0:
        return min(credit_for_flops(host_flops * cpu_time), CLAIM_CAP_FACTOR * estimate)
    return estimate


def plausible_cpu_time(*, cpu_time: float, wall_seconds: float, n_cpus: int) -> float:
    """CPU time a host can really have spent: no more than the time it held the task on
    every core it said it has."""
    return max(0.0, min(cpu_time, max(0.0, wall_seconds) * max(1, n_cpus)))


def grant_cap(*, fpops_estimate: float, credit_ratio: float) -> float:
    """The most one valid replica of a unit earns: the app's estimate, scaled by what honest
    quorums of the app have typically claimed against it (``App.credit_ratio``). Agreeing
    inflaters, and a trusted host alone, cannot earn more than an honest pair would."""
    ratio = min(max(credit_ratio, 0.0), CLAIM_CAP_FACTOR)
    return credit_for_flops(fpops_estimate) * ratio


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def granted_credit(claims: Sequence[float]) -> float:
    """The grant for every valid replica of a unit: the lowest claim of two, the middle of
    three or more, so no single high claim can raise it."""
    if not claims:
        return 0.0
    ordered = sorted(claims)
    if len(ordered) < 3:
        return ordered[0]
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def decay_factor(since: datetime | None, now: datetime) -> float:
    if since is None:
        return 0.0
    elapsed = max(0.0, (now - since).total_seconds())
    return 0.5 ** (elapsed / RAC_HALF_LIFE_SECONDS)


def rac_now(rac: float, rac_time: datetime | None, now: datetime) -> float:
    """A stored RAC brought forward to ``now``."""
    return rac * decay_factor(rac_time, now)


def rac_after_grant(rac: float, rac_time: datetime | None, credit: float, now: datetime) -> float:
    """RAC in credits per day: each grant adds its share of an exponentially weighted rate,
    so a steady rate of r credits a day converges to a RAC of r."""
    per_day = credit * math.log(2) * SECONDS_PER_DAY / RAC_HALF_LIFE_SECONDS
    return rac_now(rac, rac_time, now) + per_day


def rac_after_reversal(
    rac: float, rac_time: datetime | None, credit: float, granted_at: datetime, now: datetime
) -> float:
    """RAC once a grant of ``credit`` made at ``granted_at`` is taken back: the share that
    grant added, decayed since, comes off; never below 0 (the sum of float shares drifts)."""
    share = credit * math.log(2) * SECONDS_PER_DAY / RAC_HALF_LIFE_SECONDS * decay_factor(granted_at, now)
    return max(0.0, rac_now(rac, rac_time, now) - share)


def rac_rank_key(rac: float, rac_time: datetime | None) -> float:
    """A key whose order is the order of RAC at any common ``now``, without decaying rows:
    log2(rac) + t/half-life grows with rac x 2^(t/half-life), the undecayed value."""
    if rac <= 0 or rac_time is None:
        return -1e18
    return math.log2(rac) + rac_time.timestamp() / RAC_HALF_LIFE_SECONDS
