"""Teams: made by a volunteer, joined and left freely. Credit earned while a member counts
for the team (validation.standing); leaving takes nothing back, as in BOINC."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from coordinator.accounts.models import Team, Volunteer
from coordinator.core.errors import Conflict, InvalidInput, NotFound

MAX_NAME = 64


def clean_team_name(name: str) -> str:
    name = " ".join(name.split())  # no leading, trailing or repeated white space
    if not name:
        raise InvalidInput("a team needs a name", code="empty_name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"a team's name is at most {MAX_NAME} characters", code="name_too_long")
    if any(ord(c) < 32 for c in name):
        raise InvalidInput("a team's name may not hold control characters", code="bad_name")
    return name


@transaction.atomic
def create_team(*, founder: Volunteer, name: str) -> Team:
    """A new team with its founder as its first member (leaving any team they were in)."""
    name = clean_team_name(name)
    if Team.objects.filter(name__iexact=name).exists():
        raise Conflict(f"there is already a team called {name!r}", code="team_name_taken")
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, founder=founder.user)
    except IntegrityError as error:  # the same name, made at the same moment
        raise Conflict(f"there is already a team called {name!r}", code="team_name_taken") from error
    Volunteer.objects.filter(pk=founder.pk).update(team=team)
    return team


def join_team(*, volunteer: Volunteer, team_id: int) -> Team:
    team = Team.objects.filter(pk=team_id).first() if 0 < team_id < 2**63 else None
    if team is None:
        raise NotFound(f"team {team_id} does not exist", code="unknown_team")
    Volunteer.objects.filter(pk=volunteer.pk).update(team=team)
    return team


def leave_team(*, volunteer: Volunteer) -> None:
    Volunteer.objects.filter(pk=volunteer.pk).update(team=None)
