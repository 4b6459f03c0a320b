"""The Monte Carlo app: lazy splitting, clear refusals, deterministic and resumable compute."""

from __future__ import annotations

import itertools
import json

import pytest

import workunits
from workunits.interface import Checkpoint
from workunits.montecarlo_pi import CHUNK, assimilate, compare, compute, split
from workunits.tests.interrupting import resumed


def test_the_app_meets_the_interface():
    app = workunits.load("montecarlo_pi")

    assert app.MANIFEST.name == "montecarlo_pi" and app.MANIFEST.compare == "bitwise"
    assert "montecarlo_pi" in workunits.available()


def test_splitting_is_lazy_even_for_a_huge_batch():
    inputs = split({"seed": 7, "units": 10_000_000, "samples_per_unit": 10})

    first = [json.loads(data) for data in itertools.islice(inputs, 3)]

    assert first == [{"samples": 10, "seed": 7, "unit": i} for i in range(3)]


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"units": 3, "samples_per_unit": 10}, "seed"),
        ({"seed": 1, "units": 0, "samples_per_unit": 10}, "units"),
        ({"seed": 1, "units": "3", "samples_per_unit": 10}, "units"),
        ({"seed": 1, "units": 3, "samples_per_unit": True}, "samples_per_unit"),
        ({"seed": 1, "units": 3, "samples_per_unit": 10, "colour": "red"}, "colour"),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_bad_parameters_are_refused_by_name(parameters, named):
    with pytest.raises(ValueError, match=named):
        next(split(parameters))


def test_a_resumed_unit_gives_the_same_bytes_as_an_uninterrupted_one():
    data = next(split({"seed": 3, "units": 1, "samples_per_unit": 3 * CHUNK + 17}))
    whole = compute(data, Checkpoint())

    again, interrupted = resumed(compute, data, saves=2)

    assert again == whole
    assert compare(again, whole) and not compare(again, whole.replace(b"1", b"2"))
    assert interrupted.saved[-1][1] == pytest.approx(0.5)


def test_the_batch_result_estimates_pi_within_its_error():
    inputs = split({"seed": 11, "units": 4, "samples_per_unit": 50_000})
    outputs = [(index, compute(data, Checkpoint())) for index, data in enumerate(inputs)]

    result = json.loads(assimilate(outputs))

    assert result["samples"] == 200_000
    assert abs(result["pi"] - 3.141592653589793) < 5 * result["standard_error"]
    assert 0 < result["standard_error"] < 0.01
