"""Deleting a volunteer's account: their name leaves every page, answer and export, their
computers stop, and the ledger keeps its entries under the volunteer's number alone.

What goes: the name (the user becomes ``deleted:<id>``, a name sign-up refuses), the email,
the password, the account token, the team, the listing and email consent, the science
choice, the cross-project id, the computers' names, and whatever the layers above keep (the
boinc app: BOINC keys and access). What stays: the numbers (credit totals, the ledger,
results) that other people's credit and the chain depend on, and what relates hosts against
collusion (the sign-up network and burst, the computers' coarse networks): a ring member who
deleted their account must stay related to the others, or they could agree with its lies.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from coordinator.accounts.models import Host, Volunteer
from coordinator.community.models import DeletedAccount
from coordinator.community.signals import account_deleting

BY = ("volunteer", "admin")


def delete_account(volunteer_id: int, *, now: datetime, by: str) -> DeletedAccount:
    """Empty the account; a second call for the same volunteer changes nothing more."""
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, not {by!r}")
    with transaction.atomic():
        volunteer = Volunteer.objects.select_for_update().select_related("user").get(pk=volunteer_id)
        done = DeletedAccount.objects.filter(volunteer=volunteer).first()
        if done is not None:
            return done
        cpid = ""
        for _, reply in account_deleting.send(sender=Volunteer, volunteer=volunteer):
            if isinstance(reply, dict) and isinstance(reply.get("cpid"), str):
                cpid = reply["cpid"]
        user = volunteer.user
        user.username, user.email, user.first_name, user.last_name = f"deleted:{volunteer.pk}", "", "", ""
        user.is_active = False
        user.set_unusable_password()
        user.save()
        Volunteer.objects.filter(pk=volunteer.pk).update(
            token_hash=None,
            token_created=None,
            name_skeleton=None,
            team=None,
            listed=False,
            email_ok=False,
            science={},
            cross_project_id="",
        )
        Host.objects.filter(volunteer=volunteer).update(name="deleted")
        return DeletedAccount.objects.create(volunteer=volunteer, deleted_at=now, by=by, cpid=cpid)
