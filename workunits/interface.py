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

A Python app may depend on pinned wheels (``Manifest.wheels``, numpy for example), one set per
platform: ``manage.py publish_app`` fetches them once, checks their SHA-256 and puts them in the
signed bundle; the client installs them beside the app. ``compute`` imports them, the other
functions run on the coordinator, which does not have them.

No Django here: this runs on volunteers' computers too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

FUNCTIONS = ("split", "compute", "compare", "assimilate")
WASM_FUNCTIONS = ("split", "compare", "assimilate")  # the units run the module, not compute
RUNTIMES = ("python", "wasm")

# The BOINC platforms an app's wheels (or native builds) may be for, and the wheel platform tags
# that run there.
WHEEL_PLATFORMS = {
    "x86_64-pc-linux-gnu": re.compile(r"^(manylinux\d*|manylinux_\d+_\d+|linux)_x86_64$"),
    "aarch64-unknown-linux-gnu": re.compile(r"^(manylinux\d*|manylinux_\d+_\d+|linux)_aarch64$"),
    "x86_64-apple-darwin": re.compile(r"^macosx_\d+_\d+_(x86_64|intel|universal2?)$"),
    "arm64-apple-darwin": re.compile(r"^macosx_\d+_\d+_(arm64|universal2)$"),
    "windows_x86_64": re.compile(r"^win_amd64$"),
}
# PEP 427: {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl
_WHEEL_FILE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(-(?P<build>\d[A-Za-z0-9_]*))?"
    r"-(?P<python>[a-z0-9_.]+)-(?P<abi>[a-z0-9_.]+)-(?P<platform>[A-Za-z0-9_.]+)\.whl$"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CPYTHON = re.compile(r"^cp(3)(\d+)$")


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel: the exact file an index serves (its PEP 427 name) and its SHA-256.

    Pinning the file, not a version range, is the honest pin: the same name and hash give the
    same bytes at every publish, and nothing else is accepted.
    """

    file: str  # "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    sha256: str  # lowercase hex

    def __post_init__(self) -> None:
        if not _WHEEL_FILE.match(self.file):
            raise ValueError(f"{self.file!r} is not a wheel's name (name-version-python-abi-platform.whl)")
        if not _SHA256.match(self.sha256):
            raise ValueError(f"{self.file}: sha256 must be 64 lowercase hex digits, not {self.sha256!r}")

    def _part(self, part: str) -> str:
        match = _WHEEL_FILE.match(self.file)
        assert match is not None  # checked in __post_init__
        return match.group(part)

    @property
    def name(self) -> str:
        return self._part("name")

    @property
    def version(self) -> str:
        return self._part("version")

    @property
    def python_tags(self) -> tuple[str, ...]:
        return tuple(self._part("python").split("."))

    @property
    def abi(self) -> str:
        return self._part("abi")

    @property
    def platform_tags(self) -> tuple[str, ...]:
        return tuple(self._part("platform").split("."))

    @property
    def python(self) -> str:
        """ "3.11" for a wheel built for one CPython (``cp311-cp311``); "" for one that runs on
        any Python 3 (``py3-none-any``) or on every later one (``abi3``)."""
        for tag in self.python_tags:
            match = _CPYTHON.match(tag)
            if match and self.abi.startswith(tag):  # cp311 (and cp313t, free-threaded) pin one
                return f"{match.group(1)}.{match.group(2)}"
        return ""

    def runs_on(self, platform: str) -> bool:
        """Does one of the wheel's platform tags run on this BOINC platform?"""
        pattern = WHEEL_PLATFORMS.get(platform)
        return pattern is not None and any(t == "any" or pattern.match(t) for t in self.platform_tags)


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
    # wasm: BOINC platforms to publish the same C source for as native executables too
    # ("x86_64-pc-linux-gnu", …; docs/platforms.md); each host gets whichever runs faster there.
    native_platforms: tuple[str, ...] = ()
    # python: pinned wheels per BOINC platform ("x86_64-pc-linux-gnu": (Wheel(...), ...)). An app
    # with wheels is published as one app version per platform named here, and only there.
    wheels: Mapping[str, tuple[Wheel, ...]] = field(default_factory=dict)

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
        if self.wheels:
            self._check_wheels()

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
        unknown = [platform for platform in self.native_platforms if platform not in WHEEL_PLATFORMS]
        if unknown or len(set(self.native_platforms)) != len(self.native_platforms):
            raise ValueError(
                f"{self.name}: native_platforms must name each of {', '.join(WHEEL_PLATFORMS)} at most once"
            )

    def _check_wheels(self) -> None:
        if self.runtime != "python":
            raise ValueError(f"{self.name}: only a Python app has wheels")
        for platform, wheels in self.wheels.items():
            if platform not in WHEEL_PLATFORMS:
                raise ValueError(
                    f"{self.name}: {platform!r} is not a platform wheels can be for "
                    f"({', '.join(WHEEL_PLATFORMS)})"
                )
            if not isinstance(wheels, tuple) or not wheels or not all(isinstance(w, Wheel) for w in wheels):
                raise ValueError(f"{self.name}: the wheels for {platform} must be a non-empty tuple of Wheel")
            for wheel in wheels:
                if not wheel.runs_on(platform):
                    raise ValueError(f"{self.name}: {wheel.file} does not run on {platform}")
            names = [w.name.lower().replace("-", "_").replace(".", "_") for w in wheels]
            if len(set(names)) != len(names):
                raise ValueError(f"{self.name}: {platform} lists a distribution twice")
            if len({w.python for w in wheels} - {""}) > 1:
                raise ValueError(f"{self.name}: the wheels for {platform} are built for different Pythons")

    def python_for(self, platform: str) -> str:
        """The Python ("3.11") the wheels for ``platform`` are built for; "" when any will do."""
        return next((w.python for w in self.wheels.get(platform, ()) if w.python), "")

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
