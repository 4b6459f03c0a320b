"""Fair share between scientists, as pure functions: which share's work goes first, and how
far each share's use is from its target (docs/batches.md). Dispatch and ``bench.simulate``
both call these.

A share is served while its use over the recent window, per unit of weight, is the least
among the shares with work waiting: so while several have work waiting each gets its weight's
part of what is sent, and a share that had nothing waiting starts level with the others
within a window (no share banks its idle time). Work outside batches (the project's own,
``share_id`` None) goes before any share's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Standing:
    """A share with work waiting: its weight, and the work sent for it in the window."""

    share_id: int | None
    weight: float
    used: float  # floating-point operations sent in the window


def _key(standing: Standing) -> tuple[bool, bool, float, int]:
    if standing.share_id is None:
        return (False, False, 0.0, 0)
    starved = standing.weight <= 0  # weight 0: only when no weighted share has work
    per_weight = standing.used if starved else standing.used / standing.weight
    return (True, starved, per_weight, standing.share_id)


def rank(standings: Iterable[Standing]) -> list[int | None]:
    """The shares in the order dispatch serves them: the project's own work, then the least
    used for its weight (ties by id, so the order never depends on how rows were read)."""
    return [standing.share_id for standing in sorted(standings, key=_key)]


def targets(weights: Mapping[int, float]) -> dict[int, float]:
    """Each share's target part of the computing among ``weights`` (those with work waiting)."""
    total = sum(max(0.0, weight) for weight in weights.values())
    if total <= 0:
        return {share_id: 1 / len(weights) for share_id in weights} if weights else {}
    return {share_id: max(0.0, weight) / total for share_id, weight in weights.items()}


def share_error(used: Mapping[int, float], weights: Mapping[int, float]) -> float:
    """The largest gap, in points of the whole (0 to 1), between a share's part of ``used``
    and its target among ``weights``: 0.05 is five points."""
    total = sum(used.get(share_id, 0.0) for share_id in weights)
    if total <= 0 or not weights:
        return 0.0
    goal = targets(weights)
    return max(abs(used.get(share_id, 0.0) / total - goal[share_id]) for share_id in weights)


def small_batch_bound(*, replicas: int, weight: float, active_weights: float) -> float:
    """At most how many replicas the project sends, all shares together, before the last
    replica of a new batch of ``replicas`` is sent, when its share has ``weight`` of
    ``active_weights`` (all shares with work waiting, its own included) and nothing was sent
    for it in the window: its use then starts at or below every other share's, so it gets at
    least its weight's part of what is sent until its batch is out (docs/batches.md)."""
    if weight <= 0 or active_weights <= 0:
        return math.inf
    return math.ceil(replicas * active_weights / weight)
