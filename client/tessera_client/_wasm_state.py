"""A wasm task's files in its slot, and the loop of its runs: what survives the runner's process.

``.tessera-wasm.json`` holds the runner's settings (the client writes it before each launch).
``.tessera-run`` records the runs that count: the fuel they used and the checkpoint the next run
starts from, in one atomically written file, so fuel and checkpoint can never disagree. When
the module exits 0 the record says ``finished`` and holds the task's total fuel, which the client
reports.

The standard library and :mod:`tessera_client.files` only: the client imports this module to
write the settings and read the fuel, and the runner (:mod:`tessera_client._wasm_run`) to keep
the record.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tessera_client.files import write_atomic

SETTINGS_NAME = ".tessera-wasm.json"
STATE_NAME = ".tessera-run"
STATE_FORMAT = "tessera-run-1"
HEADER_MAX = 4096
SETTINGS_MAX = 64 * 1024
CHECKPOINT, OUTPUT = "checkpoint", "output"
EXIT_CHECKPOINT = 75  # "I wrote my checkpoint, run me again"
EXIT_FAILED = 1  # the runner's verdict: its last line on stderr says why
REASON_PREFIX = "tessera-wasm: "
# A 32-bit linear memory reserved whole (4 GiB) with a guard region past it: every address the
# module can form falls in the reservation, so wasmtime drops its bounds checks (a tenth of a
# numerical kernel's time). The sandbox allows the reservation on top of the task's memory limit.
GUARDED_RESERVATION_BYTES = 4 * 1024**3
GUARD_REGION_BYTES = 32 * 1024**2
RESERVED_BYTES = GUARDED_RESERVATION_BYTES + GUARD_REGION_BYTES


class Failed(Exception):
    """The task failed; the message says why, in a volunteer's words."""


@dataclass(frozen=True)
class Settings:
    """What the client tells the runner."""

    module: Path  # the .wasm file, in the app's read-only folder
    cache_dir: Path  # where the compiled modules of this app version are kept
    fuel_bound: int
    memory_bytes: int
    input_sha256: str  # keys random_get: the input as the project hashed it

    def to_json(self) -> dict[str, Any]:
        return {
            "module": str(self.module),
            "cache_dir": str(self.cache_dir),
            "fuel_bound": self.fuel_bound,
            "memory_bytes": self.memory_bytes,
            "input_sha256": self.input_sha256,
        }

    @classmethod
    def from_json(cls, data: Any) -> Settings:
        """The settings in ``data``; ``Failed`` naming what is wrong."""
        if not isinstance(data, dict):
            raise Failed(f"{SETTINGS_NAME} is not a JSON object")
        for name in ("fuel_bound", "memory_bytes"):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise Failed(f"{SETTINGS_NAME}: {name} {value!r} is not a positive integer")
        digest = data.get("input_sha256")
        if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise Failed(f"{SETTINGS_NAME}: input_sha256 {digest!r} is not a SHA-256 in hex")
        module, cache_dir = data.get("module"), data.get("cache_dir")
        if not (isinstance(module, str) and module and isinstance(cache_dir, str) and cache_dir):
            raise Failed(f"{SETTINGS_NAME}: module and cache_dir must be paths")
        return cls(
            Path(module),
            Path(cache_dir),
            data["fuel_bound"],
            data["memory_bytes"],
            digest,
        )


@dataclass(frozen=True)
class RunState:
    """The runs that count, as ``.tessera-run`` holds them: one line of JSON, then the
    checkpoint's bytes, whose size and SHA-256 the line gives."""

    fuel: int = 0  # used by the runs that ended in 75 (and, once finished, by the last one)
    runs: int = 0
    finished: bool = False  # the module exited 0: ``fuel`` is the task's total
    checkpoint: bytes | None = None

    def encode(self) -> bytes:
        checkpoint = self.checkpoint
        header = {
            "format": STATE_FORMAT,
            "fuel": self.fuel,
            "runs": self.runs,
            "finished": self.finished,
            "checkpoint_size": None if checkpoint is None else len(checkpoint),
            "checkpoint_sha256": None if checkpoint is None else hashlib.sha256(checkpoint).hexdigest(),
        }
        return json.dumps(header, sort_keys=True).encode() + b"\n" + (checkpoint or b"")

    @classmethod
    def decode(cls, data: bytes) -> RunState:
        """The record in ``data``; ``ValueError`` for anything but a whole, intact one."""
        line, _, rest = data.partition(b"\n")
        header = parse_header(line)
        size, digest = header["checkpoint_size"], header.get("checkpoint_sha256")
        if size is None:
            if rest:
                raise ValueError("bytes follow a record without a checkpoint")
            return cls(header["fuel"], header["runs"], header["finished"], None)
        if len(rest) != size or hashlib.sha256(rest).hexdigest() != digest:
            raise ValueError("the checkpoint's bytes do not match their size and SHA-256")
        return cls(header["fuel"], header["runs"], header["finished"], rest)


def parse_header(line: bytes) -> dict[str, Any]:
    """The first line of a ``.tessera-run``, checked; ``ValueError`` if it is not one."""
    header = json.loads(line.decode("utf-8"))
    if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
        raise ValueError(f"not a {STATE_FORMAT} record")
    for name in ("fuel", "runs"):
        value = header.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} {value!r} is not a count")
    if not isinstance(header.get("finished"), bool):
        raise ValueError("finished is not true or false")
    size = header.get("checkpoint_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"checkpoint_size {size!r} is not a size")
    return header


def finished_fuel(slot: Path) -> int | None:
    """The task's total fuel, once the runner recorded that the module finished; else None."""
    data = read_plain(Path(slot) / STATE_NAME, HEADER_MAX)
    try:
        header = parse_header((data or b"").partition(b"\n")[0])
    except (ValueError, UnicodeDecodeError):
        return None
    return header["fuel"] if header["finished"] else None


def read_plain(path: Path, limit: int = -1) -> bytes | None:
    """The bytes of a plain file in the slot (at most ``limit``), None if there is none. Never
    follows a link: the module may plant one, and this process is not confined as it is."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        return handle.read(limit)


def gist(error: Exception) -> str:
    """The gist of a wasmtime error: what it was caused by, without the backtrace."""
    text = str(error).strip()
    cause = text.split("Caused by:", 1)[1] if "Caused by:" in text else text
    lines = [line.strip() for line in cause.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def say(text: str) -> None:
    """A line on the slot's stderr.txt, which the module's stderr shares."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def read_settings(slot: Path) -> Settings:
    data = read_plain(slot / SETTINGS_NAME, SETTINGS_MAX)
    if data is None:
        raise Failed(f"the client wrote no {SETTINGS_NAME} into the slot")
    try:
        return Settings.from_json(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, ValueError) as error:
        raise Failed(f"{SETTINGS_NAME} is not JSON: {error}") from error


def load_state(slot: Path) -> RunState:
    """The recorded runs; none without a record, or with a damaged one (the task starts over,
    which gives the same output and fuel, only later)."""
    data = read_plain(slot / STATE_NAME)
    if data is None:
        return RunState()
    try:
        return RunState.decode(data)
    except (ValueError, KeyError, UnicodeDecodeError) as error:
        say(f"note: starting over, as the record of the earlier runs is damaged ({error})")
        return RunState()


def restore_checkpoint(slot: Path, state: RunState) -> None:
    """Put back the recorded checkpoint, or remove one that no recorded run wrote."""
    path = slot / CHECKPOINT
    if state.checkpoint is None:
        if os.path.lexists(path):
            os.unlink(path)
    elif read_plain(path) != state.checkpoint:
        write_atomic(path, state.checkpoint)


def sync_output(slot: Path) -> None:
    """Make the module's output durable before the record says the task finished."""
    try:
        descriptor = os.open(slot / OUTPUT, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return  # no output: the client says so
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Runner(Protocol):
    def run(self, fuel: int) -> tuple[int, int]: ...
    def explain_exit(self, code: int) -> str: ...


def run_segments(slot: Path, settings: Settings, runner: Runner) -> int:
    """Run the module until it exits 0 (then 0), recording each checkpoint it asks for."""
    state = load_state(slot)
    if state.finished and os.path.isfile(slot / OUTPUT):
        return 0  # it finished before the client could keep the result; the record holds the fuel
    if state.finished:
        state = RunState()  # the output is gone: compute it again
    restore_checkpoint(slot, state)
    while True:
        code, used = runner.run(settings.fuel_bound - state.fuel)
        fuel = state.fuel + used
        if code == EXIT_CHECKPOINT:
            state = RunState(fuel, state.runs + 1, False, read_plain(slot / CHECKPOINT))
            write_atomic(slot / STATE_NAME, state.encode())
            continue
        if code != 0:
            raise Failed(runner.explain_exit(code))
        sync_output(slot)
        write_atomic(slot / STATE_NAME, RunState(fuel, state.runs + 1, True, None).encode())
        return 0
