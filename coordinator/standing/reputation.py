"""Host reputation, adaptive replication and quota: pure rules, no ORM.

After BOINC's adaptive replication: a host with a long run of valid results on an app is
trusted, and its units of that app may go out as a single replica, except for a random
fraction still replicated as spot checks. Trust is earned only from independent agreement:
a valid result counts toward it only when an *established* host unrelated to this one
agreed (accounts.relation). An invalid result or an error resets trust at once.

Quota, per host and app version, as BOINC's ``max_jobs_per_day``: a new host starts small,
a valid result doubles the quota (up to the cap), an error takes one off, and an invalid
result (caught cheating) sets it to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

TRUST_AFTER_CONSECUTIVE_VALID = 10
TRUST_MAX_ERROR_RATE = 0.05
# Spot checks of a trusted host: BOINC replicates with probability 1/consecutive_valid; we
# never go below this floor, so a long-trusted host is still checked one time in ten.
SPOT_CHECK_FLOOR = 0.1
ERROR_RATE_WEIGHT = 0.1  # each new result's weight in the error-rate average
MIN_DAILY_QUOTA = 1


class Event(StrEnum):
    VALID = "valid"  # agreed only with related hosts, or accepted alone: no trust earned
    VALID_INDEPENDENT = "valid_independent"  # an unrelated host agreed
    VALID_CONFIRMED = "valid_confirmed"  # an established host unrelated to this one agreed
    INVALID = "invalid"
    ERROR = "error"  # client error, no reply, unreadable output

    @property
    def is_valid(self) -> bool:
        return self in VALID_EVENTS


VALID_EVENTS = frozenset({Event.VALID, Event.VALID_INDEPENDENT, Event.VALID_CONFIRMED})


@dataclass(frozen=True)
class Establishment:
    """What makes a host established: age and valid results unrelated hosts agreed with."""

    min_age_seconds: float
    min_independent_valid: int


def is_established(*, age_seconds: float, independent_valid: int, rule: Establishment) -> bool:
    """Established hosts vouch for others: their agreement earns trust, they settle disputes
    and audits. A new host or account is never established, whatever it reports."""
    return age_seconds >= rule.min_age_seconds and independent_valid >= rule.min_independent_valid


@dataclass(frozen=True)
class Reputation:
    consecutive_valid: int = 0
    valid: int = 0
    invalid: int = 0
    errors: int = 0
    error_rate: float = 0.0


def after(reputation: Reputation, event: Event) -> Reputation:
    """The reputation once ``event`` is known: only a confirmed valid result adds to trust."""
    failed = not event.is_valid
    rate = reputation.error_rate * (1 - ERROR_RATE_WEIGHT) + (ERROR_RATE_WEIGHT if failed else 0.0)
    if event.is_valid:
        return replace(
            reputation,
            consecutive_valid=reputation.consecutive_valid + (event is Event.VALID_CONFIRMED),
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


def spot_check_chance(reputation: Reputation) -> float:
    """How likely a trusted host's unit is still replicated: 1/consecutive_valid, floored."""
    return max(SPOT_CHECK_FLOOR, 1.0 / max(1, reputation.consecutive_valid))


def send_single(reputation: Reputation, draw: float, *, established: bool) -> bool:
    """Whether a unit may go to this host as its only replica; ``draw`` is uniform in [0, 1).
    Only an established host that earned trust on the app by independent agreement."""
    return established and is_trusted(reputation) and draw >= spot_check_chance(reputation)


def quota_after(quota: int, event: Event, cap: int) -> int:
    """A host app version's daily quota after ``event``: x2 on valid, -1 on error, 1 on invalid."""
    if event.is_valid:
        return min(cap, max(quota * 2, MIN_DAILY_QUOTA))
    if event is Event.INVALID:
        return MIN_DAILY_QUOTA
    return max(MIN_DAILY_QUOTA, quota - 1)
