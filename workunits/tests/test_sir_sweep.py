"""The SIR sweep: one unit per rate pair, resumable, compared within a tolerance."""

from __future__ import annotations

import json

import pytest

from workunits.interface import Checkpoint
from workunits.sir_sweep import assimilate, compare, compute, split
from workunits.tests.interrupting import resumed

SWEEP = {
    "seed": 4,
    "population": 500,
    "initial_infected": 5,
    "days": 80,
    "runs": 6,
    "beta": [0.1, 0.5],
    "gamma": [0.2],
}


def test_each_rate_pair_is_a_unit():
    units = [json.loads(data) for data in split(SWEEP)]

    assert [(u["beta"], u["gamma"]) for u in units] == [(0.1, 0.2), (0.5, 0.2)]
    assert [u["unit"] for u in units] == [0, 1]


def test_listed_points_are_units_in_their_order():
    grid = {k: v for k, v in SWEEP.items() if k not in ("beta", "gamma")}
    points = [{"beta": 0.5, "gamma": 0.2}, {"beta": 0.1, "gamma": 0.3}]

    units = [json.loads(data) for data in split({**grid, "points": points})]

    assert [(u["beta"], u["gamma"], u["unit"]) for u in units] == [(0.5, 0.2, 0), (0.1, 0.3, 1)]


@pytest.mark.parametrize(
    ("points", "named"),
    [
        ([], "points must be"),
        ([{"beta": 0.1}], r"points\[0\] must be an object"),
        ([{"beta": 0.1, "gamma": 0.1}, {"beta": 0.1, "gamma": 11}], r"points\[1\]\.gamma is 11"),
        ("0.1,0.2", "points must be"),
    ],
)
def test_bad_points_are_refused_by_their_place(points, named):
    grid = {k: v for k, v in SWEEP.items() if k not in ("beta", "gamma")}
    with pytest.raises(ValueError, match=named):
        list(split({**grid, "points": points}))


def test_points_and_the_rate_lists_do_not_mix():
    with pytest.raises(ValueError, match="either points or"):
        next(split({**SWEEP, "points": [{"beta": 0.1, "gamma": 0.1}]}))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"beta": []}, "beta"),
        ({"gamma": [0.1, -1]}, "gamma"),
        ({"population": 5}, "population"),
        ({"initial_infected": 600}, "initial_infected"),
        ({"runs": 1.5}, "runs"),
        ({"seed": "x"}, "seed"),
        ({"delta": 1}, "delta"),
    ],
)
def test_bad_parameters_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        next(split({**SWEEP, **change}))


def test_a_resumed_unit_gives_the_same_output_and_the_epidemics_make_sense():
    low, high = split(SWEEP)
    whole = compute(high, Checkpoint())

    again, interrupted = resumed(compute, high, saves=3)

    assert again == whole and interrupted.state["run"] == 3
    low_result, high_result = json.loads(compute(low, Checkpoint())), json.loads(whole)
    assert low_result["final_size"] < 0.2 < high_result["final_size"]  # R0 0.5 fizzles, R0 2.5 spreads
    assert 0 < high_result["peak_day"] < 80


def test_outputs_agree_within_the_tolerance_only():
    output = json.loads(compute(next(split(SWEEP)), Checkpoint()))
    nudged = {**output, "final_size": output["final_size"] * (1 + 1e-12)}
    moved = {**output, "final_size": output["final_size"] + 0.01}

    assert compare(json.dumps(output).encode(), json.dumps(nudged).encode())
    assert not compare(json.dumps(output).encode(), json.dumps(moved).encode())
    assert not compare(json.dumps(output).encode(), json.dumps({"beta": 0.1}).encode())


def test_the_batch_result_is_a_table_of_the_sweep():
    outputs = [(i, compute(data, Checkpoint())) for i, data in enumerate(split(SWEEP))]

    table = assimilate(outputs).decode().splitlines()

    assert table[0] == "beta,gamma,final_size,peak_infected,peak_day"
    assert [line.split(",")[:2] for line in table[1:]] == [["0.1", "0.2"], ["0.5", "0.2"]]
