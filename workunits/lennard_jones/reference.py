"""The Lennard-Jones kernel in plain Python: the same physics as ``src/lennard_jones.c`` in the
same order of operations, so it writes the module's output to the byte.

It is written independently of the C source to check it (``workunits/tests``), and it is what
a Python version of the app runs (``compute``): about fifty times slower than the module, but
it needs nothing past the standard library. Python's floats are IEEE doubles, and every
operation here is one the C code does in the same order (no fused multiply-add, no reordered
sums), so every host computes the same bits.
"""

from __future__ import annotations

import math
from typing import Any


def compute(data: bytes, checkpoint: Any = None) -> bytes:
    """A unit's output from its input (the kernel's ``key value`` lines), for
    ``workunits.runtime.main``; it is short enough to need no checkpoint."""
    return simulate(data.decode())


def splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) % 2**64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return state, z ^ (z >> 31)


def lattice_and_velocities(job: dict, box: float) -> tuple[list[list[float]], list[list[float]]]:
    cells, cell = job["n_cells"], box / job["n_cells"]
    basis = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))
    positions = [
        [(float(i) + b[0] + 0.25) * cell, (float(j) + b[1] + 0.25) * cell, (float(k) + b[2] + 0.25) * cell]
        for i in range(cells)
        for j in range(cells)
        for k in range(cells)
        for b in basis
    ]
    state, velocities = job["seed"], []
    for _ in positions:
        v = []
        for _axis in range(3):
            total = 0.0
            for _draw in range(12):
                state, z = splitmix64(state)
                total += (z >> 11) * (1.0 / 9007199254740992.0)
            v.append(total - 6.0)
        velocities.append(v)
    n = float(len(positions))
    mean = [sum_in_order(v[a] for v in velocities) / n for a in range(3)]
    velocities = [[v[a] - mean[a] for a in range(3)] for v in velocities]
    return positions, scaled(velocities, job["temperature"])


def sum_in_order(values) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


def kinetic(velocities: list[list[float]]) -> float:
    return 0.5 * sum_in_order(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] for v in velocities)


def temperature_of(velocities: list[list[float]], energy: float) -> float:
    return 2.0 * energy / (3 * len(velocities) - 3)


def scaled(velocities: list[list[float]], target: float) -> list[list[float]]:
    factor = math.sqrt(target / temperature_of(velocities, kinetic(velocities)))
    return [[c * factor for c in v] for v in velocities]


def forces(positions: list[list[float]], box: float) -> tuple[list[list[float]], float, float]:
    half, rc2 = 0.5 * box, 2.5 * 2.5
    inv_rc6 = (1.0 / rc2) * (1.0 / rc2) * (1.0 / rc2)
    shift = 4.0 * inv_rc6 * (inv_rc6 - 1.0)
    f = [[0.0, 0.0, 0.0] for _ in positions]
    potential = virial = 0.0
    for i, p in enumerate(positions):
        own = [0.0, 0.0, 0.0]
        for j in range(i + 1, len(positions)):
            d = [p[a] - positions[j][a] for a in range(3)]
            d = [c - box if c > half else c + box if c < -half else c for c in d]
            r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
            if r2 < rc2:
                inv2 = 1.0 / r2
                inv6 = inv2 * inv2 * inv2
                w = 24.0 * inv6 * (2.0 * inv6 - 1.0)
                potential += 4.0 * inv6 * (inv6 - 1.0) - shift
                virial += w
                for a in range(3):
                    own[a] += w * inv2 * d[a]
                    f[j][a] -= w * inv2 * d[a]
        f[i] = [f[i][a] + own[a] for a in range(3)]
    return f, potential, virial


def simulate(text: str) -> bytes:
    """The output the kernel should write for this input, to the byte."""
    job = {k: (float(v) if k in ("density", "temperature", "dt") else int(v)) for k, v in
           (line.split(" ") for line in text.splitlines())}  # fmt: skip
    box = float(job["n_cells"]) * newton_cube_root(4.0 / job["density"])
    positions, velocities = lattice_and_velocities(job, box)
    f, potential, virial = forces(positions, box)
    n, dt, half_dt, eq = len(positions), job["dt"], 0.5 * job["dt"], job["equilibration_steps"]
    sums, start = [0.0] * 8, 0.0
    for step in range(eq + job["production_steps"]):
        if step == eq:
            start = (kinetic(velocities) + potential) / n
        velocities = [[v[a] + half_dt * fi[a] for a in range(3)] for v, fi in zip(velocities, f)]
        positions = [[wrap(p[a] + dt * v[a], box) for a in range(3)] for p, v in zip(positions, velocities)]
        f, potential, virial = forces(positions, box)
        velocities = [[v[a] + half_dt * fi[a] for a in range(3)] for v, fi in zip(velocities, f)]
        if step + 1 <= eq:
            velocities = scaled(velocities, job["temperature"]) if (step + 1) % 10 == 0 else velocities
            continue
        k = kinetic(velocities)
        values = (
            potential / n,
            temperature_of(velocities, k),
            (2.0 * k + virial) / (3.0 * (box * box * box)),
            (k + potential) / n,
        )
        for q, value in enumerate(values):
            sums[2 * q] += value
            sums[2 * q + 1] += value * value
        end = values[3]
    return output_json(job, box, n, sums, end - start)


def newton_cube_root(value: float) -> float:
    x = value if value > 1.0 else 1.0
    while (2.0 * x + value / (x * x)) / 3.0 < x:
        x = (2.0 * x + value / (x * x)) / 3.0
    return x


def wrap(value: float, box: float) -> float:
    return value - box if value >= box else value + box if value < 0.0 else value


def output_json(job: dict, box: float, n: int, sums: list[float], drift: float) -> bytes:
    steps = float(job["production_steps"])
    means = [sums[2 * q] / steps for q in range(4)]
    stds = [math.sqrt(max(sums[2 * q + 1] / steps - means[q] * means[q], 0.0)) for q in range(4)]
    fields = [("box_length", box), ("cutoff", 2.5), ("density", job["density"]), ("dt", job["dt"]),
              ("energy_drift", drift), ("equilibration_steps", job["equilibration_steps"]),
              ("kinetic_temperature", means[1]), ("kinetic_temperature_std", stds[1]),
              ("n_cells", job["n_cells"]), ("n_particles", n), ("potential_energy", means[0]),
              ("potential_energy_std", stds[0]), ("pressure", means[2]), ("pressure_std", stds[2]),
              ("production_steps", job["production_steps"]), ("seed", job["seed"]),
              ("temperature", job["temperature"]), ("total_energy", means[3]),
              ("total_energy_std", stds[3])]  # fmt: skip
    text = ", ".join(f'"{k}": {v}' if isinstance(v, int) else f'"{k}": {v:.17g}' for k, v in fields)
    return ("{" + text + "}\n").encode()
