"""Host reputation, adaptive replication and quota: pure rules, no ORM.

After BOINC's adaptive replication: a host with a long run of valid results on an app is
trusted, and its units of that app may go out as a single replica, except for a random
fraction still replicated as spot checks. An invalid result or an error resets trust at
once. A failing host's daily quota halves; a valid result doubles it back up to the cap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

TRUST_AFTER_CONSECUTIVE_VALID = 10
TRUST_MAX_ERROR_RATE = 0.05
SPOT_CHECK_FRACTION = 0.1
ERROR_RATE_WEIGHT = 0.1  # each new result's weight in the error-rate average
MIN_DAILY_QUOTA = 1


class Event(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    ERROR = "error"  # client error, no reply, unreadable output


@dataclass(frozen=True)
class Reputation:
    consecutive_valid: int = 0
    valid: int = 0
    invalid: int = 0
    errors: int = 0
    error_rate: float = 0.0


def after(reputation: Reputation, event: Event) -> Reputation:
    """The reputation once ``event`` is known."""
    failed = event is not Event.VALID
    rate = reputation.error_rate * (1 - ERROR_RATE_WEIGHT) + (ERROR_RATE_WEIGHT if failed else 0.0)
    if event is Event.VALID:
        return replace(
            reputation,
            consecutive_valid=reputation.consecutive_valid + 1,
            valid=reputation.valid + 1,
            error_rate=rate,
        )
    if event is Event.INVALID:
        return replace(reputation, consecutive_valid=0, invalid=reputation.invalid + 1, error_rate=rate)
    return replace(reputation, consecutive_valid=0, errors=reputation.errors + 1, error_rate=rate)


def is_trusted(reputation: Reputation) -> bool:
    return (
        reputation.consecutive_valid >= TRUST_AFTER_CONSECUTIVE_VALID
        and reputation.error_rate <= TRUST_MAX_ERROR_RATE
    )


def send_single(reputation: Reputation, draw: float) -> bool:
    """Whether a unit may go to this host as its only replica; ``draw`` is uniform in [0, 1)."""
    return is_trusted(reputation) and draw >= SPOT_CHECK_FRACTION


def quota_after(quota: int, event: Event, cap: int) -> int:
    if event is Event.VALID:
        return min(cap, max(quota * 2, MIN_DAILY_QUOTA))
    return max(MIN_DAILY_QUOTA, quota // 2)
