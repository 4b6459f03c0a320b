"""Reading notices and badges for the pages and the clients."""

from __future__ import annotations

from datetime import datetime

from coordinator.accounts.models import Team, Volunteer
from coordinator.community.badges import Badge, credit_badge, years_badge
from coordinator.community.models import Notice
from coordinator.validation.models import LedgerEntry

NOTICES_PER_REPLY = 20


def published_notices(*, after: int = 0, limit: int = NOTICES_PER_REPLY) -> list[Notice]:
    """The newest published notices with an id above ``after``, newest first."""
    return list(Notice.objects.filter(published=True, pk__gt=after).order_by("-created_at", "-pk")[:limit])


def first_credit_at(volunteer_id: int) -> datetime | None:
    """When the volunteer was first granted credit (one probe of the ledger, oldest first)."""
    return (
        LedgerEntry.objects.filter(volunteer_id=volunteer_id, kind=LedgerEntry.Kind.GRANT)
        .order_by("seq")
        .values_list("granted_at", flat=True)
        .first()
    )


def volunteer_badges(volunteer: Volunteer, now: datetime) -> list[Badge]:
    found = [credit_badge(volunteer.total_credit), years_badge(first_credit_at(volunteer.pk), now)]
    return [badge for badge in found if badge is not None]


def team_badges(team: Team, now: datetime) -> list[Badge]:
    """A team's credit, and its years since it was made once its members earned any."""
    since = team.created if team.total_credit > 0 else None
    found = [credit_badge(team.total_credit), years_badge(since, now)]
    return [badge for badge in found if badge is not None]
