"""How two outputs of one work unit are compared: pure, no ORM.

Each app declares its rule: ``bitwise`` (the SHA-256 of the outputs are equal) or
``tolerance`` (both outputs are JSON; numbers may differ within an absolute plus relative
tolerance, everything else must match exactly: types, keys, lengths, strings).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from coordinator.work.comparison import CompareMode  # also named from here by work migration 0002


@dataclass(frozen=True)
class CompareRule:
    mode: CompareMode = CompareMode.BITWISE
    abs_tolerance: float = 0.0
    rel_tolerance: float = 0.0


class UnreadableOutput(ValueError):
    """An output the rule cannot read (not JSON, or a non-finite number)."""


def _refuse_constant(name: str) -> Any:
    raise UnreadableOutput(f"{name} is not a number an output may hold")


def parse_output(data: bytes) -> Any:
    """An output for the tolerance rule: strict JSON, finite numbers only."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnreadableOutput:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise UnreadableOutput("the output is not valid JSON") from error


def _numbers_agree(a: float, b: float, rule: CompareRule) -> bool:
    return abs(a - b) <= rule.abs_tolerance + rule.rel_tolerance * max(abs(a), abs(b))


def values_agree(a: Any, b: Any, rule: CompareRule) -> bool:
    """Structure exactly, numbers within tolerance. ``True`` and ``1`` do not agree."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isfinite(a) and math.isfinite(b) and _numbers_agree(float(a), float(b), rule)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_agree(a[k], b[k], rule) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_agree(x, y, rule) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
