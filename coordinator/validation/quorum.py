"""Finding a quorum among successful replicas: pure, no ORM.

After BOINC's validator: look for ``min_quorum`` mutually agreeing outputs; the earliest
of the largest such group is canonical; a replica is valid when it agrees with the
canonical one. Without a quorum every candidate is inconclusive and the lifecycle asks
for another replica.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Agree = Callable[[Any, Any], bool]


@dataclass(frozen=True)
class Candidate:
    """A successful replica's output, in the order the replicas were received."""

    id: int
    value: Any


@dataclass(frozen=True)
class Verdict:
    canonical: int | None
    valid: tuple[int, ...] = ()
    invalid: tuple[int, ...] = ()
    inconclusive: tuple[int, ...] = ()


def _agreeing_group(seed: Candidate, others: Sequence[Candidate], agree: Agree) -> list[Candidate]:
    group = [seed]
    for other in others:
        if other is not seed and all(agree(member.value, other.value) for member in group):
            group.append(other)
    return group


def find_quorum(
    candidates: Sequence[Candidate],
    min_quorum: int,
    agree: Agree,
    vouched: Callable[[Sequence[Candidate]], bool] | None = None,
) -> Verdict:
    """The canonical replica and the valid and invalid ones, or all inconclusive.

    When every candidate agrees, ``min_quorum`` of them is a quorum. When they disagree,
    only a group that ``vouched`` accepts (one with an established host unrelated to the
    others) may win, and only if no other vouched group is as large: colluders can never
    out-vote an honest host by numbers alone."""
    groups = [_agreeing_group(seed, candidates, agree) for seed in candidates]
    unanimous = any(len(group) == len(candidates) for group in groups)
    eligible = [
        group
        for group in groups
        if len(group) >= min_quorum and (unanimous or vouched is None or vouched(group))
    ]
    inconclusive = Verdict(canonical=None, inconclusive=tuple(c.id for c in candidates))
    if not eligible:
        return inconclusive
    best = max(eligible, key=len)  # the first of the largest
    if not unanimous and vouched is not None:
        rivals = [g for g in eligible if len(g) == len(best) and not agree(best[0].value, g[0].value)]
        if rivals:
            return inconclusive
    return judge_against(best[0], candidates, agree)


def judge_against(canonical: Candidate, candidates: Sequence[Candidate], agree: Agree) -> Verdict:
    """Each candidate is valid when it agrees with the canonical output, else invalid."""
    valid, invalid = [], []
    for candidate in candidates:
        if candidate.id == canonical.id or agree(canonical.value, candidate.value):
            valid.append(candidate.id)
        else:
            invalid.append(candidate.id)
    return Verdict(canonical=canonical.id, valid=tuple(valid), invalid=tuple(invalid))
