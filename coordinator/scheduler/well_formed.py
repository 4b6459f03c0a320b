"""A scheduler report checked in one pass of plain Python, when it is plainly well formed.

DRF's per-field validation of a request's reports (ten fields each, up to hundreds of
reports) was a fifth of the scheduler RPC's CPU (docs/benchmarks.md). ``plain_report`` takes
only the shapes the serializer surely accepts, exact JSON types within its bounds, and
returns exactly what the serializer's fields would; anything else (a string where a number
goes, whitespace around a text, a field out of range) returns None and goes through the
serializer's own fields, which give the precise error. A property test holds the two to
agreeing (``scheduler/tests/test_well_formed.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework.exceptions import ValidationError

from coordinator.core.fields import SHA256_HEX
from coordinator.work.lifecycle import Outcome

INT64_MAX = 2**63 - 1
INT32 = 2**31
TEXT_MAX = 1000  # the longest message
SECONDS_MAX = 1e8
SURROGATES = re.compile("[\ud800-\udfff]")
SHA256 = re.compile(SHA256_HEX)
STATUSES = frozenset({Outcome.SUCCESS.value, Outcome.CLIENT_ERROR.value})
NO_DEFAULT = object()


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and low <= value <= high


def _number_in(low: float, high: float) -> Callable[[Any], bool]:
    # NaN fails both comparisons, and infinities the bound: the serializer says why.
    return lambda value: type(value) in (int, float) and low <= value <= high


def _sha256(value: Any) -> bool:
    return type(value) is str and SHA256.match(value) is not None and len(value) == 64


def _message(value: Any) -> bool:
    """Text the serializer keeps as it is: not trimmed, no NUL, no lone surrogate."""
    return (
        type(value) is str
        and len(value) <= TEXT_MAX
        and value == value.strip()
        and "\x00" not in value
        and SURROGATES.search(value) is None
    )


@dataclass(frozen=True)
class Rule:
    plain: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value
    required: bool = False
    default: Any = NO_DEFAULT  # put in when the field is absent (and not required)
    nullable: bool = False


RULES: dict[str, Rule] = {
    "replica": Rule(_int_in(1, INT64_MAX), required=True),
    "status": Rule(lambda value: type(value) is str and value in STATUSES, required=True),
    "cpu_time": Rule(_number_in(0, SECONDS_MAX), float, required=True),
    "exit_code": Rule(_int_in(-INT32, INT32 - 1), default=0),
    "output_sha256": Rule(_sha256),
    "output_size": Rule(_int_in(0, 2**53)),
    "message": Rule(_message, default=""),
    "fuel": Rule(_int_in(0, INT64_MAX), nullable=True),
    "elapsed": Rule(_number_in(0, SECONDS_MAX), float, nullable=True),
}


def plain_report(data: Any, inline: Callable[[Any], bytes]) -> dict[str, Any] | None:
    """The report's fields as the serializer would return them, or None when any field needs
    the serializer. ``inline`` decodes ``output_inline`` (the serializer's own field: it
    raises on anything it refuses, and then the serializer reports it)."""
    if type(data) is not dict:
        return None
    out: dict[str, Any] = {}
    for name, rule in RULES.items():
        if name not in data:
            if rule.required:
                return None
            if rule.default is not NO_DEFAULT:
                out[name] = rule.default
            continue
        value = data[name]
        if value is None and rule.nullable:
            out[name] = None
        elif rule.plain(value):
            out[name] = rule.convert(value)
        else:
            return None
    if "output_inline" in data:
        try:
            out["output_inline"] = inline(data["output_inline"])
        except ValidationError:  # the serializer says why
            return None
    return out
