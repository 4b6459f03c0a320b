"""The scheduler report's one-pass check against the serializer's fields: whatever it takes,
the fields take too and turn into the same values; the rest goes to the fields."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from tessera_client.signing import b64encode

from coordinator.scheduler.api import ReportSerializer, SchedulerRequestSerializer
from coordinator.scheduler.well_formed import RULES, plain_report

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
