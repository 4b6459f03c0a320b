"""Which science a volunteer's computers run: BOINC's project preferences and venues.

A volunteer may pick the apps their computers run, and whether they take beta versions, once
for all computers (the default venue) and again for computers they put at home, school or
work. ``Volunteer.science`` keeps it as ``{venue: {"apps": [app ids] or null, "beta": bool}}``;
a missing venue falls back to the default, a missing default to every app and ``beta_work``.
The scheduler asks :func:`choice_for` for each request; the account page saves with
:func:`save_choice`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT = ""
VENUES = {DEFAULT: "every computer (default)", "home": "home", "school": "school", "work": "work"}
MAX_APPS = 1000


@dataclass(frozen=True)
class Choice:
    apps: frozenset[int] | None  # None: every app
    beta: bool


def choice_for(science: Any, venue: str, beta_work: bool) -> Choice:
    """What a computer at ``venue`` may run; anything malformed counts as no choice made."""
    entries = science if isinstance(science, dict) else {}
    entry = entries.get(venue) if venue in VENUES and venue != DEFAULT else None
    if not isinstance(entry, dict):
        entry = entries.get(DEFAULT)
    if not isinstance(entry, dict):
        return Choice(None, beta_work)
    apps = entry.get("apps")
    chosen = (
        frozenset(a for a in apps if type(a) is int)
        if isinstance(apps, list) and len(apps) <= MAX_APPS
        else None
    )
    beta = entry.get("beta")
    return Choice(chosen, beta if isinstance(beta, bool) else beta_work)


def with_choice(science: Any, venue: str, apps: list[int] | None, beta: bool) -> dict[str, Any]:
    """``science`` with ``venue``'s choice set (``apps=None``: every app)."""
    if venue not in VENUES:
        raise ValueError(f"no venue {venue!r}: one of {', '.join(repr(v) for v in VENUES)}")
    entries = dict(science) if isinstance(science, dict) else {}
    entries[venue] = {"apps": sorted(set(apps)) if apps is not None else None, "beta": bool(beta)}
    return entries


def without_venue(science: Any, venue: str) -> dict[str, Any]:
    """``science`` with ``venue`` back to the default's choice."""
    entries = dict(science) if isinstance(science, dict) else {}
    entries.pop(venue, None)
    return entries


def save_choice(volunteer_id: int, venue: str, apps: list[int] | None, beta: bool, *, reset: bool) -> None:
    """Set (or, with ``reset``, drop) one venue's choice, under the volunteer's row lock so two
    saves at once both count."""
    from django.db import transaction

    from coordinator.accounts.models import Volunteer

    with transaction.atomic():
        volunteer = Volunteer.objects.select_for_update().only("science").get(pk=volunteer_id)
        if reset:
            volunteer.science = without_venue(volunteer.science, venue)
        else:
            volunteer.science = with_choice(volunteer.science, venue, apps, beta)
        volunteer.save(update_fields=["science"])
