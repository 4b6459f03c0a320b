"""The runner of a WebAssembly task: wasmtime, in the task's sandboxed process.

The sandbox starts this file as a wasm task's entrypoint (``python -E -s _wasm_run.py``, cwd = the
slot, already at the lowest priority, under the task's limits, without network). It reads its
settings from the slot (``.tessera-wasm.json``, written by the client before each launch) and runs
the module as docs/science-apps.md ("WebAssembly apps") promises: only ``wasi_snapshot_preview1``
imports, the slot preopened at ``/``, a fixed argv and environment, the manifest's memory limit,
the task's fuel bound, and a world that is the same on every machine
(:mod:`tessera_client._wasm_world`).

Exit 75 means "checkpoint written, run me again": the fuel so far and the checkpoint's bytes are
recorded together in ``.tessera-run`` (:mod:`tessera_client._wasm_state`), and a fresh instance
runs. A process that starts in a slot with a record restores that checkpoint first, so a run
that was killed counts for nothing: an interrupted task reports exactly the fuel of an
uninterrupted one.

A script inside the package: it imports the standard library, wasmtime and three sibling
modules, which import nothing else either (none of requests, PyNaCl, rich). The client imports
``_wasm_state`` for the names and the record's format, never this module or ``_wasm_world``, so
the daemon never loads wasmtime.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # Run as a script, Python put this file's folder first on the path, where the package's
    # modules would pass for top-level ones; the folder above makes this very package importable.
    HERE = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
        sys.path[0] = str(HERE.parent)

try:
    import resource
except ImportError:  # Windows: no address-space limit to fit in
    resource = None  # type: ignore[assignment]

try:
    import wasmtime
except ImportError as missing:  # a client installed without its dependencies
    if __name__ != "__main__":
        raise
    sys.stderr.write(
        f"tessera-wasm: this client cannot run WebAssembly apps: {missing}; "
        "reinstall it with its dependencies (pip install --force-reinstall tessera-client)\n"
    )
    sys.exit(1)

from tessera_client import _wasm_state as state
from tessera_client import _wasm_world as world
from tessera_client import wasm_nan

WASI = "wasi_snapshot_preview1"
WASI_ENV = [
    ("TESSERA_API", "1"),
    ("TESSERA_INPUT", "/input"),
    ("TESSERA_OUTPUT", "/output"),
    ("TESSERA_CHECKPOINT", "/checkpoint"),
    ("TESSERA_PROGRESS", "/progress"),
]
PAGE = 64 * 1024
GUARD_BYTES = 64 * 1024
MiB = 1024 * 1024
Failed = state.Failed


def engine_settings(
    memory_bytes: int, *, nan_guarded: bool = False, guard_region: bool = False
) -> dict[str, Any]:
    """The engine's configuration; it shapes the machine code, so it is part of the cache key.
    ``nan_guarded``: the module makes its NaNs' bits the same itself (:mod:`tessera_client.wasm_nan`).
    ``guard_region``: the process may reserve 4 GiB of address space for the linear memory, so
    wasmtime checks bounds with guard pages instead of in code (``room_for_guard_region``)."""
    if guard_region:
        reservation, guard = state.GUARDED_RESERVATION_BYTES, state.GUARD_REGION_BYTES
    else:  # the memory limit, checked in code: the address space stays under a tight RLIMIT_AS
        reservation, guard = -(-memory_bytes // PAGE) * PAGE, GUARD_BYTES
    return {
        "consume_fuel": True,
        # NaNs have the same bits on every machine: canonicalized after every operation, unless
        # the module's own guards canonicalize them where they can be seen.
        "cranelift_nan_canonicalization": not nan_guarded,
        "wasm_relaxed_simd_deterministic": True,
        "wasm_threads": False,
        "shared_memory": False,
        "wasm_multi_memory": False,  # one memory, so the memory limit is the module's
        "wasm_memory64": False,
        "wasm_gc": False,  # a GC heap would live outside the memory limit
        "parallel_compilation": False,  # no compiler threads in a process the sandbox limits
        # The linear memory is reserved once and never moves; the store's limiter (and the
        # sandbox's RLIMIT_DATA) bound how much of it becomes usable.
        "memory_reservation": reservation,
        "memory_guard_size": guard,
        "memory_reservation_for_growth": 0,
        "memory_may_move": False,
    }


def room_for_guard_region(memory_bytes: int) -> bool:
    """Does this process's address-space limit leave room for the 4 GiB reservation? (The
    sandbox allows it; a volunteer's own lower ``ulimit -v`` may not.)"""
    if resource is None:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return soft == resource.RLIM_INFINITY or soft >= state.RESERVED_BYTES + memory_bytes


def make_engine(config: dict[str, Any]) -> wasmtime.Engine:
    settings = wasmtime.Config()
    for name, value in config.items():
        setattr(settings, name, value)
    return wasmtime.Engine(settings)


def require_nan_guards(wasm: bytes) -> None:
    """Before compiling without canonicalization: every observation point must be guarded (a
    cached module compiled so was checked when it was compiled)."""
    if not wasm_nan.check(wasm):
        raise Failed(
            f"the module is marked {wasm_nan.MARKER} but not every float store, reinterpretation "
            "or copysign is guarded; republish it (the project's publish_app guards it)"
        )


def check_interface(module: wasmtime.Module) -> None:
    """Refuse, before it runs, a module that imports more than WASI or has no entry point."""
    for item in module.imports:
        name = f"{item.module}.{item.name}"
        if item.module != WASI:
            raise Failed(f"the module imports {name}; a module may import functions of {WASI} only")
        if not isinstance(item.type, wasmtime.FuncType):
            raise Failed(f"the module imports {name}, which is not a function")
    exports = {item.name: item.type for item in module.exports}
    if not isinstance(exports.get("_start"), wasmtime.FuncType):
        raise Failed("the module exports no _start function (the entry point of a WASI command)")


class ModuleRunner:
    """One module, compiled once per process (or taken from the cache), run afresh each time."""

    def __init__(self, slot: Path, settings: state.Settings) -> None:
        wasm = world.read_module(settings.module)
        guarded = wasm_nan.is_marked(wasm)
        room = room_for_guard_region(settings.memory_bytes)
        config = engine_settings(settings.memory_bytes, nan_guarded=guarded, guard_region=room)
        self.engine = make_engine(config)
        check = require_nan_guards if guarded else None
        self.module = world.load_module(self.engine, wasm, settings.cache_dir, config, check)
        check_interface(self.module)
        self.world = world.World(bytes.fromhex(settings.input_sha256))
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.world.define(self.linker, WASI)
        self.slot, self.settings = slot, settings
        self.store: wasmtime.Store | None = None
        self.instance: wasmtime.Instance | None = None

    def wasi(self) -> wasmtime.WasiConfig:
        config = wasmtime.WasiConfig()
        config.argv = ["app"]
        config.env = WASI_ENV
        config.inherit_stdout()  # the slot's stdout.txt and stderr.txt, opened for appending
        config.inherit_stderr()
        config.preopen_dir(str(self.slot), "/")
        return config

    def run(self, fuel: int) -> tuple[int, int]:
        """One run of ``_start`` with ``fuel``: its exit code and the fuel it used (``Failed`` if
        it trapped or could not start)."""
        fuel = max(fuel, 0)
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=self.settings.memory_bytes)
        store.set_fuel(fuel)
        store.set_wasi(self.wasi())
        self.world.reset()
        self.store, self.instance = store, None
        try:
            self.instance = self.linker.instantiate(store, self.module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as error:
            raise Failed(self.explain_start(error)) from None
        start = self.instance.exports(store)["_start"]
        try:
            start(store)  # type: ignore[operator]
            code = 0
        except wasmtime.ExitTrap as exit:
            code = exit.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as trap:
            raise Failed(self.explain_trap(trap, store)) from None
        return code, fuel - store.get_fuel()

    def limit_text(self) -> str:
        return f"{self.settings.memory_bytes / MiB:g} MiB"

    def near_memory_limit(self) -> bool:
        """Did the module's memory end within an eighth of its limit (a grow was likely refused)?"""
        if self.store is None or self.instance is None:
            return False
        memory = self.instance.exports(self.store).get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return False
        return memory.data_len(self.store) * 8 >= self.settings.memory_bytes * 7

    def explain_start(self, error: Exception) -> str:
        text = state.gist(error)
        if "memory" in text and "limit" in text:
            return f"ran out of its memory limit of {self.limit_text()} before it started ({text})"
        return f"the module could not be started: {text}"

    def explain_trap(self, trap: Exception, store: wasmtime.Store) -> str:
        out_of_fuel = getattr(trap, "trap_code", None) == wasmtime.TrapCode.OUT_OF_FUEL
        if out_of_fuel or store.get_fuel() == 0:
            return f"used its fuel bound of {self.settings.fuel_bound} without finishing"
        if self.near_memory_limit():
            return f"ran out of its memory limit of {self.limit_text()} ({state.gist(trap)})"
        return f"the module trapped: {state.gist(trap)}"

    def explain_exit(self, code: int) -> str:
        if self.near_memory_limit():
            return f"ran out of its memory limit of {self.limit_text()} (it exited with code {code})"
        return f"the module exited with code {code}"


def main() -> int:
    slot = Path.cwd()
    try:
        settings = state.read_settings(slot)
        return state.run_segments(slot, settings, ModuleRunner(slot, settings))
    except Failed as failure:
        state.say(f"{state.REASON_PREFIX}{failure}")
    except OSError as error:  # the slot's files (the disk is full, the file size limit)
        state.say(f"{state.REASON_PREFIX}the runner could not use the slot's files: {error}")
    return state.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
