"""The spectra app: numpy eigenvalues of random symmetric matrices, checked against pure Python."""

from __future__ import annotations

import json
import math

import pytest

from workunits import spectra
from workunits.interface import Checkpoint
from workunits.spectra import assimilate, compare, semicircle_mass, split
from workunits.tests.interrupting import resumed
from workunits.tests.pinned_numpy import unpacked_numpy

SMALL = {"seed": 7, "units": 3, "matrices_per_unit": 4, "size": 12, "bins": 10}


@pytest.fixture(scope="module")
def np(tmp_path_factory):
    return unpacked_numpy(tmp_path_factory.mktemp("numpy"))


def jacobi_eigenvalues(matrix: list[list[float]]) -> list[float]:
    """The eigenvalues of a symmetric matrix by cyclic Jacobi rotations: plain Python, no LAPACK."""
    a = [row[:] for row in matrix]
    n = len(a)
    for _ in range(100):
        off = sum(a[i][j] ** 2 for i in range(n) for j in range(n) if i != j)
        if off < 1e-26:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                if abs(a[p][q]) < 1e-300:
                    continue
                theta = (a[q][q] - a[p][p]) / (2 * a[p][q])
                t = math.copysign(1.0, theta) / (abs(theta) + math.sqrt(theta * theta + 1))
                c = 1 / math.sqrt(t * t + 1)
                s = t * c
                for k in range(n):  # columns p and q
                    akp, akq = a[k][p], a[k][q]
                    a[k][p], a[k][q] = c * akp - s * akq, s * akp + c * akq
                for k in range(n):  # rows p and q
                    apk, aqk = a[p][k], a[q][k]
                    a[p][k], a[q][k] = c * apk - s * aqk, s * apk + c * aqk
    return sorted(a[i][i] for i in range(n))


def independent_unit(np, job: dict) -> dict:
    """The unit's histogram and moments from the same matrices, eigenvalues by Jacobi."""
    values = []
    for k in range(job["matrices"]):
        values += jacobi_eigenvalues(spectra.matrix(np, job["seed"], job["unit"], k, job["size"]).tolist())
    width = 2 * spectra.RANGE / job["bins"]
    counts = [0] * job["bins"]
    for value in values:
        if -spectra.RANGE <= value <= spectra.RANGE:
            counts[min(job["bins"] - 1, int((value + spectra.RANGE) / width))] += 1
    return {
        "counts": counts,
        "moment2": sum(v**2 for v in values) / len(values),
        "moment4": sum(v**4 for v in values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def test_the_splitter_is_lazy_and_makes_one_unit_each():
    units = split({**SMALL, "units": 1_000_000})

    first = json.loads(next(units))

    assert first == {"seed": 7, "unit": 0, "matrices": 4, "size": 12, "bins": 10}
    assert [json.loads(u)["unit"] for u in split(SMALL)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"seed": -1}, "seed"),
        ({"units": 0}, "units"),
        ({"size": 1}, "size"),
        ({"size": 12.0}, "size"),
        ({"bins": 0}, "bins"),
        ({"matrices_per_unit": True}, "matrices_per_unit"),
        ({"size": 2000, "matrices_per_unit": 1000}, "use more units"),
        ({"ensemble": "gue"}, "ensemble"),
    ],
)
def test_bad_parameters_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        next(split({**SMALL, **change}))


def test_a_unit_matches_eigenvalues_computed_without_numpy(np):
    data = next(split(SMALL))

    output = json.loads(spectra.compute(data, Checkpoint()))

    expected = independent_unit(np, json.loads(data))
    assert output["counts"] == expected["counts"]
    assert sum(output["counts"]) + output["outside"] == 4 * 12
    for key in ("moment2", "moment4", "min", "max"):
        assert output[key] == pytest.approx(expected[key], rel=1e-10, abs=1e-12), key


def test_a_resumed_unit_gives_the_same_bytes(np, monkeypatch):
    monkeypatch.setattr(spectra, "BLOCK_WORK", 1.0)  # a checkpoint after every matrix
    data = next(split(SMALL))
    whole = spectra.compute(data, Checkpoint())

    again, interrupted = resumed(spectra.compute, data, saves=2)

    assert again == whole and interrupted.state["matrix"] == 2


def test_large_matrices_follow_the_semicircle(np):
    parameters = {"seed": 3, "units": 2, "matrices_per_unit": 10, "size": 150, "bins": 25}
    outputs = [(i, spectra.compute(data, Checkpoint())) for i, data in enumerate(split(parameters))]

    result = json.loads(assimilate(outputs))

    assert result["eigenvalues"] == 2 * 10 * 150
    assert result["moment2"] == pytest.approx(151 / 150, rel=0.02)  # E[λ²] = (n + 1) / n exactly
    assert result["moment4"] == pytest.approx(2.0, rel=0.05)
    assert result["total_variation"] < 0.05
    assert -2.3 < result["min"] < -1.8 and 1.8 < result["max"] < 2.3


def test_outputs_agree_within_the_tolerance_but_counts_exactly():
    output = {"counts": [3, 5], "outside": 0, "moment2": 1.0123, "min": -1.9, "max": 2.0, "size": 4}
    nudged = {**output, "moment2": 1.0123 * (1 + 1e-12)}
    moved = {**output, "moment2": 1.02}
    recounted = {**output, "counts": [4, 4]}

    def agree(a, b):
        return compare(json.dumps(a).encode(), json.dumps(b).encode())

    assert agree(output, nudged)
    assert not agree(output, moved) and not agree(output, recounted)
    assert not agree(output, {k: v for k, v in output.items() if k != "min"})


def test_the_semicircle_is_a_probability_on_its_support():
    assert semicircle_mass(-2.5, 2.5) == pytest.approx(1.0, abs=1e-15)
    assert semicircle_mass(-2, 0) == pytest.approx(0.5, abs=1e-15)
    # Against a midpoint sum of the density sqrt(4 - x²) / 2π.
    steps = 200_000
    numeric = (
        sum(math.sqrt(4 - (0.5 + (i + 0.5) * 1.0 / steps) ** 2) for i in range(steps)) / steps / (2 * math.pi)
    )
    assert semicircle_mass(0.5, 1.5) == pytest.approx(numeric, rel=1e-9)


def test_the_batch_result_is_the_density_against_the_semicircle():
    # Two hand-made units of 100 eigenvalues in all, spread as the semicircle's bins say.
    bins = 10
    width = 2 * spectra.RANGE / bins
    masses = [semicircle_mass(-2.5 + i * width, -2.5 + (i + 1) * width) for i in range(bins)]
    counts = [round(100 * m) for m in masses]
    assert sum(counts) == 100
    halves = [[c // 2 for c in counts], [c - c // 2 for c in counts]]
    common = {"size": 10, "matrices": 5, "outside": 0, "moment4": 2.0}
    outputs = [
        (i, json.dumps({**common, "unit": i, "counts": half, "moment2": m2, "min": lo, "max": hi}).encode())
        for i, (half, m2, lo, hi) in enumerate(zip(halves, (1.0, 1.2), (-1.9, -2.1), (2.2, 1.7)))
    ]

    result = json.loads(assimilate(outputs))

    assert result["eigenvalues"] == 100 and result["size"] == 10 and result["moment2_expected"] == 1.1
    assert result["moment2"] == pytest.approx(1.1) and (result["min"], result["max"]) == (-2.1, 2.2)
    table = result["bins"]
    assert [row["count"] for row in table] == counts
    assert table[0]["low"] == -2.5 and table[-1]["high"] == 2.5
    for row, mass, count in zip(table, masses, counts):
        assert row["density"] == pytest.approx(count / 100 / width)
        assert row["semicircle"] == pytest.approx(mass / width)
    assert result["total_variation"] == pytest.approx(
        sum(abs(c / 100 - m) for c, m in zip(counts, masses)) / 2
    )
    with pytest.raises(ValueError, match="no outputs"):
        assimilate([])
