"""Eigenvalue spectra of random symmetric matrices (the Gaussian orthogonal ensemble), with numpy.

Each work unit draws ``matrices`` real symmetric matrices of order ``size``: ``A`` has
independent standard normal entries and ``H = (A + Aᵀ) / sqrt(2 · size)``, so off-diagonal
entries have variance ``1/size`` and diagonal ones ``2/size``. numpy's ``eigvalsh`` (LAPACK)
gives each matrix's eigenvalues, which the unit counts into ``bins`` equal bins over
[-2.5, 2.5], with their second and fourth moments and extremes. As ``size`` grows the density
tends to Wigner's semicircle, ``sqrt(4 - x²) / 2π`` on [-2, 2]; the mean of ``λ²`` is exactly
``(size + 1) / size`` on average, and the mean of ``λ⁴`` tends to 2 (the Catalan number).

Matrix ``k`` of unit ``u`` comes from its own stream, ``numpy.random.default_rng([seed, u,
k])``, so a resumed unit draws the same matrices. LAPACK's sums may differ in their last bits
between CPUs, so outputs compare within a tolerance; the counts must agree exactly. The batch
result is the density histogram against the semicircle (JSON).

numpy runs on volunteers' computers only: it comes as a pinned wheel inside the signed bundle
(``MANIFEST.wheels``), and only ``compute`` imports it. ``split``, ``compare`` and
``assimilate`` are plain Python, for the coordinator.

Parameters (JSON): ``{"seed": 1, "units": 20, "matrices_per_unit": 50, "size": 200, "bins": 50}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from workunits.interface import Checkpoint, Manifest, Wheel

RANGE = 2.5  # the histogram covers [-RANGE, RANGE]; the semicircle's edge is at 2
LIMITS = {
    "units": (1, 1_000_000),
    "matrices_per_unit": (1, 100_000),
    "size": (2, 2000),
    "bins": (1, 1000),
}
# LAPACK reduces a matrix to tridiagonal form in about (4/3) size³ operations, most of the work.
MAX_UNIT_WORK = 2e12  # matrices * size³ in one unit: under an hour on one core
BLOCK_WORK = 2e9  # matrices * size³ between checkpoints: a second or so
NUMPY = Wheel(
    file="numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="ba10f8411898fc418a521833e014a77d3ca01c15b0c6cdcce6a0d2897e6dbbdf",
)

MANIFEST = Manifest(
    name="spectra",
    version=1,
    title="Eigenvalue spectra of random symmetric matrices (numpy)",
    compare="tolerance",
    abs_tolerance=1e-9,
    rel_tolerance=1e-9,
    memory_bytes=256 * 1024 * 1024,
    fpops_per_unit=1e9,  # the example's unit: 50 matrices of order 200, about 2 size³ each
    max_output_bytes=64 * 1024,
    result_name="spectra.json",
    example_parameters={"seed": 1, "units": 20, "matrices_per_unit": 50, "size": 200, "bins": 50},
    wheels={"x86_64-pc-linux-gnu": (NUMPY,)},
)


def _whole(parameters: dict[str, Any], key: str) -> int:
    low, high = LIMITS[key]
    value = parameters.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return value


def split(parameters: dict[str, Any]) -> Iterator[bytes]:
    """One input per unit: the seed, the unit's index, how many matrices of which order, the bins."""
    if not isinstance(parameters, dict):
        raise ValueError("the parameters must be a JSON object")
    unknown = set(parameters) - {"seed", *LIMITS}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    seed = parameters.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number from 0 to 2**63-1, not {seed!r}")
    units, matrices, size, bins = (_whole(parameters, key) for key in LIMITS)
    if matrices * size**3 > MAX_UNIT_WORK:
        raise ValueError(
            f"matrices_per_unit * size**3 is {matrices * size**3:.3g}; at most {MAX_UNIT_WORK:.0e} "
            "per unit (use more units)"
        )
    for index in range(units):
        job = {"seed": seed, "unit": index, "matrices": matrices, "size": size, "bins": bins}
        yield json.dumps(job, sort_keys=True).encode()


def matrix(np: Any, seed: int, unit: int, k: int, size: int) -> Any:
    """Matrix ``k`` of a unit: its own seeded stream, scaled so the spectrum tends to [-2, 2]."""
    a = np.random.default_rng([seed, unit, k]).standard_normal((size, size))
    return (a + a.T) / math.sqrt(2 * size)


def compute(data: bytes, checkpoint: Checkpoint) -> bytes:
    import numpy as np  # from the bundle's wheel, on the volunteer's computer

    job = json.loads(data)
    seed, unit, matrices, size, bins = (int(job[k]) for k in ("seed", "unit", "matrices", "size", "bins"))
    state = checkpoint.state or {
        "matrix": 0,
        "counts": [0] * bins,
        "outside": 0,
        "sum2": 0.0,
        "sum4": 0.0,
        "min": None,
        "max": None,
    }
    k, counts, outside = (
        int(state["matrix"]),
        np.array(state["counts"], dtype=np.int64),
        int(state["outside"]),
    )
    sum2, sum4, low, high = float(state["sum2"]), float(state["sum4"]), state["min"], state["max"]
    block = max(1, int(BLOCK_WORK / size**3))
    while k < matrices:
        for _ in range(min(block, matrices - k)):
            values = np.linalg.eigvalsh(matrix(np, seed, unit, k, size))
            found, _edges = np.histogram(values, bins=bins, range=(-RANGE, RANGE))
            counts += found
            outside += int(values.size - found.sum())
            squares = values * values
            sum2 += float(squares.sum())
            sum4 += float((squares * squares).sum())
            low = float(values[0]) if low is None else min(low, float(values[0]))
            high = float(values[-1]) if high is None else max(high, float(values[-1]))
            k += 1
        state = {
            "matrix": k,
            "counts": [int(c) for c in counts],
            "outside": outside,
            "sum2": sum2,
            "sum4": sum4,
            "min": low,
            "max": high,
        }
        checkpoint.save(state, k / matrices)
    eigenvalues = matrices * size
    output = {
        "unit": unit,
        "size": size,
        "matrices": matrices,
        "counts": [int(c) for c in counts],
        "outside": outside,
        "moment2": sum2 / eigenvalues,
        "moment4": sum4 / eigenvalues,
        "min": low,
        "max": high,
    }
    return json.dumps(output, sort_keys=True).encode()


def _agree(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # counts: exactly
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=MANIFEST.rel_tolerance, abs_tol=MANIFEST.abs_tolerance)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_agree(x, y) for x, y in zip(a, b))
    return False


def compare(a: bytes, b: bytes) -> bool:
    """Same keys and counts; moments and extremes equal within the manifest's tolerances."""
    first, second = json.loads(a), json.loads(b)
    return set(first) == set(second) and all(_agree(first[k], second[k]) for k in first)


def semicircle_mass(low: float, high: float) -> float:
    """The semicircle law's probability of [low, high]."""

    def cdf(x: float) -> float:
        x = max(-2.0, min(2.0, x))
        return 0.5 + (x * math.sqrt(4 - x * x) / 4 + math.asin(x / 2)) / math.pi

    return cdf(high) - cdf(low)


def assimilate(outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """The density of every unit's eigenvalues, bin by bin, beside the semicircle's; the
    moments; and the total variation distance between the two."""
    counts: list[int] = []
    outside = eigenvalues = 0
    sum2 = sum4 = 0.0
    low, high = math.inf, -math.inf
    size = None
    for _, output in outputs:
        unit = json.loads(output)
        if size is None:
            size, counts = unit["size"], [0] * len(unit["counts"])
        n = unit["matrices"] * unit["size"]
        counts = [c + int(u) for c, u in zip(counts, unit["counts"])]
        outside += int(unit["outside"])
        sum2, sum4 = sum2 + unit["moment2"] * n, sum4 + unit["moment4"] * n
        low, high = min(low, unit["min"]), max(high, unit["max"])
        eigenvalues += n
    if not eigenvalues:
        raise ValueError("no outputs to assimilate")
    width = 2 * RANGE / len(counts)
    table = []
    distance = outside / eigenvalues
    for index, count in enumerate(counts):
        left, right = -RANGE + index * width, -RANGE + (index + 1) * width
        expected = semicircle_mass(left, right)
        distance += abs(count / eigenvalues - expected)
        table.append(
            {
                "low": round(left, 12),
                "high": round(right, 12),
                "count": count,
                "density": count / eigenvalues / width,
                "semicircle": expected / width,
            }
        )
    result = {
        "size": size,
        "eigenvalues": eigenvalues,
        "outside": outside,
        "moment2": sum2 / eigenvalues,
        "moment2_expected": (size + 1) / size,
        "moment4": sum4 / eigenvalues,
        "moment4_semicircle": 2.0,
        "min": low,
        "max": high,
        "total_variation": distance / 2,
        "bins": table,
    }
    return json.dumps(result, sort_keys=True, indent=1).encode()
