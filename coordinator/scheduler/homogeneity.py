"""Homogeneous redundancy at dispatch (docs/platforms.md): the units of an HR app (or of one
that pins an app version) are held to the kind of host that got their first replica.

The candidate read offers a host only units free or held for its kind (``dispatch_sql``);
``hold_alike`` then fixes or extends the holds of the chosen units under a row lock taken in
id order, as reports lock units, so two hosts of different kinds claiming a unit's replicas at
once cannot both win, and no two claims deadlock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from coordinator.scheduler.dispatch_sql import AppFilter, Candidate
from coordinator.work.models import WorkUnit


def hold_alike(chosen: list[Candidate], filters: list[AppFilter], now: datetime) -> list[Candidate]:
    """Keep the chosen units of HR apps to this host's class (and those of apps that pin a
    version to its version), and drop those another class or version holds. A unit already
    held for this host's kind long enough is left alone; the others are locked in id order
    (as reports lock units: no deadlock), checked again and held for two delay bounds, so
    every replica sent while a unit is held has its deadline inside the hold. A reserved
    replica (an audit, a dispute) neither takes nor extends a hold: the SQL let it through,
    of this kind or past its wait, and a host of a kind made up to hold units must not be able
    to keep its checks from others."""
    rules = {item.app_id: item for item in filters if item.hr_class or item.pinned_version is not None}
    held_kind = [c for c in chosen if c.app_id in rules and not c.reserved]
    if not held_kind:
        return chosen
    app_of = {c.unit_id: c.app_id for c in held_kind}
    fields = ("id", "hr_class", "pinned_version_id", "homogeneous_until", "delay_bound")
    to_hold = [
        c.unit_id
        for c in held_kind
        if _hold(rules[c.app_id], c.hr_class, c.pinned_version, c.held_until, c.delay_bound, now=now)
        != "kept"
    ]
    lost: set[int] = set()
    held: dict[tuple[int, int], list[int]] = {}
    for unit_id, *rest in (
        WorkUnit.objects.select_for_update().filter(id__in=to_hold).order_by("id").values_list(*fields)
    ):
        verdict = _hold(rules[app_of[unit_id]], *rest, now=now)
        if verdict == "lost":
            lost.add(unit_id)
        else:
            held.setdefault((app_of[unit_id], rest[-1]), []).append(unit_id)
    for (app_id, delay), ids in held.items():
        rule = rules[app_id]
        WorkUnit.objects.filter(id__in=ids).update(
            hr_class=rule.hr_class,
            pinned_version=rule.pinned_version,
            homogeneous_until=now + timedelta(seconds=2 * delay),
        )
    return [c for c in chosen if c.unit_id not in lost]


def _hold(
    rule: AppFilter,
    hr_class: str,
    pinned: int | None,
    until: datetime | None,
    delay: int,
    *,
    now: datetime,
) -> str:
    """ "kept": the unit is held for this host's kind for at least a delay bound more; "lost":
    another kind holds it; "hold": it is free (or its hold is ending) and this claim takes it."""
    free = until is None or until < now
    ours = (not rule.hr_class or hr_class == rule.hr_class) and (
        rule.pinned_version is None or pinned == rule.pinned_version
    )
    if ours and not free and until is not None and until >= now + timedelta(seconds=delay):
        return "kept"
    return "hold" if ours or free else "lost"
