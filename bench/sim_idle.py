"""Backups for idle hosts in the simulator: ``scheduler.idle_hosts`` and
``tails.back_up_for_idle_host`` on the world's units, choosing with the coordinator's own
``work.speculation``. The sample of a tail's active units is drawn as the query draws it
(a batch by its size, a random point, the next active units by id); the index it reads is
modelled by a "next active unit" table (a unit reopened later is not found again by it)."""

from __future__ import annotations

import heapq
import random

from bench.sim_engine import IN_PROGRESS, OVER, UNSENT, Host, reliable
from coordinator.scheduler.idle_hosts import MOST_PER_REQUEST, SAMPLE_PER_CORE
from coordinator.work.lifecycle import Outcome, UnitState
from coordinator.work.speculation import Out, UnitOut, backups_for_idle_host, results_needed

SUCCESS = Outcome.SUCCESS


class IdleBackups:
    def __init__(self, world, seed: int) -> None:
        self.world = world
        self.rng = random.Random(seed + 2)
        self.next_active: list[int] = []  # per unit id: the first active unit at or after it
        self.made = 0  # replicas made overdue for idle hosts

    def grow(self, units: int) -> None:
        """Units submitted: ids up to ``units`` exist (and are active)."""
        self.next_active.extend(range(len(self.next_active), units + 1))

    def finished(self, unit_id: int) -> None:
        self.next_active[unit_id] = unit_id + 1

    def first_active(self, unit_id: int) -> int:
        """The first active unit at or after ``unit_id`` (the index's next entry)."""
        table, root = self.next_active, unit_id
        while table[root] != root:
            root = table[root]
        while table[unit_id] != root:  # path compression
            table[unit_id], unit_id = root, table[unit_id]
        return root

    def any_unsent(self) -> bool:
        """``dispatch_sql.any_unsent``: the queues' heads, once what left them is dropped."""
        queues, reps = self.world.queues, self.world.reps
        for heap in [*queues.by_share.values(), queues.reserved]:
            while heap and reps[heap[0][2]].state is not UNSENT:
                heapq.heappop(heap)
            if heap:
                return True
        return False

    def back_up_for(self, host: Host) -> int:
        """``idle_hosts.back_up_for_idle_host``, asked after a request for work got nothing
        and nothing waits to be sent. Returns how many replicas it made overdue."""
        world = self.world
        knobs = world.knobs
        if host.consecutive_valid < knobs.rules.min_consecutive_valid:
            return 0
        free = min(MOST_PER_REQUEST, host.cores - host.holds)
        typical = world.typical_turnaround()
        if free <= 0 or not reliable(host, knobs, typical):
            return 0
        units = [
            self.unit_out(unit_id, host.index, typical) for unit_id in self.sample(SAMPLE_PER_CORE * free)
        ]
        chosen = backups_for_idle_host(
            [u for u in units if u is not None],
            now=world.now,
            own_seconds=host.turnaround,
            overdue_factor=knobs.rules.overdue_factor,
            count=free,
        )
        touched = {}
        for rep_id in chosen:
            rep = world.reps[rep_id]
            rep.overdue_at = world.now
            touched[rep.unit.id] = rep.unit
        self.made += len(chosen)
        for unit in sorted(touched.values(), key=lambda u: u.id):
            world.touch(unit)
        return len(chosen)

    def sample(self, count: int) -> list[int]:
        """``tails.tail_sample``: a running batch in its tail, drawn by its size; from a random
        unit of it, the next ``count`` active units by id, wrapping to its first."""
        tails = [b for b in self.world.batches if b.tail and b.done_at is None]
        if not tails:
            return []
        batch = self.rng.choices(tails, [b.units for b in tails])[0]
        low, end = self.first_active(batch.first_unit), batch.first_unit + batch.units
        if low >= end:
            return []
        start = self.rng.randrange(low, end)
        found: list[int] = []
        for begin, stop in ((start, end), (low, start)):
            unit_id = self.first_active(begin)
            while unit_id < stop and len(found) < count:
                found.append(unit_id)
                unit_id = self.first_active(unit_id + 1)
        return found

    def unit_out(self, unit_id: int, host_index: int, usual: float) -> UnitOut | None:
        """``idle_hosts.units_out`` for one unit: None when the host holds or held a replica
        of it (one pass over its replicas: this runs for every unit of every sample)."""
        world = self.world
        unit = world.units[unit_id]
        if unit.state is not UnitState.ACTIVE:
            return None
        reps, hosts, judged, out = world.reps, world.hosts, [], []
        for rep_id in unit.replicas:
            rep = reps[rep_id]
            if rep.host == host_index:
                return None
            if rep.state is IN_PROGRESS:
                out.append(Out(rep_id, rep.sent_at, rep.overdue_at, hosts[rep.host].turnaround))
            elif rep.state is OVER and rep.outcome is SUCCESS:
                judged.append(rep.validate)
        return UnitOut(unit_id, results_needed(unit.batch.policy.min_quorum, judged), usual, tuple(out))
