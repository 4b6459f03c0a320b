"""What a wasm module may learn of the world, the same on every machine, and the compiled-module
cache that lets a module start again in milliseconds.

**Clocks** (``clock_time_get``): one counter for every clock, starting at 2000-01-01T00:00:00Z
for the realtime clock and at 0 for the others, advancing 1 µs per call; ``clock_res_get`` says
1 µs. **Randomness** (``random_get``): the stream SHA-256(key ‖ 0) ‖ SHA-256(key ‖ 1) ‖ …, the
counter as 8 bytes little-endian and the key the SHA-256 of the task's input; each call takes the
next bytes. Both start again at every run (docs/science-apps.md).

**The cache** keeps each compiled module as ``<key>-<sha256 of the file>.cwasm``, the key being
the SHA-256 of the module's SHA-256, the wasmtime version, the engine's settings and the machine.
A file is deserialized only when its bytes hash to its name (deserializing corrupt machine code
is undefined behaviour) and wasmtime accepts it; any other is deleted and the module compiled
again, never trusted.

Only the runner's process imports this module (it loads wasmtime).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import wasmtime

from tessera_client._wasm_state import Failed, gist, read_plain, say, write_atomic

REALTIME_START_NS = 946_684_800 * 1_000_000_000  # 2000-01-01T00:00:00Z
TICK_NS = 1_000
CLOCKS = 4  # realtime, monotonic, process and thread CPU time
ERRNO_FAULT, ERRNO_INVAL = 21, 28
U32 = 0xFFFF_FFFF
SUFFIX = ".cwasm"
RANDOM_CHUNK = 64 * 1024
STALE_SECONDS = 3600.0  # a temporary file this old was left by a runner that was killed


class World:
    """The clocks and the random stream of one task; :meth:`reset` before each run."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.counter = 0
        self.pool = b""

    def now(self, clock: int) -> int | None:
        """The time on ``clock`` in ns (None: no such clock); each reading advances 1 µs."""
        if not 0 <= clock < CLOCKS:
            return None
        value = (REALTIME_START_NS if clock == 0 else 0) + self.calls * TICK_NS
        self.calls += 1
        return value

    def random(self, size: int) -> bytes:
        """The next ``size`` bytes of the stream."""
        blocks, have = [self.pool], len(self.pool)
        while have < size:
            blocks.append(hashlib.sha256(self.key + self.counter.to_bytes(8, "little")).digest())
            self.counter += 1
            have += 32
        data = b"".join(blocks)
        self.pool = data[size:]
        return data[:size]

    def define(self, linker: wasmtime.Linker, wasi: str) -> None:
        """Put these clocks and this randomness in place of WASI's own (after ``define_wasi``)."""
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

        def clock_time_get(caller: wasmtime.Caller, clock: int, precision: int, out: int) -> int:
            value = self.now(clock & U32)
            return ERRNO_INVAL if value is None else guest_write(caller, out, value.to_bytes(8, "little"))

        def clock_res_get(caller: wasmtime.Caller, clock: int, out: int) -> int:
            if not 0 <= clock & U32 < CLOCKS:
                return ERRNO_INVAL
            return guest_write(caller, out, TICK_NS.to_bytes(8, "little"))

        def random_get(caller: wasmtime.Caller, buffer: int, size: int) -> int:
            buffer, size = buffer & U32, size & U32
            if guest_memory(caller, buffer, size) is None:
                return ERRNO_FAULT  # before drawing, so a bad call changes nothing
            for offset in range(0, size, RANDOM_CHUNK):  # never the whole of a large draw at once
                guest_write(caller, buffer + offset, self.random(min(RANDOM_CHUNK, size - offset)))
            return 0

        linker.allow_shadowing = True
        for name, params, function in (
            ("clock_time_get", [i32, i64, i32], clock_time_get),
            ("clock_res_get", [i32, i32], clock_res_get),
            ("random_get", [i32, i32], random_get),
        ):
            kind = wasmtime.FuncType(params, [i32])
            linker.define_func(wasi, name, kind, function, access_caller=True)
        linker.allow_shadowing = False


def guest_memory(caller: wasmtime.Caller, pointer: int, size: int) -> wasmtime.Memory | None:
    """The calling module's memory, if ``size`` bytes at ``pointer`` lie inside it."""
    memory = caller.get("memory")
    if isinstance(memory, wasmtime.Memory) and pointer + size <= memory.data_len(caller):
        return memory
    return None


def guest_write(caller: wasmtime.Caller, pointer: int, data: bytes) -> int:
    """Write ``data`` into the calling module's memory: WASI's errno (0, or EFAULT off its end)."""
    pointer &= U32
    memory = guest_memory(caller, pointer, len(data))
    if memory is None:
        return ERRNO_FAULT
    memory.write(caller, data, pointer)
    return 0


# -- the compiled-module cache ----------------------------------------------------------------
def cache_key(module_sha256: str, engine: dict[str, Any]) -> str:
    facts = {
        "module": module_sha256,
        "wasmtime": metadata.version("wasmtime"),
        "engine": engine,
        "machine": platform.machine(),
        "system": sys.platform,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def read_module(path: Path) -> bytes:
    wasm = read_plain(path)
    if wasm is None:
        raise Failed(f"the module {path} cannot be read")
    return wasm


def load_module(
    engine: wasmtime.Engine,
    wasm: bytes,
    cache: Path,
    settings: dict[str, Any],
    check: Callable[[bytes], None] | None = None,
) -> wasmtime.Module:
    """The module ``wasm`` for ``engine`` (made with ``settings``): from the cache, else checked
    by ``check`` (which raises ``Failed``), compiled and cached for next time."""
    key = cache_key(hashlib.sha256(wasm).hexdigest(), settings)
    module = from_cache(engine, cache, key)
    if module is not None:
        return module
    if check is not None:
        check(wasm)
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as error:
        raise Failed(f"the module is not WebAssembly this client can run: {gist(error)}") from None
    store_in_cache(module, cache, key)
    return module


def from_cache(engine: wasmtime.Engine, cache: Path, key: str) -> wasmtime.Module | None:
    try:
        entries = sorted(cache.glob(f"{key}-*{SUFFIX}"))
    except OSError:
        return None
    for path in entries:
        data = read_plain(path)
        if data is not None and hashlib.sha256(data).hexdigest() == path.name[len(key) + 1 : -len(SUFFIX)]:
            try:
                return wasmtime.Module.deserialize_file(engine, str(path))
            except wasmtime.WasmtimeError:
                pass  # made by another engine, whatever its name says
        with contextlib.suppress(OSError):
            path.unlink()  # corrupt or mismatched: never trusted
    return None


def store_in_cache(module: wasmtime.Module, cache: Path, key: str) -> None:
    """Keep the compiled module under ``key``, and only it: entries of other wasmtime versions
    or settings, and what killed runners left, go. A cache that cannot be written is no error."""
    try:
        data = bytes(module.serialize())
        cache.mkdir(parents=True, exist_ok=True)
        for old in cache.iterdir():
            stale = old.name.endswith(".tmp") and time.time() - old.stat().st_mtime > STALE_SECONDS
            if stale or (old.name.endswith(SUFFIX) and not old.name.startswith(key)):
                old.unlink()
        write_atomic(cache / f"{key}-{hashlib.sha256(data).hexdigest()}{SUFFIX}", data)
    except (OSError, wasmtime.WasmtimeError) as error:
        say(f"note: the compiled module could not be cached ({error})")
