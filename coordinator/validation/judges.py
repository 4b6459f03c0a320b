"""Who can vouch for whom in one validation pass: pure, no ORM.

A result is accepted only when independent computers agree. A host *vouches* for a group
of agreeing results when it is established (old, with results unrelated hosts agreed with;
``reputation.is_established``) and related to none of the others (``accounts.relation``).
How independently a valid result was confirmed decides the trust it earns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.accounts.relation import Holder, related, related_to_any
from coordinator.standing.reputation import Event


@dataclass(frozen=True)
class Judges:
    """Who can vouch for whom in one validation pass: each host's relation keys, and which
    hosts are established (accounts.relation, standing.reputation)."""

    holders: dict[int, Holder]
    established: frozenset[int]

    def vouches(self, host_id: int, others: Sequence[int]) -> bool:
        """``host_id`` is established and related to none of ``others``."""
        holder = self.holders[host_id]
        return host_id in self.established and not related_to_any(
            holder, [self.holders[o] for o in others if o != host_id]
        )

    def vouched(self, host_ids: Sequence[int]) -> bool:
        """Some member is established and related to none of the others."""
        return any(self.vouches(h, host_ids) for h in host_ids)

    def event_for(self, host_id: int, peers: Sequence[int]) -> Event:
        """How independently a valid result was confirmed, which decides the trust it earns."""
        others = [p for p in peers if p != host_id]
        holder = self.holders[host_id]
        unrelated = [p for p in others if not related(holder, self.holders[p])]
        if any(p in self.established for p in unrelated):
            return Event.VALID_CONFIRMED
        return Event.VALID_INDEPENDENT if unrelated else Event.VALID

    def voucher(self, host_ids: Sequence[int]) -> int | None:
        """The first member that vouches for the group, if any."""
        return next((h for h in host_ids if self.vouches(h, host_ids)), None)
