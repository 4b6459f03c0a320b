"""Backups for idle hosts (docs/batches.md, "Backups for idle hosts"): when nothing waits to
be sent and a reliable host still has free cores, the batches' tails get a backup of the
units that would otherwise come back last, as MapReduce backs up its last tasks when it has
idle workers. Pure functions on times in seconds (since the epoch, or the simulator's
start): ``scheduler.idle_hosts`` reads the replicas out and writes what these choose;
``bench.simulate`` calls them on its own world."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from coordinator.work.lifecycle import ValidateState


class Out(NamedTuple):
    """A replica out on some host, as the coordinator knows it."""

    replica_id: int
    sent_at: float
    overdue_at: float  # sent_at + overdue_factor x its host's usual time (acceleration.timing)
    host_seconds: float = 0.0  # its host's usual turnaround on the version, when measured


class UnitOut(NamedTuple):
    """An active unit of a batch in its tail: its replicas out, and how many more valid
    results it needs (``results_needed``)."""

    unit_id: int
    needed: int
    usual: float  # the app's usual turnaround, seconds (App.turnaround)
    out: tuple[Out, ...]


def results_needed(min_quorum: int, judged: Iterable[str]) -> int:
    """How many more valid results a unit needs, from the validation states of its successes:
    those judged valid or not judged yet count toward its quorum, invalid ones do not, and
    inconclusive ones (they disagreed) count as one at most, since the next result may agree
    with one of them. A unit in dispute needs one more, not none (found with the simulator:
    its last unit was a dispute whose third replica sat on a host that had gone)."""
    states = list(judged)
    agreeing = sum(1 for state in states if state in (ValidateState.INIT, ValidateState.VALID))
    agreeing += 1 if ValidateState.INCONCLUSIVE in states else 0
    return max(0, min_quorum - agreeing)


def expected_back(out: Out, *, now: float, usual: float, overdue_factor: float) -> float:
    """When a replica out should be back: after its host's usual time (measured, or else what
    its overdue time holds: ``overdue_factor`` times the host's expected time after sending).
    One already later than that is taken to need as long again as it has been out, and at
    least the app's usual time: its host may be off, and off times are heavy-tailed (the
    longer one has lasted, the longer it is likely to last), so the longest late go first."""
    if out.host_seconds > 0:
        expected = out.sent_at + out.host_seconds
    else:
        expected = out.sent_at + (out.overdue_at - out.sent_at) / max(1.0, overdue_factor)
    return expected if expected >= now else now + max(usual, now - out.sent_at)


def backups_for_idle_host(
    units: Iterable[UnitOut], *, now: float, own_seconds: float, overdue_factor: float, count: int
) -> list[int]:
    """The replicas to make overdue now (each then gets one backup, the lifecycle's rule), for
    at most ``count`` units: those whose results would come back latest, where a host that
    takes ``own_seconds`` would beat them. A unit's results come back when the ``needed``-th
    of its replicas out does (one already overdue counts as late: its backup may be lost
    too); of those, the ones not overdue yet that the idle host would beat are backed up."""
    beaten_by = now + max(0.0, own_seconds)
    ranked: list[tuple[float, int, list[int]]] = []
    for unit in units:
        if unit.needed < 1 or len(unit.out) < unit.needed:
            continue  # it needs nothing, or has replicas waiting to be sent already
        back = [
            (expected_back(o, now=now, usual=unit.usual, overdue_factor=overdue_factor), o) for o in unit.out
        ]
        finish = sorted(when for when, _ in back)[unit.needed - 1]
        beaten = sorted(o.replica_id for when, o in back if when > beaten_by and o.overdue_at > now)
        if finish > beaten_by and beaten:
            ranked.append((finish, unit.unit_id, beaten))
    ranked.sort(key=lambda item: (item[0], -item[1]), reverse=True)
    return [replica for _, _, replicas in ranked[: max(0, count)] for replica in replicas]
