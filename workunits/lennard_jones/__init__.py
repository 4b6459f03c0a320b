"""Lennard-Jones molecular dynamics: an equation-of-state sweep, run as WebAssembly.

Each work unit simulates one state point (density, temperature) of the Lennard-Jones fluid:
``4 n_cells**3`` particles start on an fcc lattice in a cubic periodic box, are equilibrated
at the temperature (velocity scaling every 10 steps), then run at constant energy (velocity
Verlet) while the potential energy per particle, the kinetic temperature, the virial
pressure and the total energy are averaged. Reduced units (sigma = epsilon = mass = 1); the
potential is cut at 2.5 sigma and shifted to zero there, with no tail corrections.

The unit runs the C kernel in ``src/lennard_jones.c``, compiled to a WebAssembly module
(``workunits.wasm_build``). It uses only + - * / and square roots, so every computer gives
the same bits and outputs compare bitwise; the batch result is a CSV table of the state
points, and the preview plots pressure against density, one line per isotherm.

Parameters (JSON): ``{"n_cells": 5, "densities": [0.1, 0.5, 0.9], "temperatures": [1.5, 2.0],
"dt": 0.005, "equilibration_steps": 1000, "production_steps": 4000, "seed": 1}`` runs every
(temperature, density) pair, an isotherm at a time. Instead of the two lists, ``"points":
[{"density": 0.8, "temperature": 1.5}, ...]`` names the state points one by one (a CSV
upload with the columns ``density,temperature``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from workunits.interface import Manifest
from workunits.lennard_jones.plot import isotherms_png

# A unit costs about 90 to 165 fuel per pair and step (wasmtime 51: the most for 32 particles,
# whose per-particle work weighs most, but the step limits keep their units small). The
# costliest unit the limits allow (n_cells 4, density 1.2, 91,911 steps: 3.0e9 pair-steps)
# burns 3.25e11 fuel, about a minute; the bound leaves a margin of three.
MAX_PAIR_STEPS = 3_000_000_000
MANIFEST = Manifest(
    name="lennard_jones",
    version=4,  # 2: the module carries its NaN guards; 3: the source builds natively too; 4: and
    # is published as native versions for Linux
    title="Lennard-Jones fluid: equation of state by molecular dynamics",
    compare="bitwise",
    memory_bytes=16 * 1024 * 1024,
    fpops_per_unit=1.5e10,  # the example's units: 500 particles, 5,000 steps
    max_output_bytes=4096,
    result_name="lennard_jones.csv",
    example_parameters={
        "n_cells": 5,
        "densities": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "temperatures": [1.5, 2.0, 3.0],
        "dt": 0.005,
        "equilibration_steps": 1000,
        "production_steps": 4000,
        "seed": 1,
    },
    table_columns=("density", "temperature"),
    table_parameter="points",
    runtime="wasm",
    deterministic=True,
    fuel_bound=1_000_000_000_000,
    wasm_source="src/lennard_jones.c",
    # Native versions for Linux too (zig builds static executables): the kernel's IEEE
    # operations give the wasm module's bits, so mixed quorums compare bitwise, and only the
    # wasm replicas' fuel is credited (docs/validation.md, "Mixed versions").
    native_platforms=("x86_64-pc-linux-gnu", "aarch64-unknown-linux-gnu"),
)
CUTOFF = 2.5  # sigma; the box must be at least twice as wide for the minimum image
WHOLE = {"n_cells": (2, 8), "equilibration_steps": (0, 200_000), "production_steps": (1, 200_000)}
DENSITY, TEMPERATURE, DT = (0.01, 1.2), (0.1, 5.0), (0.0001, 0.01)
MAX_POINTS = 10_000
COLUMNS = (
    "temperature",
    "density",
    "n_particles",
    "box_length",
    "potential_energy",
    "potential_energy_std",
    "kinetic_temperature",
    "kinetic_temperature_std",
    "pressure",
    "pressure_std",
    "total_energy",
    "total_energy_std",
    "energy_drift",
)


def cube_root(value: float) -> float:
    """The kernel's cube root (Newton's method from above), to the same bits."""
    x = max(value, 1.0)
    for _ in range(200):
        following = (2.0 * x + value / (x * x)) / 3.0
        if not following < x:
            break
        x = following
    return x


def box_length(n_cells: int, density: float) -> float:
    """The side of the box of ``4 n_cells**3`` particles at ``density``, as the kernel has it."""
    return float(n_cells) * cube_root(4.0 / density)


def _whole(parameters: dict[str, Any], key: str) -> int:
    low, high = WHOLE[key]
    value = parameters.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _number(value: Any, where: str, limits: tuple[float, float]) -> float:
    low, high = limits
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{where} is {value!r}: it must be a number from {low:g} to {high:g}")
    return float(value)


def _density(value: Any, where: str, n_cells: int) -> float:
    density = _number(value, where, DENSITY)
    side = box_length(n_cells, density)
    if side < 2 * CUTOFF:
        raise ValueError(
            f"{where} is {density:g}: with n_cells {n_cells} the box is {side:.3f} sigma wide, under "
            f"twice the cutoff ({2 * CUTOFF:g}); raise n_cells or lower the density"
        )
    return density


def _listed(parameters: dict[str, Any], key: str) -> list[Any]:
    values = parameters.get(key)
    if not isinstance(values, list) or not values:
        raise ValueError(f"{key} must be a non-empty list of numbers")
    return values


def state_points(parameters: dict[str, Any], n_cells: int) -> Iterator[tuple[float, float]]:
    """The sweep's (temperature, density) pairs: every pair of the two lists, an isotherm at
    a time, or the listed points (each checked as it comes)."""
    if "points" not in parameters:
        temperatures = [_number(t, "temperatures", TEMPERATURE) for t in _listed(parameters, "temperatures")]
        densities = [_density(d, "densities", n_cells) for d in _listed(parameters, "densities")]
        count = len(temperatures) * len(densities)
        if count > MAX_POINTS:
            raise ValueError(f"the sweep has {count} points; at most {MAX_POINTS}")
        return ((t, d) for t in temperatures for d in densities)
    if "densities" in parameters or "temperatures" in parameters:
        raise ValueError("give either points or the densities and temperatures lists, not both")
    points = parameters["points"]
    if not isinstance(points, list) or not points or len(points) > MAX_POINTS:
        raise ValueError(f"points must be a list of 1 to {MAX_POINTS} {{density, temperature}} objects")
    return (_point(point, f"points[{index}]", n_cells) for index, point in enumerate(points))


def _point(point: Any, where: str, n_cells: int) -> tuple[float, float]:
    if not isinstance(point, dict) or set(point) != {"density", "temperature"}:
        raise ValueError(f"{where} must be an object with exactly density and temperature")
    temperature = _number(point["temperature"], f"{where}.temperature", TEMPERATURE)
    return temperature, _density(point["density"], f"{where}.density", n_cells)


def _settings(parameters: dict[str, Any]) -> dict[str, Any]:
    """The settings every unit shares, checked; the work of one unit within the fuel bound."""
    if not isinstance(parameters, dict):
        raise ValueError("the parameters must be a JSON object")
    known = {"densities", "temperatures", "points", "dt", "seed", *WHOLE}
    unknown = set(parameters) - known
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    seed = parameters.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number from 0 to 2**63-1, not {seed!r}")
    settings = {key: _whole(parameters, key) for key in WHOLE}
    settings["dt"] = _number(parameters.get("dt"), "dt", DT)
    particles = 4 * settings["n_cells"] ** 3
    steps = settings["equilibration_steps"] + settings["production_steps"]
    work = particles * (particles - 1) // 2 * steps
    if work > MAX_PAIR_STEPS:
        raise ValueError(
            f"a unit of n_cells {settings['n_cells']} ({particles} particles) and {steps} steps "
            f"(equilibration_steps + production_steps) computes {work:.3g} pair interactions; at most "
            f"{MAX_PAIR_STEPS:.3g}: lower n_cells or the steps"
        )
    return {**settings, "seed": seed}


def unit_input(settings: dict[str, Any], temperature: float, density: float, seed: int) -> bytes:
    """One unit's input for the kernel: ``key value`` lines (floats in their shortest exact
    form, which C's strtod reads back to the same bits)."""
    values = {
        "n_cells": settings["n_cells"],
        "density": repr(float(density)),
        "temperature": repr(float(temperature)),
        "dt": repr(float(settings["dt"])),
        "equilibration_steps": settings["equilibration_steps"],
        "production_steps": settings["production_steps"],
        "seed": seed,
    }
    return "".join(f"{key} {value}\n" for key, value in values.items()).encode()


def unit_seed(seed: int, index: int) -> int:
    """Each unit's own stream: batches with neighbouring seeds share no unit's velocities."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "big")


def split(parameters: dict[str, Any]) -> Iterator[bytes]:
    """One unit per state point: each temperature's densities in turn, or ``points`` in order."""
    settings = _settings(parameters)
    for index, (temperature, density) in enumerate(state_points(parameters, settings["n_cells"])):
        yield unit_input(settings, temperature, density, unit_seed(settings["seed"], index))


def compare(a: bytes, b: bytes) -> bool:
    """The kernel gives the same bits everywhere: outputs agree when they are the same bytes."""
    return a == b


def _cell(value: Any) -> str:
    return "" if value is None else repr(value)  # a diverged run's numbers are null: empty cells


def assimilate(outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """The sweep as CSV, one row per state point in unit order, numbers to the last bit."""
    lines = [",".join(COLUMNS)]
    for _, output in outputs:
        row = json.loads(output)
        lines.append(",".join(_cell(row[column]) for column in COLUMNS))
    return ("\n".join(lines) + "\n").encode()


def preview(parameters: dict[str, Any], outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """Pressure against density, one line per isotherm, from the units done so far (the
    frame spans every density and isotherm of the batch from the start)."""
    done = [json.loads(output) for _, output in outputs]
    planned = list(state_points(parameters, _settings(parameters)["n_cells"]))
    measured = [(r["temperature"], r["density"], r["pressure"]) for r in done if r["pressure"] is not None]
    return isotherms_png(planned, measured)
