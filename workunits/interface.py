"""What a science app is: its manifest and the four functions the platform calls.

- ``split(parameters) -> iterator of bytes``: the inputs of a batch's work units, one at a
  time (a generator: a million units never sit in memory). Raises ``ValueError`` with a
  message naming the field or line when the parameters are wrong.
- ``compute(input, checkpoint) -> bytes``: one unit, on a volunteer's computer. It resumes
  from ``checkpoint.state`` when that is not None and calls ``checkpoint.save(state,
  fraction)`` every few seconds; the state must be JSON.
- ``compare(a, b) -> bool``: do two outputs of one unit agree?
- ``assimilate(outputs) -> bytes``: the batch's result from the canonical outputs, given as
  ``(unit index, output)`` pairs in unit order.
- optional ``preview(parameters, outputs) -> bytes``: a PNG of the result so far, from the
  units done until now (the batch's page shows it growing).

No Django here: this runs on volunteers' computers too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

FUNCTIONS = ("split", "compute", "compare", "assimilate")


@dataclass(frozen=True)
class Manifest:
    """What the platform needs to know about an app before running any of it."""

    name: str
    version: int
    title: str
    compare: str = "bitwise"  # or "tolerance": JSON outputs, numbers within the tolerances
    abs_tolerance: float = 0.0
    rel_tolerance: float = 0.0
    memory_bytes: int = 0  # what one unit needs beyond the interpreter
    fpops_per_unit: float = 1e12  # estimated floating-point operations per unit
    max_output_bytes: int = 1024 * 1024
    result_name: str = "result.json"  # the file name of the batch's assimilated result
    # Parameters a scientist can start from (the admin form and the API docs show them).
    example_parameters: Mapping[str, Any] = field(default_factory=dict)
    # An app that takes a table (a CSV upload) names its columns and the parameter that
    # receives the rows, as a list of objects of numbers: ``{"points": [{"beta": 0.2, …}]}``.
    table_columns: tuple[str, ...] = ()
    table_parameter: str = ""

    def __post_init__(self) -> None:
        if self.compare not in ("bitwise", "tolerance"):
            raise ValueError(f"{self.name}: compare must be 'bitwise' or 'tolerance'")
        if self.version < 1 or self.fpops_per_unit <= 0 or self.max_output_bytes < 1:
            raise ValueError(f"{self.name}: version, fpops_per_unit and max_output_bytes must be positive")
        if bool(self.table_columns) != bool(self.table_parameter):
            raise ValueError(f"{self.name}: table_columns and table_parameter go together")


class Checkpoint:
    """Where ``compute`` keeps its progress; the runtime stores it (docs/apps.md)."""

    def __init__(self, state: Any = None) -> None:
        self.state = state
        self.saved: list[tuple[Any, float]] = []

    def save(self, state: Any, fraction: float) -> None:
        self.state = state
        self.saved.append((state, fraction))


def check_app(module: ModuleType) -> None:
    """Refuse a package that does not hold what the platform calls."""
    manifest = getattr(module, "MANIFEST", None)
    if not isinstance(manifest, Manifest):
        raise TypeError(f"{module.__name__} has no MANIFEST of type workunits.interface.Manifest")
    missing = [name for name in FUNCTIONS if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(f"{module.__name__} lacks {', '.join(missing)}")
