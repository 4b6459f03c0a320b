"""Badges, as BOINC projects and stats sites show them: one for the credit a volunteer or team
has reached (each level ten times the one before), one for the years since it began.

Pure rules: what a total or a date earns. Credit is the ledger's total, so a badge follows a
reversal down as surely as a grant up; the years start at the first credit granted, not at
sign-up, so an account left idle earns none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

CREDIT_LEVELS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
COLOURS = ("#a0673a", "#8c8f94", "#b8912a", "#5d8fa6", "#a8233b", "#1f7a47", "#4a68c2")
DAYS_A_YEAR = 365.2425


@dataclass(frozen=True)
class Badge:
    kind: str  # "credit" or "years"
    level: int  # 1 for the first
    label: str  # what the badge reads: "10K", "3 y"
    title: str  # what it says in full
    colour: str


def short_number(value: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "K")):
        if value >= size:
            return f"{value // size}{suffix}"
    return str(value)


def credit_badge(total: Decimal | float | int) -> Badge | None:
    """The highest credit level ``total`` has reached, or None below the first."""
    reached = [level for level in CREDIT_LEVELS if Decimal(str(total)) >= level]
    if not reached:
        return None
    level = len(reached)
    return Badge("credit", level, short_number(reached[-1]), f"{reached[-1]:,} credit", COLOURS[level - 1])


def years_badge(since: datetime | None, now: datetime) -> Badge | None:
    """Whole years from ``since`` (the first credit) to ``now``, from the first."""
    if since is None or since > now:
        return None
    years = int((now - since).days / DAYS_A_YEAR)
    if years < 1:
        return None
    title = f"{years} year{'s' if years > 1 else ''} of contribution"
    return Badge("years", years, f"{years} y", title, COLOURS[min(years, len(COLOURS)) - 1])
