"""Stochastic SIR epidemics: a sweep over infection and recovery rates.

Each work unit is one (beta, gamma) point of the sweep. It runs ``runs`` seeded
chain-binomial epidemics in a closed population, day by day: each susceptible person is
infected with probability ``1 - exp(-beta * I / N)``, each infected one recovers with
probability ``1 - exp(-gamma)``. The output is the mean final size, mean peak and mean peak
day. ``exp`` may differ in its last bit between platforms, so outputs compare within a
tolerance. The batch result is a table of the sweep.

Parameters (JSON): ``{"seed": 1, "population": 1000, "initial_infected": 5, "days": 120,
"runs": 20, "beta": [0.2, 0.3], "gamma": [0.1]}`` sweeps every (beta, gamma) pair. Instead
of the two lists, ``"points": [{"beta": 0.2, "gamma": 0.1}, …]`` names the pairs one by one:
that is what a CSV upload with the columns ``beta,gamma`` becomes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator
from typing import Any

from workunits.interface import Checkpoint, Manifest

MANIFEST = Manifest(
    name="sir_sweep",
    version=3,  # 2: the bundled interface.py knows wasm apps; 3: it knows pinned wheels
    title="Stochastic SIR epidemics over a sweep of rates",
    compare="tolerance",
    abs_tolerance=1e-9,
    rel_tolerance=1e-9,
    memory_bytes=64 * 1024 * 1024,
    fpops_per_unit=5e8,
    max_output_bytes=4096,
    result_name="sir_sweep.csv",
    example_parameters={
        "seed": 1,
        "population": 1000,
        "initial_infected": 5,
        "days": 120,
        "runs": 20,
        "beta": [0.2, 0.3, 0.4],
        "gamma": [0.1, 0.2],
    },
    table_columns=("beta", "gamma"),
    table_parameter="points",
)
LIMITS = {
    "population": (10, 100_000),
    "initial_infected": (1, 100_000),
    "days": (1, 3650),
    "runs": (1, 10_000),
}
MAX_POINTS = 1_000_000


def _whole(parameters: dict[str, Any], key: str) -> int:
    low, high = LIMITS[key]
    value = parameters.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10:
        raise ValueError(f"{where} is {value!r}: each rate must be a number above 0 and at most 10")
    return float(value)


def _rates(parameters: dict[str, Any], key: str) -> list[float]:
    values = parameters.get(key)
    if not isinstance(values, list) or not values:
        raise ValueError(f"{key} must be a non-empty list of rates")
    return [_rate(value, key) for value in values]


def _points(parameters: dict[str, Any]) -> Iterator[tuple[float, float]]:
    """The sweep's (beta, gamma) pairs, one at a time: every pair of the two lists, or the
    listed points (each checked as it comes; the splitter's first run checks them all)."""
    if "points" not in parameters:
        betas, gammas = _rates(parameters, "beta"), _rates(parameters, "gamma")
        if len(betas) * len(gammas) > MAX_POINTS:
            raise ValueError(f"the sweep has {len(betas) * len(gammas)} points; at most {MAX_POINTS}")
        return ((b, g) for b in betas for g in gammas)
    if "beta" in parameters or "gamma" in parameters:
        raise ValueError("give either points or the beta and gamma lists, not both")
    points = parameters["points"]
    if not isinstance(points, list) or not points or len(points) > MAX_POINTS:
        raise ValueError(f"points must be a list of 1 to {MAX_POINTS} {{beta, gamma}} objects")
    return (_point(point, f"points[{index}]") for index, point in enumerate(points))


def _point(point: Any, where: str) -> tuple[float, float]:
    if not isinstance(point, dict) or set(point) != {"beta", "gamma"}:
        raise ValueError(f"{where} must be an object with exactly beta and gamma")
    return _rate(point["beta"], f"{where}.beta"), _rate(point["gamma"], f"{where}.gamma")


def split(parameters: dict[str, Any]) -> Iterator[bytes]:
    """One unit per (beta, gamma) pair: beta varying slowest, or in the order of ``points``."""
    if not isinstance(parameters, dict):
        raise ValueError("the parameters must be a JSON object")
    unknown = set(parameters) - {"seed", "beta", "gamma", "points", *LIMITS}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    seed = parameters.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number from 0 to 2**63-1, not {seed!r}")
    fixed = {key: _whole(parameters, key) for key in LIMITS}
    if fixed["initial_infected"] > fixed["population"]:
        raise ValueError("initial_infected must not exceed population")
    for index, (beta, gamma) in enumerate(_points(parameters)):
        yield json.dumps(
            {"seed": seed, "unit": index, "beta": beta, "gamma": gamma, **fixed}, sort_keys=True
        ).encode()


def _binomial(rng: random.Random, n: int, p: float) -> int:
    draw = rng.random
    return sum(1 for _ in range(n) if draw() < p)


def _epidemic(job: dict[str, Any], run: int) -> tuple[int, int, int]:
    """One epidemic: (final size, peak infected, day of the peak)."""
    digest = hashlib.sha256(f"{job['seed']}:{job['unit']}:{run}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    n, infected = job["population"], job["initial_infected"]
    susceptible, peak, peak_day = n - infected, infected, 0
    recover = 1.0 - math.exp(-job["gamma"])
    for day in range(1, job["days"] + 1):
        if infected == 0:
            break
        new_infections = _binomial(rng, susceptible, 1.0 - math.exp(-job["beta"] * infected / n))
        recoveries = _binomial(rng, infected, recover)
        susceptible -= new_infections
        infected += new_infections - recoveries
        if infected > peak:
            peak, peak_day = infected, day
    return n - susceptible, peak, peak_day


def compute(data: bytes, checkpoint: Checkpoint) -> bytes:
    job = json.loads(data)
    state = checkpoint.state or {"run": 0, "sums": [0, 0, 0]}
    run, sums = int(state["run"]), [int(s) for s in state["sums"]]
    while run < job["runs"]:
        final_size, peak, peak_day = _epidemic(job, run)
        sums = [sums[0] + final_size, sums[1] + peak, sums[2] + peak_day]
        run += 1
        checkpoint.save({"run": run, "sums": sums}, run / job["runs"])
    n, runs = job["population"], job["runs"]
    return json.dumps(
        {
            "beta": job["beta"],
            "gamma": job["gamma"],
            "final_size": sums[0] / runs / n,
            "peak_infected": sums[1] / runs / n,
            "peak_day": sums[2] / runs,
        },
        sort_keys=True,
    ).encode()


def compare(a: bytes, b: bytes) -> bool:
    """Same keys, numbers equal within the manifest's tolerances."""
    first, second = json.loads(a), json.loads(b)
    if set(first) != set(second):
        return False
    return all(
        math.isclose(first[k], second[k], rel_tol=MANIFEST.rel_tolerance, abs_tol=MANIFEST.abs_tolerance)
        for k in first
    )


def assimilate(outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """The sweep as CSV, one row per (beta, gamma), in unit order."""
    columns = ["beta", "gamma", "final_size", "peak_infected", "peak_day"]
    lines = [",".join(columns)]
    for _, output in outputs:
        row = json.loads(output)
        lines.append(",".join(f"{row[c]:.6g}" for c in columns))
    return ("\n".join(lines) + "\n").encode()
