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

A WebAssembly app (``runtime="wasm"``) has no ``compute``: its units run a module compiled
from the C source the manifest names (``workunits.wasm_build``; docs/science-apps.md).

No Django here: this runs on volunteers' computers too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

FUNCTIONS = ("split", "compute", "compare", "assimilate")
WASM_FUNCTIONS = ("split", "compare", "assimilate")  # the units run the module, not compute
RUNTIMES = ("python", "wasm")


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
    # What runs a unit: "python" (``compute``) or "wasm" (a WebAssembly module, WASI preview 1).
    runtime: str = "python"
    # wasm: the output depends on the input alone, so outputs compare bitwise and replicas'
    # fuel must agree; False for a module that cannot be made so (it compares within tolerances).
    deterministic: bool = True
    # wasm: the most fuel (wasmtime's, about one per instruction) a unit may burn; past it the
    # task is stopped as an error. Measure the largest unit the splitter allows, add a margin.
    fuel_bound: int = 0
    # wasm: the C source of the module, relative to the app's package ("src/my_app.c").
    wasm_source: str = ""

    def __post_init__(self) -> None:
        if self.compare not in ("bitwise", "tolerance"):
            raise ValueError(f"{self.name}: compare must be 'bitwise' or 'tolerance'")
        if self.version < 1 or self.fpops_per_unit <= 0 or self.max_output_bytes < 1:
            raise ValueError(f"{self.name}: version, fpops_per_unit and max_output_bytes must be positive")
        if bool(self.table_columns) != bool(self.table_parameter):
            raise ValueError(f"{self.name}: table_columns and table_parameter go together")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"{self.name}: runtime must be 'python' or 'wasm'")
        if self.runtime == "wasm":
            self._check_wasm()

    def _check_wasm(self) -> None:
        if self.fuel_bound <= 0:
            raise ValueError(f"{self.name}: a wasm app needs a positive fuel_bound")
        source = self.wasm_source
        if not source.endswith(".c") or source.startswith("/") or ".." in source.split("/"):
            raise ValueError(f"{self.name}: wasm_source must be a .c file inside the app's package")
        if self.deterministic != (self.compare == "bitwise"):
            raise ValueError(
                f"{self.name}: a deterministic wasm app compares bitwise, any other within tolerances"
            )

    @property
    def entrypoint(self) -> str:
        """The module's file name in a wasm bundle."""
        return f"{self.name}.wasm"


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
    required = WASM_FUNCTIONS if manifest.runtime == "wasm" else FUNCTIONS
    missing = [name for name in required if not callable(getattr(module, name, None))]
    package = Path(module.__file__ or "").parent
    if manifest.runtime == "wasm" and not (package / manifest.wasm_source).is_file():
        missing.append(manifest.wasm_source)
    if missing:
        raise TypeError(f"{module.__name__} lacks {', '.join(missing)}")
