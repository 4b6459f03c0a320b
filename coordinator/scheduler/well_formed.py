"""A scheduler request checked in one pass of plain Python, when it is plainly well formed.

DRF's per-field validation of a request's reports (ten fields each, up to hundreds of
reports) was a fifth of the scheduler RPC's CPU (docs/benchmarks.md). ``plain_report`` takes
only the shapes the serializer surely accepts, exact JSON types within its bounds, and
returns exactly what the serializer's fields would; anything else (a string where a number
goes, whitespace around a text, a field out of range) returns None and goes through the
serializer's own fields, which give the precise error. A property test holds the two to
agreeing (``scheduler/tests/test_well_formed.py``).

``plain_request`` does the same for the whole request a client usually sends (reports, a
work request, the tasks in progress): building the request's serializer alone, which deep-copies
its fields and its nested serializers' fields, was 8 % of the web workers' CPU in a
``bench.throughput`` run. A request that also describes its host goes to the serializer.
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


WORK_RULES: dict[str, Rule] = {
    "tasks": Rule(_int_in(0, 10_000), default=0),
    "seconds": Rule(_number_in(0, 30 * 24 * 3600), float, default=0),
}
REQUEST_KEYS = frozenset({"reports", "work_request", "in_progress"})


def report_problem(report: dict[str, Any]) -> str | None:
    """What makes a report's fields, each well formed, wrong together (the serializer's
    ``validate`` says it, and so does the one pass by leaving the request to it)."""
    has_output = "output_sha256" in report and "output_size" in report
    if report["status"] == Outcome.SUCCESS and not has_output:
        return "a success needs output_sha256 and output_size"
    if report["status"] == Outcome.CLIENT_ERROR and ("output_sha256" in report or "output_inline" in report):
        return "an error carries no output"
    return None


def plain_request(
    data: Any, inline: Callable[[Any], bytes], *, max_reports: int, max_in_progress: int
) -> dict[str, Any] | None:
    """The request as its serializer would validate it, or None when any part needs the
    serializer (its own checks, or a part this pass does not take, such as ``host_info``)."""
    if type(data) is not dict or not data.keys() <= REQUEST_KEYS:
        return None
    reports = data.get("reports", [])
    progress = data.get("in_progress", [])
    if type(reports) is not list or len(reports) > max_reports:
        return None
    if type(progress) is not list or len(progress) > max_in_progress:
        return None
    plain_reports = [plain_report(report, inline) for report in reports]
    if any(report is None or report_problem(report) for report in plain_reports):
        return None
    if not all(type(replica) is int and 1 <= replica <= INT64_MAX for replica in progress):
        return None
    out: dict[str, Any] = {"reports": plain_reports, "in_progress": list(progress)}
    if "work_request" in data:
        work = _plain(data["work_request"], WORK_RULES)
        if work is None:
            return None
        out["work_request"] = work
    return out


def plain_report(data: Any, inline: Callable[[Any], bytes]) -> dict[str, Any] | None:
    """The report's fields as the serializer would return them, or None when any field needs
    the serializer. ``inline`` decodes ``output_inline`` (the serializer's own field: it
    raises on anything it refuses, and then the serializer reports it)."""
    out = _plain(data, RULES)
    if out is not None and "output_inline" in data:
        try:
            out["output_inline"] = inline(data["output_inline"])
        except ValidationError:  # the serializer says why
            return None
    return out


def _plain(data: Any, rules: dict[str, Rule]) -> dict[str, Any] | None:
    """``data``'s fields under ``rules``, defaults put in, or None if any is not plain."""
    if type(data) is not dict:
        return None
    out: dict[str, Any] = {}
    for name, rule in rules.items():
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
    return out
