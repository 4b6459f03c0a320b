"""Caught means corrected: the sweep that reopens what cheaters got accepted.

When a host's result loses against a quorum an established host vouched for, the host is
*caught* (``Host.caught_at``, set by ``standing.record_events``). This sweep then asks for
an audit of every done unit where the caught host's result is valid and nobody independent
of it vouched for the canonical result: units it had alone, units accepted on a quorum of
new hosts, units it vouched for itself. An audit is one more replica for an established
host unrelated to the unit's holders; if it disagrees, the validator reopens the unit, and
the new verdict replaces the canonical result, reverses the wrong credit and catches the
hosts that agreed with the wrong answer, whose units this sweep then audits in turn.

The same sweep audits units accepted on a quorum no established host vouched for, once
established hosts exist to do it. Hosts related to a caught one lose their trust.
Everything is found from database state, so a lost message or a killed worker only delays it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from coordinator.accounts.models import Host
from coordinator.accounts.relation import related
from coordinator.accounts.selectors import holders
from coordinator.standing.models import HostAppReputation
from coordinator.work.lifecycle import UnitState, ValidateState
from coordinator.work.models import WorkUnit

CHUNK = 500
# An audit needs an established host that was seen this recently.
ACTIVE_WITHIN = timedelta(days=1)


def _auditable() -> Q:
    """Done units that can still be computed again: their input is kept, and the scientist
    did not turn redundancy off."""
    kept = Q(input_inline__isnull=False) | ~Q(input_file="")
    return (
        Q(state=UnitState.DONE, min_quorum__gte=2)
        & kept
        & (Q(batch__isnull=True) | Q(batch__purged__isnull=True))
    )


def units_to_reopen(host: Host) -> list[int]:
    """Done units the caught ``host`` has a valid result in that nobody independent of it
    vouched for: no one, the host itself, or a host related to it."""
    rows = list(
        WorkUnit.objects.filter(
            _auditable(), replicas__host=host, replicas__validate_state=ValidateState.VALID
        ).values_list("pk", "vouched_by_id")
    )
    vouchers = holders({v for _, v in rows if v is not None} | {host.pk})
    mine = vouchers[host.pk]
    return sorted(
        {
            unit_id
            for unit_id, voucher in rows
            if voucher is None or voucher == host.pk or related(mine, vouchers[voucher])
        }
    )


def ask_for_audits(unit_ids: list[int], *, now: datetime) -> int:
    """Mark done units for an audit (the lifecycle then makes the reserved replica); their
    vouching no longer counts. Returns how many were marked now."""
    marked = 0
    for start in range(0, len(unit_ids), CHUNK):
        marked += WorkUnit.objects.filter(
            pk__in=unit_ids[start : start + CHUNK], state=UnitState.DONE, audit_wanted=False
        ).update(audit_wanted=True, vouched_by=None, transition_time=now)
    return marked


def _untrust_related(host: Host) -> int:
    """Hosts related to a caught one lose their trust and their established standing."""
    caught = holders([host.pk])[host.pk]
    near = Host.objects.filter(
        Q(volunteer_id=host.volunteer_id)
        | Q(network__in=caught.networks)
        | Q(registered_network__in=caught.networks)
        | Q(volunteer__signup_network__in=caught.networks)
        | (Q(volunteer__signup_burst=caught.burst) & ~Q(volunteer__signup_burst=""))
    ).exclude(pk=host.pk)
    ids = [pk for pk, holder in holders(near.values_list("pk", flat=True)).items() if related(caught, holder)]
    HostAppReputation.objects.filter(host_id__in=ids).update(consecutive_valid=0)
    Host.objects.filter(pk__in=ids).update(consecutive_valid=0, independent_valid=0)
    return len(ids)


def correct_caught_host(*, host_id: int, now: datetime) -> int:
    """Audit what one caught host got accepted, once per catch; returns units marked."""
    with transaction.atomic():
        host = (
            Host.objects.select_for_update(skip_locked=True)
            .filter(pk=host_id, caught_at__isnull=False)
            .filter(Q(corrected_at__isnull=True) | Q(corrected_at__lt=F("caught_at")))
            .first()
        )
        if host is None:
            return 0
        marked = ask_for_audits(units_to_reopen(host), now=now)
        _untrust_related(host)
        Host.objects.filter(pk=host.pk).update(corrected_at=host.caught_at)
        return marked


def audit_unvouched_units(*, now: datetime, limit: int = 2000) -> int:
    """Ask for audits of done units that no established host vouched for yet, as long as
    established hosts are around to do them; returns how many were marked."""
    rule_age = timedelta(seconds=settings.TESSERA["ESTABLISHED_AGE_SECONDS"])
    established_around = Host.objects.filter(
        created__lte=now - rule_age,
        independent_valid__gte=settings.TESSERA["ESTABLISHED_MIN_VALID"],
        last_contact__gte=now - ACTIVE_WITHIN,
    ).exists()
    if not established_around:
        return 0
    ids = list(
        WorkUnit.objects.filter(_auditable(), vouched_by__isnull=True, audit_wanted=False)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return ask_for_audits(ids, now=now)


def correction_sweep(*, now: datetime) -> tuple[int, int]:
    """Every caught host not yet corrected, then unvouched units; returns (units marked for
    caught hosts, units marked as unvouched)."""
    caught = (
        Host.objects.filter(caught_at__isnull=False)
        .filter(Q(corrected_at__isnull=True) | Q(corrected_at__lt=F("caught_at")))
        .values_list("pk", flat=True)
    )
    for_caught = sum(correct_caught_host(host_id=pk, now=now) for pk in list(caught[:CHUNK]))
    return for_caught, audit_unvouched_units(now=now)
