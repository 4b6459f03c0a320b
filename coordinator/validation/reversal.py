"""Taking back credit granted for a wrong result: caught means corrected.

A reversal never changes or removes the grant. It is a new entry of the credit ledger that
names the grant it compensates, so the chain still verifies, anyone can see every reversal
in an export, and the totals come down by exactly what the grant put up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from coordinator.standing.services import Grant, add_credit
from coordinator.validation import ledger
from coordinator.work.models import Replica


@dataclass(frozen=True)
class Reversal:
    """Credit taken back from one replica by ledger entry ``seq``."""

    seq: int
    reverses: int  # the seq of the grant it takes back
    replica_id: int
    volunteer_id: int
    host_id: int
    unit_id: int
    credit: Decimal  # positive: what was taken back


def reverse_credit(*, replica_ids: list[int], now: datetime) -> list[Reversal]:
    """Take back, once, the credit granted to each of these replicas; returns what it did.

    Each replica with a grant in the ledger and no reversal yet gets a reversal entry; its
    volunteer, the volunteer's current team and its host lose the amount and the RAC share
    the grant still holds; the grant's day loses it in the credit per day; and its
    ``granted_credit`` becomes NULL. Other replicas are passed over, so a second run changes
    nothing. Meant for the validator's transaction (it opens its own otherwise), called
    before that pass appends its own grants, so that rows are locked in the validator's
    order: replicas, the ledger head, then volunteers, teams, hosts and credit days by id.
    """
    if not replica_ids:
        return []
    with transaction.atomic():
        list(Replica.objects.select_for_update().filter(pk__in=replica_ids).order_by("pk").values_list("pk"))
        pairs = ledger.append_reversals(replica_ids=replica_ids, now=now)
        if not pairs:
            return []
        add_credit(
            [
                Grant(g.volunteer_id, g.host_id, g.replica_id, g.unit_id, -g.credit, g.granted_at)
                for g, _ in pairs
            ],
            now=now,
        )
        Replica.objects.filter(pk__in=[g.replica_id for g, _ in pairs]).update(granted_credit=None)
    return [
        Reversal(r.seq, g.seq, g.replica_id, g.volunteer_id, g.host_id, g.unit_id, g.credit) for g, r in pairs
    ]
