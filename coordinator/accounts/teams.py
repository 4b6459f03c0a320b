"""Teams: made by a volunteer, joined and left freely. Credit earned while a member counts
for the team (standing.services); leaving takes nothing back, as in BOINC."""

from __future__ import annotations

import unicodedata

from django.db import IntegrityError, transaction

from coordinator.accounts import names
from coordinator.accounts.models import Team, Volunteer
from coordinator.core.errors import Conflict, InvalidInput, NotFound

MAX_NAME = 64


def clean_team_name(name: str) -> str:
    name = " ".join(name.split())  # no leading, trailing or repeated white space
    if not name:
        raise InvalidInput("a team needs a name", code="empty_name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"a team's name is at most {MAX_NAME} characters", code="name_too_long")
    if any(unicodedata.category(c) == "Cc" for c in name):  # C0, DEL and C1
        raise InvalidInput("a team's name may not hold control characters", code="bad_name")
    names.refuse_hidden_characters(name)
    return name


@transaction.atomic
def create_team(*, founder: Volunteer, name: str) -> Team:
    """A new team with its founder as its first member (leaving any team they were in)."""
    name = clean_team_name(name)
    skeleton = names.name_skeleton(name)
    _refuse_taken_name(name, skeleton)
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, founder=founder.user, name_skeleton=skeleton)
    except IntegrityError as error:  # the same or a look-alike name, made at the same moment
        _refuse_taken_name(name, skeleton)
        raise Conflict(f"there is already a team called {name!r}", code="team_name_taken") from error
    Volunteer.objects.filter(pk=founder.pk).update(team=team)
    return team


def _refuse_taken_name(name: str, skeleton: str) -> None:
    """Refuse a team name in use, in any case, or one that looks like another team's."""
    if Team.objects.filter(name__iexact=name).exists():
        raise Conflict(f"there is already a team called {name!r}", code="team_name_taken")
    look_alike = Team.objects.filter(name_skeleton=skeleton).first()
    if look_alike is not None:
        raise names.look_alike(name, look_alike.name)


def join_team(*, volunteer: Volunteer, team_id: int) -> Team:
    team = Team.objects.filter(pk=team_id).first() if 0 < team_id < 2**63 else None
    if team is None:
        raise NotFound(f"team {team_id} does not exist", code="unknown_team")
    Volunteer.objects.filter(pk=volunteer.pk).update(team=team)
    return team


def leave_team(*, volunteer: Volunteer) -> None:
    Volunteer.objects.filter(pk=volunteer.pk).update(team=None)
