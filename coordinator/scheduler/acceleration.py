"""Which hosts are reliable, and when a replica sent now is due and overdue (docs/batches.md).

BOINC sends retries and a batch's last units to reliable hosts first, with a shorter
deadline (``reliable_max_avg_turnaround``, ``reliable_reduced_delay_bound``). Here a host is
reliable when its last RELIABLE_MIN_CONSECUTIVE_VALID results were valid and its usual
turnaround on every version it was measured on is at most RELIABLE_MAX_TURNAROUND; an
accelerated replica (``Replica.accelerated``: a reissue, or a batch's tail work) waits
ACCELERATED_WAIT_SECONDS for such a host, then goes to anyone. Pure functions: the claim reads
the figures (``dispatch_sql.claim_context``) and writes what these say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Rules:
    """The settings these functions read (``settings.TESSERA``), as one value."""

    min_consecutive_valid: int = 5
    max_turnaround: float = 24 * 3600.0
    deadline_share: float = 0.5
    overdue_factor: float = 2.0
    unmeasured_share: float = 0.5
    min_availability: float = 0.9

    @classmethod
    def of(cls, tessera: dict[str, Any]) -> Rules:
        return cls(
            min_consecutive_valid=tessera["RELIABLE_MIN_CONSECUTIVE_VALID"],
            max_turnaround=tessera["RELIABLE_MAX_TURNAROUND"],
            deadline_share=tessera["RELIABLE_DEADLINE_SHARE"],
            overdue_factor=tessera["TAIL_OVERDUE_FACTOR"],
            unmeasured_share=tessera["TAIL_UNMEASURED_SHARE"],
            min_availability=tessera["RELIABLE_MIN_AVAILABILITY"],
        )


def is_reliable(
    *,
    consecutive_valid: int,
    turnarounds: Iterable[float],
    rules: Rules,
    typical: float = 0.0,
    availability: float = 1.0,
) -> bool:
    """Valid of late, and quick to return on every version it has returned work of: within
    ``max_turnaround``, and no slower than ``typical`` (the app's usual turnaround across
    hosts, once known), so the tail's work goes to the faster half of the hosts; and on for
    at least ``min_availability`` of the time (as its client measures it), since a host that
    goes off holds its tasks however fast it crunches. A host never measured is not reliable
    yet: it has to show it first."""
    measured = [t for t in turnarounds if t > 0]
    limit = min(rules.max_turnaround, typical) if typical > 0 else rules.max_turnaround
    return (
        consecutive_valid >= rules.min_consecutive_valid
        and bool(measured)
        and max(measured) <= limit
        and availability >= rules.min_availability
    )


@dataclass(frozen=True)
class Timing:
    deadline: datetime
    overdue_at: datetime


def timing(
    *,
    now: datetime,
    delay_bound: int,
    accelerated: bool,
    reliable: bool,
    turnaround: float,
    rules: Rules,
    expected: float = 0.0,
    typical: float = 0.0,
) -> Timing:
    """The deadline of a replica sent now (shorter for an accelerated replica a reliable host
    takes), and when it is overdue: ``overdue_factor`` times the host's usual turnaround on
    the version, or, when it has none, times ``expected`` (the seconds the host's own figures
    say it needs: the tasks it holds per core and this one, at its speed and availability),
    at most ``unmeasured_share`` of the time to the deadline; and never later than
    ``overdue_factor`` times ``typical`` (the app's usual turnaround across hosts), so a slow
    host's replica in a batch's tail is backed up when a usual host's would be; never after
    the deadline."""
    seconds = float(delay_bound)
    if accelerated and reliable:
        seconds = max(1.0, seconds * rules.deadline_share)
    if turnaround > 0:
        overdue = rules.overdue_factor * turnaround
    else:
        unmeasured = rules.unmeasured_share * seconds
        overdue = min(unmeasured, rules.overdue_factor * expected) if expected > 0 else unmeasured
    if typical > 0:  # never later than a typical host's replica would be
        overdue = min(overdue, rules.overdue_factor * typical)
    return Timing(now + timedelta(seconds=seconds), now + timedelta(seconds=min(seconds, overdue)))
