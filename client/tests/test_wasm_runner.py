"""The wasm runner (docs/science-apps.md, "WebAssembly apps"), with real modules written in WAT:
run in a slot as the sandbox runs it, or through the sandbox itself where its limits matter."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wasmtime
from wasm_apps import (
    BOMB,
    CHAIN_SEGMENTS,
    ENV_IMPORT,
    ESCAPE,
    HELLO,
    LOOP,
    WORLD,
    MiB,
    chain,
    make_slot,
    run_runner,
    wasm,
)

from tessera_client import _wasm_world
from tessera_client._wasm_run import ModuleRunner, engine_settings, make_engine
from tessera_client._wasm_state import (
    RESERVED_BYTES,
    STATE_NAME,
    RunState,
    finished_fuel,
    read_settings,
    run_segments,
)
from tessera_client.sandbox import AppProcess, Limits
from tessera_client.wasm_tasks import RUNNER

WNOENT, WPERM = 44, 63  # WASI's errno values
CHAIN_WORK = 30_000_000  # steps per run: some 40 ms, so a kill lands inside a run


def limits(memory_bytes: int = 1024 * MiB, reserved_bytes: int = RESERVED_BYTES) -> Limits:
    return Limits(
        cpu_seconds=60,
        memory_bytes=memory_bytes,
        file_bytes=64 * MiB,
        processes=16,
        wall_deadline=time.time() + 60,
        reserved_bytes=reserved_bytes,
    )


def sandboxed(
    slot: Path, timeout: float = 60, memory_bytes: int = 1024 * MiB, reserved_bytes: int = RESERVED_BYTES
):
    """Run the runner in ``slot`` through the sandbox, as the client does (the linear memory's
    reservation allowed, unless ``reserved_bytes`` says otherwise); the ended process."""
    app = AppProcess.start(entrypoint=RUNNER, slot=slot, limits=limits(memory_bytes, reserved_bytes))
    outcome = app.wait(timeout)
    assert outcome is not None, "the runner did not finish in time"
    return outcome


def record(slot: Path) -> RunState:
    return RunState.decode((slot / STATE_NAME).read_bytes())


def test_a_module_writes_its_output_progress_and_stdout_through_the_sandbox(tmp_path):
    slot = make_slot(tmp_path, HELLO, input=b"tessera")
    (slot / "stdout.txt").write_bytes(b"an earlier run\n")

    outcome = sandboxed(slot, memory_bytes=512 * MiB)

    assert outcome.status == "success", outcome
    assert (slot / "output").read_bytes() == b"ok:tessera"
    assert (slot / "progress").read_text() == "1"
    # Appended, as a Python app's stdout is; a line without its newline is not lost.
    assert (slot / "stdout.txt").read_bytes() == b"an earlier run\nhello from wasm\npartial line"
    assert finished_fuel(slot) == record(slot).fuel > 0
    assert record(slot).runs == 1


def test_checkpoints_are_recorded_with_their_fuel_and_the_fuel_adds_up(tmp_path):
    slot = make_slot(tmp_path, chain(4, 1000))

    done = run_runner(slot)

    assert done.returncode == 0, done.stderr
    state = record(slot)
    assert state.finished and state.runs == 4 and state.checkpoint is None
    step, _ = struct.unpack("<qQ", (slot / "output").read_bytes())
    assert step == 4
    # Each run pays the same fixed costs; the total is the sum of the four runs.
    single = make_slot(tmp_path / "one", chain(1, 1000))
    assert run_runner(single).returncode == 0
    assert 3 * record(single).fuel < state.fuel < 5 * record(single).fuel


def straight_run(folder: Path) -> tuple[bytes, int]:
    slot = make_slot(folder, chain(CHAIN_SEGMENTS, CHAIN_WORK))
    done = run_runner(slot)
    assert done.returncode == 0, done.stderr
    return (slot / "output").read_bytes(), record(slot).fuel


def test_a_task_killed_after_a_checkpoint_gives_the_same_output_and_fuel_as_one_run_straight(tmp_path):
    output, fuel = straight_run(tmp_path / "straight")
    slot = make_slot(tmp_path / "killed", chain(CHAIN_SEGMENTS, CHAIN_WORK))

    first = AppProcess.start(entrypoint=RUNNER, slot=slot, limits=limits())
    give_up = time.monotonic() + 60
    while not (slot / STATE_NAME).exists() or record(slot).runs < 2:
        assert first.poll() is None and time.monotonic() < give_up, "no checkpoint was recorded"
        time.sleep(0.005)
    time.sleep(0.03)  # into the next run
    first.stop()  # SIGKILL, as when the client or the computer goes down
    assert not record(slot).finished and not (slot / "output").exists()

    second = sandboxed(slot)

    assert second.status == "success", second
    assert (slot / "output").read_bytes() == output
    assert record(slot).fuel == fuel
    assert record(slot).runs == CHAIN_SEGMENTS


class Killed(Exception):
    """The process died here."""


class DiesInRun:
    """The runner's module runs, but the process dies after run ``fatal`` wrote its checkpoint
    and before the runner recorded it."""

    def __init__(self, runner: ModuleRunner, fatal: int) -> None:
        self.runner, self.fatal, self.runs = runner, fatal, 0

    def run(self, fuel: int) -> tuple[int, int]:
        result = self.runner.run(fuel)
        self.runs += 1
        if self.runs == self.fatal:
            raise Killed
        return result

    def explain_exit(self, code: int) -> str:
        return self.runner.explain_exit(code)


def test_a_checkpoint_written_but_not_recorded_is_not_resumed_from(tmp_path):
    """The next process goes back to the recorded checkpoint, so the work and fuel of the run
    that was cut short count once."""
    output, fuel = straight_run(tmp_path / "straight")
    slot = make_slot(tmp_path / "torn", chain(CHAIN_SEGMENTS, CHAIN_WORK))
    settings = read_settings(slot)
    with pytest.raises(Killed):
        run_segments(slot, settings, DiesInRun(ModuleRunner(slot, settings), fatal=3))
    assert record(slot).runs == 2 and (slot / "checkpoint").read_bytes() != record(slot).checkpoint

    done = run_runner(slot)

    assert done.returncode == 0, done.stderr
    assert (slot / "output").read_bytes() == output and record(slot).fuel == fuel


def test_a_damaged_record_starts_the_task_over_with_the_same_result(tmp_path):
    output, fuel = straight_run(tmp_path / "straight")
    slot = make_slot(tmp_path / "damaged", chain(CHAIN_SEGMENTS, CHAIN_WORK))
    (slot / "checkpoint").write_bytes(struct.pack("<qQ", 7, 1))
    (slot / STATE_NAME).write_bytes(RunState(99, 7, False, struct.pack("<qQ", 7, 1)).encode()[:-3])

    done = run_runner(slot)

    assert done.returncode == 0 and b"starting over" in done.stderr
    assert (slot / "output").read_bytes() == output and record(slot).fuel == fuel


def test_a_finished_task_started_again_keeps_its_output_and_fuel(tmp_path):
    """The client died after the module finished and before the result was journaled."""
    slot = make_slot(tmp_path, chain(3, 1000))
    assert run_runner(slot).returncode == 0
    before = (slot / STATE_NAME).read_bytes(), (slot / "output").read_bytes()

    assert run_runner(slot).returncode == 0
    assert ((slot / STATE_NAME).read_bytes(), (slot / "output").read_bytes()) == before


def test_a_module_that_loops_forever_stops_at_its_fuel_bound(tmp_path):
    slot = make_slot(tmp_path, LOOP, fuel_bound=50_000_000)

    outcome = sandboxed(slot)

    assert outcome.status == "client_error"
    assert outcome.message.startswith("used its fuel bound of 50000000"), outcome.message
    assert not (slot / STATE_NAME).exists()


def test_the_fuel_bound_counts_the_recorded_runs_too(tmp_path):
    one = make_slot(tmp_path / "one", chain(1, 1_000_000))
    assert run_runner(one).returncode == 0
    slot = make_slot(tmp_path / "many", chain(10, 1_000_000), fuel_bound=5 * record(one).fuel)

    done = run_runner(slot)

    assert done.returncode == 1
    assert b"tessera-wasm: used its fuel bound of" in done.stderr
    assert record(slot).runs == 4  # the fifth run ran dry


@pytest.mark.parametrize("guard_region", [True, False])
def test_a_memory_bomb_stops_at_its_memory_limit(tmp_path, guard_region):
    slot = make_slot(tmp_path, BOMB, memory_bytes=32 * MiB)

    # The sandbox's limits as the client sets them for a module of 32 MiB: with the linear
    # memory's 4 GiB reservation allowed, or (a volunteer's own ulimit -v) without.
    reserved = RESERVED_BYTES if guard_region else 0
    outcome = sandboxed(slot, memory_bytes=32 * MiB + 512 * MiB, reserved_bytes=reserved)

    assert outcome.status == "client_error"
    assert outcome.message.startswith("ran out of its memory limit of 32 MiB"), outcome.message
    settings = engine_settings(32 * MiB, guard_region=guard_region)
    key = _wasm_world.cache_key(hashlib.sha256(wasm(BOMB)).hexdigest(), settings)
    assert [entry.name.split("-")[0] for entry in cached_files(tmp_path / "compiled")] == [key]


def test_a_module_needing_more_memory_than_its_limit_to_start_is_stopped_before_it_runs(tmp_path):
    slot = make_slot(
        tmp_path, HELLO.replace('(memory (export "memory") 1)', '(memory (export "memory") 600)')
    )

    done = run_runner(slot)

    assert done.returncode == 1
    assert b"tessera-wasm: ran out of its memory limit of 16 MiB before it started" in done.stderr
    assert not (slot / "output").exists()


def outside(slot: Path, top: Path) -> list[Path]:
    """Every path under ``top`` but the slot's own (and the runner's compiled-module cache)."""
    return sorted(p for p in top.rglob("*") if slot not in p.parents and "compiled" not in p.parts)


def test_a_module_sees_nothing_outside_its_slot(tmp_path):
    slot = make_slot(tmp_path / "task", ESCAPE)
    before = outside(slot, tmp_path)

    done = run_runner(slot)

    assert done.returncode == 0, done.stderr
    passwd, absolute, beside, through_tmp = struct.unpack("<4i", (slot / "output").read_bytes())
    assert passwd == -WNOENT  # /etc/passwd is simply not found
    assert absolute < 0 and beside < 0 and through_tmp < 0
    assert beside == -WPERM
    assert outside(slot, tmp_path) == before  # nothing created beside the slot, or above it
    assert not (slot.parent / "x").exists() and not (slot.parent / "y").exists()


def test_a_module_importing_anything_but_wasi_is_refused_before_it_runs(tmp_path):
    slot = make_slot(tmp_path, ENV_IMPORT)

    outcome = sandboxed(slot)

    assert outcome.status == "client_error"
    assert outcome.message.startswith("the module imports env.foo; a module may import functions of")
    assert not (slot / STATE_NAME).exists() and not (slot / "output").exists()


def world_output(folder: Path, input: bytes) -> bytes:
    slot = make_slot(folder, WORLD, input=input)
    done = run_runner(slot)
    assert done.returncode == 0, done.stderr
    return (slot / "output").read_bytes()


def test_clocks_and_random_are_the_same_on_every_run_and_keyed_by_the_input(tmp_path):
    first = world_output(tmp_path / "a", b"unit 1")
    again = world_output(tmp_path / "b", b"unit 1")
    other = world_output(tmp_path / "c", b"unit 2")

    assert first == again
    realtime, monotonic, later = struct.unpack("<3Q", first[:24])
    assert realtime == 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
    assert monotonic == 1_000 and later == realtime + 2_000  # one µs per call, over every clock
    key = hashlib.sha256(b"unit 1").digest()
    stream = b"".join(hashlib.sha256(key + n.to_bytes(8, "little")).digest() for n in range(2))
    assert first[24:72] == stream[:48]  # SHA-256(key ‖ counter), each call the next bytes
    assert other[:24] == first[:24] and other[24:] != first[24:]


def test_the_random_stream_is_the_same_however_it_is_drawn():
    key = hashlib.sha256(b"input").digest()
    stream = b"".join(hashlib.sha256(key + n.to_bytes(8, "little")).digest() for n in range(5000))
    world = _wasm_world.World(key)

    assert world.random(100_000) == stream[:100_000]  # larger than one chunk of a call
    world.reset()
    assert b"".join(world.random(n) for n in (1, 31, 33, 0, 7)) == stream[:72]
    assert world.now(4) is None and world.now(0) == 946_684_800 * 10**9  # no such clock: EINVAL


# -- the compiled-module cache ------------------------------------------------------------
def cached_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.cwasm"))


def test_the_second_start_uses_the_compiled_module_from_the_cache(tmp_path):
    slot = make_slot(tmp_path, HELLO)
    assert run_runner(slot).returncode == 0
    [entry] = cached_files(tmp_path / "compiled")
    stamp = entry.stat().st_ino, entry.stat().st_mtime_ns

    (slot / STATE_NAME).unlink()
    assert run_runner(slot).returncode == 0

    [again] = cached_files(tmp_path / "compiled")
    assert again == entry and (again.stat().st_ino, again.stat().st_mtime_ns) == stamp


@pytest.fixture
def compiled(tmp_path):
    """An engine as the runner makes it, and a module compiled once into the cache."""
    settings = engine_settings(16 * MiB)
    engine = make_engine(settings)
    path = tmp_path / "app.wasm"
    path.write_bytes(wasmtime.wat2wasm(HELLO))
    cache = tmp_path / "compiled"
    _wasm_world.load_module(engine, path.read_bytes(), cache, settings)
    return engine, path, cache, settings


def no_compiling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the module was compiled instead of taken from the cache")

    monkeypatch.setattr(wasmtime.Module, "__init__", refuse)


def test_a_cached_module_is_not_compiled_again(compiled, monkeypatch):
    engine, path, cache, settings = compiled
    no_compiling(monkeypatch)

    module = _wasm_world.load_module(engine, path.read_bytes(), cache, settings)

    assert [item.name for item in module.exports] == ["memory", "_start"]


def test_a_corrupted_cache_file_is_never_trusted_and_is_rebuilt(compiled, monkeypatch):
    engine, path, cache, settings = compiled
    [entry] = cached_files(cache)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    with monkeypatch.context() as patched:
        no_compiling(patched)
        with pytest.raises(AssertionError, match="compiled instead"):
            _wasm_world.load_module(engine, path.read_bytes(), cache, settings)

    module = _wasm_world.load_module(engine, path.read_bytes(), cache, settings)

    assert [item.name for item in module.exports] == ["memory", "_start"]
    [rebuilt] = cached_files(cache)
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() in rebuilt.name


def test_a_cache_entry_of_another_engine_is_rebuilt(compiled):
    engine, path, cache, settings = compiled
    [entry] = cached_files(cache)
    other = wasmtime.Module(make_engine(engine_settings(64 * MiB)), path.read_bytes()).serialize()
    os.unlink(entry)
    key = entry.name.split("-")[0]
    impostor = cache / f"{key}-{hashlib.sha256(bytes(other)).hexdigest()}.cwasm"
    impostor.write_bytes(bytes(other))  # its bytes match its name, but not this engine

    _wasm_world.load_module(engine, path.read_bytes(), cache, settings)

    [rebuilt] = cached_files(cache)
    assert rebuilt != impostor and not impostor.exists()


def test_the_cache_key_changes_with_the_module_the_engine_and_the_wasmtime_version(monkeypatch):
    settings = engine_settings(16 * MiB)
    key = _wasm_world.cache_key("a" * 64, settings)

    assert _wasm_world.cache_key("b" * 64, settings) != key
    assert _wasm_world.cache_key("a" * 64, engine_settings(32 * MiB)) != key
    monkeypatch.setattr(_wasm_world.metadata, "version", lambda name: "0.0.1")
    assert _wasm_world.cache_key("a" * 64, settings) != key


def test_a_python_without_wasmtime_gets_a_clear_reason_not_a_traceback(tmp_path):
    """-S leaves site-packages (and so wasmtime) out, as a client installed without it."""
    done = subprocess.run(
        [sys.executable, "-S", "-E", str(RUNNER)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tessera-wasm: this client cannot run WebAssembly apps") and "wasmtime" in last
    assert "Traceback" not in done.stderr
