"""The scheduler request's one-pass check against the serializer's fields: whatever it takes,
the fields take too and turn into the same values; the rest goes to the fields."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from tessera_client.signing import b64encode

from coordinator.scheduler.api import (
    INLINE_OUTPUT,
    MAX_IN_PROGRESS,
    ReportSerializer,
    SchedulerRequestSerializer,
)
from coordinator.scheduler.well_formed import RULES, plain_report, plain_request

BOUNDED = settings(max_examples=600, deadline=None)
NAMES = [*RULES, "output_inline", "unknown"]
SHA = hashlib.sha256(b"x").hexdigest()

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e8, 1e8 + 1, -0.0, 0.5]),
    st.text(max_size=30),
    st.sampled_from(["success", "client_error", " success", "12", "1.5", SHA, SHA + "\n", SHA.upper(), " "]),
    st.sampled_from(["x" * 1000, "x" * 1001, "a\x00b", "\ud800", b64encode(b"out"), "not base64!", ""]),
    st.lists(st.integers(), max_size=2),
)
USUAL = {"replica": 7, "status": "success", "cpu_time": 1.5, "output_sha256": SHA, "output_size": 1}
# Any keys at all, or a usual report with a few of its fields changed or dropped.
reports = st.one_of(
    st.dictionaries(st.sampled_from(NAMES), values, max_size=len(NAMES)),
    st.builds(
        lambda changed, dropped: {k: v for k, v in {**USUAL, **changed}.items() if k not in dropped},
        st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
        st.sets(st.sampled_from(NAMES), max_size=2),
    ),
)


def fields_of(data: Any) -> dict[str, Any]:
    """What the serializer's own fields make of ``data`` (raises what they refuse)."""
    return dict(serializers.Serializer.to_internal_value(ReportSerializer(), data))


def inline(data: Any) -> bytes:
    return ReportSerializer().fields["output_inline"].to_internal_value(data)


@BOUNDED
@given(reports)
@example({"replica": 1, "status": "success", "cpu_time": 1.0, "message": " padded "})
@example({"replica": True, "status": "success", "cpu_time": 1.0})
@example({"replica": 1, "status": "success", "cpu_time": float("nan")})
def test_what_the_one_pass_takes_the_fields_take_alike(data: dict[str, Any]) -> None:
    plain = plain_report(data, inline)
    event("one pass" if plain is not None else "fields")
    if plain is not None:
        assert fields_of(data) == plain


def report(**changes: Any) -> dict[str, Any]:
    base = {
        "replica": 7,
        "status": "success",
        "cpu_time": 1.5,
        "exit_code": 0,
        "output_sha256": SHA,
        "output_size": 1,
        "output_inline": b64encode(b"x"),
        "message": "",
        "fuel": None,
        "elapsed": 2,
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    "data",
    [
        report(),
        {"replica": 1, "status": "client_error", "cpu_time": 0, "exit_code": -11, "message": "killed"},
        report(fuel=10**12, elapsed=None),
    ],
)
def test_a_clients_usual_reports_take_the_one_pass(data: dict[str, Any]) -> None:
    plain = plain_report(data, inline)
    assert plain is not None
    assert plain == fields_of(data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (report(replica=0), "replica"),
        (report(replica=True), "replica"),
        (report(cpu_time=float("inf")), "cpu_time"),
        (report(status="won"), "status"),
        (report(output_sha256=SHA.upper()), "output_sha256"),
        (report(output_inline="not base64!"), "output_inline"),
        (report(output_inline=b64encode(b"x" * 70_000)), "output_inline"),
        (report(message="x" * 1001), "message"),
        (report(exit_code=2**31), "exit_code"),
    ],
)
def test_what_the_one_pass_leaves_the_fields_refuse_by_name(data: dict[str, Any], field: str) -> None:
    assert plain_report(data, inline) is None
    checked = SchedulerRequestSerializer(data={"reports": [data]})
    assert not checked.is_valid()
    assert field in checked.errors["reports"][0]


def test_what_the_one_pass_leaves_the_fields_may_still_take() -> None:
    """A number as a string, or a message to trim: the serializer's own leniency, kept."""
    data = report(replica="7", message="  done  ")
    assert plain_report(data, inline) is None
    checked = SchedulerRequestSerializer(data={"reports": [data]})
    assert checked.is_valid(), checked.errors
    assert checked.validated_data["reports"][0]["replica"] == 7
    assert checked.validated_data["reports"][0]["message"] == "done"


MAX_REPORTS = 3  # small, so that generated lists cross it
works = st.one_of(
    values,
    st.dictionaries(st.sampled_from(["tasks", "seconds", "other"]), values, max_size=3),
    st.fixed_dictionaries({"tasks": st.integers(-1, 10_001), "seconds": st.floats(-1, 3e6)}),
)
progress = st.one_of(values, st.lists(st.one_of(st.integers(-1, 2**63), values), max_size=4))
any_requests = st.dictionaries(
    st.sampled_from(["reports", "work_request", "in_progress", "host_info", "other"]),
    st.one_of(st.lists(reports, max_size=MAX_REPORTS + 1), works, progress),
    max_size=4,
)


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` nine times in ten."""
    return st.integers(0, 9).flatmap(lambda n: other if n == 0 else usual)


# Mostly what a client sends, with here and there something the one pass must leave.
usual_requests = st.fixed_dictionaries(
    {},
    optional={
        "reports": st.lists(mostly(st.just(USUAL), reports), max_size=MAX_REPORTS + 1),
        "work_request": mostly(
            st.fixed_dictionaries({"tasks": st.integers(0, 10_000)}, optional={"seconds": st.floats(0, 1e5)}),
            works,
        ),
        "in_progress": mostly(st.lists(st.integers(1, 2**63 - 1), max_size=3), progress),
    },
)
requests = st.one_of(any_requests, usual_requests)


def serializer_of(data: Any) -> dict[str, Any] | None:
    """What the request's serializer validates ``data`` to, or None if it refuses it."""
    checked = SchedulerRequestSerializer(data=data)
    checked.fields["reports"].max_length = MAX_REPORTS
    if not checked.is_valid():
        return None
    return {k: ([dict(r) for r in v] if k == "reports" else v) for k, v in checked.validated_data.items()}


def one_pass(data: Any) -> dict[str, Any] | None:
    return plain_request(
        data, INLINE_OUTPUT.to_internal_value, max_reports=MAX_REPORTS, max_in_progress=MAX_IN_PROGRESS
    )


@BOUNDED
@given(requests)
@example({"reports": [USUAL], "work_request": {"tasks": 8, "seconds": 0}, "in_progress": [3, 4]})
@example({"reports": [{**USUAL, "status": "client_error"}]})  # an error with an output
@example({"reports": [{k: v for k, v in USUAL.items() if k != "output_size"}]})  # a success without
@example({"reports": [USUAL] * (MAX_REPORTS + 1)})
@example({"in_progress": [True]})
@example({"in_progress": [0]})
@example({"in_progress": [2**63]})
@example({"work_request": {"tasks": 10_001}})
def test_what_the_one_pass_takes_the_request_serializer_takes_alike(data: dict[str, Any]) -> None:
    plain = one_pass(data)
    event("one pass" if plain is not None else "serializer")
    if plain is not None:
        assert serializer_of(data) == plain


def test_a_clients_usual_request_takes_the_one_pass() -> None:
    data = {"reports": [report(), report(replica=8)], "work_request": {"tasks": 8}, "in_progress": [9]}
    plain = one_pass(data)
    assert plain is not None
    assert plain["work_request"] == {"tasks": 8, "seconds": 0}
    assert plain == serializer_of(data)


def test_a_request_describing_its_host_goes_to_the_serializer() -> None:
    assert one_pass({"reports": [], "host_info": {"n_cpus": 4}}) is None
