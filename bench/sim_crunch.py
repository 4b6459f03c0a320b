"""The simulated hosts' side: on and off by their availability model, a buffer of tasks
started in the client's order (earliest deadline first), one task per core, results reported
(and work asked for) as each task ends."""

from __future__ import annotations

from collections.abc import Callable

from tessera_client.scheduling import Candidate, run_order

from bench.sim_engine import IN_PROGRESS, Batch
from bench.sim_population import Availability
from bench.sim_world import BACKOFF, BUFFER_PER_CORE, RANDOM_SPEEDUP, WAKE, WAKE_TAIL, World
from coordinator.work.lifecycle import UnitState

TOGGLE, FETCH, DONE, SUBMIT = 3, 4, 5, 6
LOW_WATER_PER_CORE = 1  # a client asks for work when it holds this many tasks per core or fewer


class Crunching:
    """Hosts' events on a ``World``: each handler takes the event's two integers."""

    def __init__(
        self,
        world: World,
        availability: list[Availability],
        leaves_at: list[float],
        *,
        backoff: tuple[float, float] = BACKOFF,
        overhead: float = 0.0,
        prompt: float = 5.0,
    ) -> None:
        self.world, self.availability, self.leaves_at = world, availability, leaves_at
        self.backoff = backoff  # a host that got nothing asks again after this, doubling up to the most
        self.overhead = overhead  # seconds per task beyond crunching: download, start, upload, report
        self.prompt = prompt  # RPC_DELAY_WITH_WORK: when a host that made backups asks again
        self.pending_batches: list[Batch] = []

    def handlers(self) -> dict[int, Callable[[int, int], None]]:
        return {
            WAKE: self.wake,
            WAKE_TAIL: self.wake_tail,
            TOGGLE: self.toggle,
            FETCH: self.fetch,
            DONE: self.done,
            SUBMIT: self.submit,
        }

    def start(self) -> None:
        world = self.world
        for index, availability in enumerate(self.availability):
            on, left = availability.first_state()
            world.on[index] = on
            world.at_time(min(left, self.leaves_at[index]), TOGGLE, index)
            if on:
                world.at_time(world.rng.random() * 60.0, FETCH, index)

    def submit(self, index: int, _: int) -> None:
        batch = self.pending_batches[index]
        batch.submitted = self.world.now
        self.world.submit(batch)

    def wake(self, unit_id: int, _: int) -> None:
        unit = self.world.units[unit_id]
        if unit.wake_at is not None and unit.wake_at <= self.world.now:
            unit.wake_at = None
            self.world.touch(unit)

    def wake_tail(self, unit_id: int, _: int) -> None:
        unit = self.world.units[unit_id]
        if unit.state is UnitState.ACTIVE:
            self.world.touch(unit)

    def toggle(self, index: int, _: int) -> None:
        world, host = self.world, self.world.hosts[index]
        now = world.now
        if host.gone:
            return
        if now >= self.leaves_at[index]:  # it leaves for good, with whatever it holds
            host.gone = True
            self.pause(index)
            world.on[index] = False
            return
        world.on[index] = on = not world.on[index]
        left = self.availability[index].next_interval(on)
        world.at_time(min(now + left, self.leaves_at[index]), TOGGLE, index)
        if on:
            self.resume(index)
            self.fetch(index, 0)
        else:
            self.pause(index)

    def pause(self, index: int) -> None:
        world = self.world
        running = world.running[index]
        for rep_id, (left, since) in list(running.items()):
            running[rep_id] = (left - (world.now - since), -1.0)

    def resume(self, index: int) -> None:
        world = self.world
        running = world.running[index]
        for rep_id, (left, _) in list(running.items()):
            running[rep_id] = (left, world.now)
            world.at_time(world.now + left, DONE, index, rep_id)
        self.start_tasks(index)

    def fetch(self, index: int, _: int) -> None:
        """A scheduler request: results are reported as they end, so this asks for work."""
        world, host = self.world, self.world.hosts[index]
        if host.gone or not world.on[index]:
            return
        want = host.cores * BUFFER_PER_CORE - host.holds
        if want <= 0:
            return
        held = host.holds
        host.holds += want  # what dispatch reads as held while it sends (its queue per core)
        got = world.claim(host, want, held)
        host.holds -= want
        if not got:
            # Idle cores back up the tails' slowest units; the reply then asks the host back
            # at the pace of one that got work (rpc.scheduler_rpc), to take the backups.
            if not world.idle.any_unsent() and world.idle.back_up_for(host):
                world.backoff[index] = self.backoff[0]
                world.at_time(world.now + self.prompt, FETCH, index)
                return
            world.at_time(world.now + world.backoff[index], FETCH, index)
            world.backoff[index] = min(self.backoff[1], world.backoff[index] * 2)
            return
        world.backoff[index] = self.backoff[0]
        host.holds += len(got)
        world.waiting[index].extend(rep.id for rep in got)
        self.start_tasks(index)

    def start_tasks(self, index: int) -> None:
        world, host = self.world, self.world.hosts[index]
        running, waiting = world.running[index], world.waiting[index]
        if len(waiting) > 1 and len(running) < host.cores:
            waiting[:] = start_order(world, waiting)
        while waiting and len(running) < host.cores:
            rep = world.reps[waiting.pop(0)]
            if rep.state is not IN_PROGRESS or rep.host != index:
                host.holds -= 1  # called off before it started: dropped at no cost
                continue
            seconds = rep.unit.batch.fpops / host.flops
            if host.kind == "random":
                seconds /= RANDOM_SPEEDUP
            seconds += self.overhead
            running[rep.id] = (seconds, world.now)
            world.at_time(world.now + seconds, DONE, index, rep.id)

    def done(self, index: int, rep_id: int) -> None:
        world = self.world
        running = world.running[index]
        task = running.get(rep_id)
        if task is None or task[1] < 0 or abs(task[1] + task[0] - world.now) > 1e-6:
            return  # paused since: its end moved
        del running[rep_id]
        host = world.hosts[index]
        host.holds -= 1
        rep = world.reps[rep_id]
        world.result_of(
            host, rep, rep.unit.batch.fpops / host.flops / (RANDOM_SPEEDUP if host.kind == "random" else 1.0)
        )
        self.start_tasks(index)
        if host.holds <= host.cores * LOW_WATER_PER_CORE:  # its buffer ran low: fill it again
            self.fetch(index, 0)


def start_order(world: World, waiting: list[int]) -> list[int]:
    """The host's waiting replicas in the order the client starts them: its own
    ``scheduling.run_order``, which inside one project is earliest deadline first, so a tail's
    backup, sent with a shorter deadline, does not wait behind the host's whole buffer."""
    reps = world.reps
    candidates = [Candidate("project", rep_id, reps[rep_id].deadline, 0.0) for rep_id in waiting]
    return [candidate.replica for candidate in run_order(candidates, {"project": 1.0}, {})]
