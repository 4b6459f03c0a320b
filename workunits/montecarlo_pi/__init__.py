"""Monte Carlo estimate of pi: throw points at the unit square, count those inside the circle.

Each work unit throws ``samples`` points from its own seeded random streams, one stream per
chunk of ``CHUNK`` points (seeded from the batch seed, the unit and the chunk), so a unit's
output is the same bytes on every computer and after every resume: outputs compare bitwise.
The batch result is pi with its standard error over all units.

Parameters (JSON): ``{"seed": 1, "units": 100, "samples_per_unit": 2000000}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator
from typing import Any

from workunits.interface import Checkpoint, Manifest

CHUNK = 200_000
MAX_UNITS = 10_000_000
MAX_SAMPLES = 10**9

MANIFEST = Manifest(
    name="montecarlo_pi",
    version=3,  # 2: the bundled interface.py knows wasm apps; 3: it knows pinned wheels
    title="Monte Carlo estimate of pi",
    compare="bitwise",
    memory_bytes=64 * 1024 * 1024,
    fpops_per_unit=2e9,  # per 2,000,000 samples, about 1,000 floating-point operations each
    max_output_bytes=4096,
    example_parameters={"seed": 42, "units": 100, "samples_per_unit": 2_000_000},
)


def _integer(parameters: dict[str, Any], key: str, low: int, high: int) -> int:
    value = parameters.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return value


def split(parameters: dict[str, Any]) -> Iterator[bytes]:
    """One input per unit: the batch seed, the unit's index and how many points to throw."""
    if not isinstance(parameters, dict):
        raise ValueError("the parameters must be a JSON object")
    unknown = set(parameters) - {"seed", "units", "samples_per_unit"}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    seed = _integer(parameters, "seed", 0, 2**63 - 1)
    units = _integer(parameters, "units", 1, MAX_UNITS)
    samples = _integer(parameters, "samples_per_unit", 1, MAX_SAMPLES)
    for index in range(units):
        yield json.dumps({"seed": seed, "unit": index, "samples": samples}, sort_keys=True).encode()


def _stream(seed: int, unit: int, chunk: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{unit}:{chunk}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def compute(data: bytes, checkpoint: Checkpoint) -> bytes:
    job = json.loads(data)
    seed, unit, samples = int(job["seed"]), int(job["unit"]), int(job["samples"])
    chunks = math.ceil(samples / CHUNK)
    state = checkpoint.state or {"chunk": 0, "inside": 0}
    chunk, inside = int(state["chunk"]), int(state["inside"])
    while chunk < chunks:
        rng = _stream(seed, unit, chunk)
        draw = rng.random
        for _ in range(min(CHUNK, samples - chunk * CHUNK)):
            x, y = draw(), draw()
            if x * x + y * y <= 1.0:
                inside += 1
        chunk += 1
        checkpoint.save({"chunk": chunk, "inside": inside}, chunk / chunks)
    return json.dumps({"inside": inside, "samples": samples}, sort_keys=True).encode()


def compare(a: bytes, b: bytes) -> bool:
    return a == b


def assimilate(outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """Pi from every unit's count, with the standard error of a binomial proportion."""
    inside = total = 0
    for _, output in outputs:
        counts = json.loads(output)
        inside, total = inside + int(counts["inside"]), total + int(counts["samples"])
    if total == 0:
        raise ValueError("no outputs to assimilate")
    share = inside / total
    return json.dumps(
        {"pi": 4 * share, "standard_error": 4 * math.sqrt(share * (1 - share) / total), "samples": total},
        sort_keys=True,
    ).encode()
