"""A task of a WebAssembly app, as the client starts it: the runner in place of ``main.py``.

The sandbox runs :mod:`tessera_client._wasm_run` as the task's entrypoint, with the same
priority, limits and network cut as a Python app; only its settings, written into the slot just
before each launch, and its address-space limit differ. The runner loads wasmtime in the task's
process; this module, which the daemon imports, never does.

The fuel a finished task used is in the slot's run record until the task's result goes into the
journal with it, so it survives a client restart either way.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tessera_client._wasm_state import RESERVED_BYTES, SETTINGS_NAME, Settings
from tessera_client.app_manifest import installed_manifest
from tessera_client.bundles import compiled_dir
from tessera_client.files import write_atomic
from tessera_client.sandbox import Limits

RUNNER = Path(__file__).with_name("_wasm_run.py")
# The runner's memory beyond the module's linear memory: the interpreter and wasmtime's library
# (about 100 MiB with the runtime's threads), and compiling the module, which took 160 MiB for a
# 0.5 MB module of 20,000 functions (measured with wasmtime 51). The linear memory's 4 GiB
# reservation and guard region are allowed on top, as address space only (RESERVED_BYTES).
RUNTIME_BYTES = 512 * 1024 * 1024
COMPILE_BYTES_PER_BYTE = 256
MAX_FUEL = 2**63 - 1  # what wasmtime's fuel counter (and the coordinator) can hold
HASH_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WasmTaskRefused(Exception):
    """The task cannot run as a wasm task (no fuel bound, say); the message says why."""


@dataclass(frozen=True)
class WasmLaunch:
    """What the sandbox runs for a wasm task, and under which limits."""

    runner: Path
    limits: Limits


def is_wasm(entrypoint: Path) -> bool:
    """Whether the verified app's entrypoint is a WebAssembly module (the manifest said so)."""
    return Path(entrypoint).suffix == ".wasm"


def fuel_bound(task: dict[str, Any]) -> int:
    """The task's fuel bound (BOINC's rsc_fpops_bound); ``WasmTaskRefused`` without a usable one."""
    bound = task.get("fuel_bound")
    if isinstance(bound, bool) or not isinstance(bound, int) or not 0 < bound <= MAX_FUEL:
        raise WasmTaskRefused(
            f"the task's fuel_bound is {bound!r}, not a positive integer: "
            "a WebAssembly app's task must say how much fuel it may use"
        )
    return bound


def input_sha256(task: dict[str, Any], input_path: Path) -> str:
    """The input's SHA-256: as the project sent it (checked when the input arrived), else hashed."""
    declared = task.get("input_sha256")
    if isinstance(declared, str) and _SHA256.match(declared):
        return declared
    digest = hashlib.sha256()
    with Path(input_path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prepare(
    task: dict[str, Any], entrypoint: Path, slot: Path, input_path: Path, limits: Limits
) -> WasmLaunch:
    """Write the runner's settings into ``slot``; ``WasmTaskRefused`` if the task cannot run."""
    try:
        manifest, folder = installed_manifest(Path(entrypoint))
        module_size = Path(entrypoint).stat().st_size
    except (ValueError, OSError) as error:
        raise WasmTaskRefused(f"the installed app is damaged: {error}") from error
    settings = Settings(
        module=Path(entrypoint).resolve(),
        cache_dir=compiled_dir(folder).resolve(),
        fuel_bound=fuel_bound(task),
        memory_bytes=manifest.memory_bytes,
        input_sha256=input_sha256(task, input_path),
    )
    write_atomic(Path(slot) / SETTINGS_NAME, json.dumps(settings.to_json(), indent=1).encode())
    needed = manifest.memory_bytes + RUNTIME_BYTES + COMPILE_BYTES_PER_BYTE * module_size
    memory = max(limits.memory_bytes, needed)
    return WasmLaunch(RUNNER, replace(limits, memory_bytes=memory, reserved_bytes=RESERVED_BYTES))
