"""Small WebAssembly modules for the tests, written in WAT and compiled by ``wasmtime.wat2wasm``
(no C toolchain needed), and the helpers that run them as the client does.

Every module is a WASI command: ``_start``, the slot preopened as fd 3, the files named as the
contract names them. Memory layout of the helpers: an iovec at 0, a count at 16, an fd at 24,
scratch from 32, names from 256, buffers from 1024.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import wasmtime

from tessera_client._wasm_state import SETTINGS_NAME, Settings

RUNNER = Path(__file__).resolve().parents[1] / "tessera_client" / "_wasm_run.py"
MiB = 1024 * 1024
CHAIN_SEGMENTS = 12  # runs of the chain module the checkpoint tests use
RIGHTS = "0x1fffffff"  # every right: wasmtime opens for reading and writing as the oflags allow

IMPORTS = """
 (import "wasi_snapshot_preview1" "path_open"
   (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
"""

# open(name, oflags) -> fd or -errno; write_fd(fd, buf, len); write_file(name, buf, len);
# read_file(name, buf, max) -> bytes read or -1 when the file cannot be opened
HELPERS = f"""
 (func $open (param $name i32) (param $len i32) (param $oflags i32) (result i32)
   (local $errno i32)
   (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (local.get $name) (local.get $len)
     (local.get $oflags) (i64.const {RIGHTS}) (i64.const {RIGHTS}) (i32.const 0) (i32.const 24)))
   (if (result i32) (local.get $errno)
     (then (i32.sub (i32.const 0) (local.get $errno)))
     (else (i32.load (i32.const 24)))))
 (func $write_fd (param $fd i32) (param $buf i32) (param $len i32)
   (i32.store (i32.const 0) (local.get $buf))
   (i32.store (i32.const 4) (local.get $len))
   (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16))))
 (func $write_file (param $name i32) (param $nlen i32) (param $buf i32) (param $len i32)
   (local $fd i32)
   (local.set $fd (call $open (local.get $name) (local.get $nlen) (i32.const 9)))  ;; CREAT|TRUNC
   (if (i32.lt_s (local.get $fd) (i32.const 0)) (then unreachable))
   (call $write_fd (local.get $fd) (local.get $buf) (local.get $len))
   (drop (call $fd_close (local.get $fd))))
 (func $read_file (param $name i32) (param $nlen i32) (param $buf i32) (param $max i32) (result i32)
   (local $fd i32)
   (local.set $fd (call $open (local.get $name) (local.get $nlen) (i32.const 0)))
   (if (i32.lt_s (local.get $fd) (i32.const 0)) (then (return (i32.const -1))))
   (i32.store (i32.const 0) (local.get $buf))
   (i32.store (i32.const 4) (local.get $max))
   (drop (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
   (drop (call $fd_close (local.get $fd)))
   (i32.load (i32.const 16)))
"""

NAMES = """
 (data (i32.const 256) "output")      ;; 6
 (data (i32.const 272) "checkpoint")  ;; 10
 (data (i32.const 288) "progress")    ;; 8
 (data (i32.const 304) "input")       ;; 5
"""


def module(body: str, memory: str = "1") -> str:
    return f'(module {IMPORTS} (memory (export "memory") {memory}) {NAMES} {HELPERS} {body})'


# Copies the input to the output behind "ok:", says hello on stdout (once without a newline).
HELLO = module("""
 (data (i32.const 512) "hello from wasm\\npartial line")
 (data (i32.const 600) "ok:")
 (data (i32.const 608) "1")
 (func (export "_start")
   (local $n i32)
   (call $write_fd (i32.const 1) (i32.const 512) (i32.const 28))
   (local.set $n (call $read_file (i32.const 304) (i32.const 5) (i32.const 1027) (i32.const 4000)))
   (i32.store8 (i32.const 1024) (i32.const 111))  ;; o
   (i32.store8 (i32.const 1025) (i32.const 107))  ;; k
   (i32.store8 (i32.const 1026) (i32.const 58))   ;; :
   (call $write_file (i32.const 288) (i32.const 8) (i32.const 608) (i32.const 1))
   (call $write_file (i32.const 256) (i32.const 6) (i32.const 1024) (i32.add (local.get $n) (i32.const 3))))
""")


def chain(segments: int, work: int) -> str:
    """A computation in ``segments`` runs of ``work`` steps of an LCG seeded by random_get: each
    run but the last writes its checkpoint (step, value) and exits 75."""
    return module(f"""
 (func (export "_start")
   (local $step i64) (local $value i64) (local $i i32)
   (if (i32.eq (call $read_file (i32.const 272) (i32.const 10) (i32.const 32) (i32.const 16)) (i32.const 16))
     (then (local.set $step (i64.load (i32.const 32))) (local.set $value (i64.load (i32.const 40))))
     (else (drop (call $random_get (i32.const 40) (i32.const 8)))
           (local.set $value (i64.load (i32.const 40)))))
   (loop $work
     (local.set $value (i64.add (i64.mul (local.get $value) (i64.const 6364136223846793005))
                                (i64.const 1442695040888963407)))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br_if $work (i32.lt_u (local.get $i) (i32.const {work}))))
   (local.set $step (i64.add (local.get $step) (i64.const 1)))
   (i64.store (i32.const 32) (local.get $step))
   (i64.store (i32.const 40) (local.get $value))
   (if (i64.lt_u (local.get $step) (i64.const {segments}))
     (then
       (call $write_file (i32.const 272) (i32.const 10) (i32.const 32) (i32.const 16))
       (call $proc_exit (i32.const 75))))
   (call $write_file (i32.const 256) (i32.const 6) (i32.const 32) (i32.const 16)))
""")


LOOP = module("""(func (export "_start") (loop $forever (br $forever)))""")

# Grows its memory a page at a time until refused, then fails as C's abort() does.
BOMB = module("""
 (func (export "_start")
   (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
   unreachable)
""")

# Tries paths outside the slot; writes each errno (i32) to the output.
ESCAPE = module("""
 (data (i32.const 512) "etc/passwd")   ;; 10: what libc asks for /etc/passwd under the "/" preopen
 (data (i32.const 528) "/etc/passwd")  ;; 11: the absolute path as such
 (data (i32.const 544) "../x")         ;; 4: create a file beside the slot
 (data (i32.const 560) "tmp/../../y")  ;; 11
 (func (export "_start")
   (i32.store (i32.const 1024) (call $open (i32.const 512) (i32.const 10) (i32.const 0)))
   (i32.store (i32.const 1028) (call $open (i32.const 528) (i32.const 11) (i32.const 0)))
   (i32.store (i32.const 1032) (call $open (i32.const 544) (i32.const 4) (i32.const 1)))
   (i32.store (i32.const 1036) (call $open (i32.const 560) (i32.const 11) (i32.const 1)))
   (call $write_file (i32.const 256) (i32.const 6) (i32.const 1024) (i32.const 16)))
""")

# Imports a function from outside WASI.
ENV_IMPORT = """(module (import "env" "foo" (func $foo)) (memory (export "memory") 1)
 (func (export "_start") (call $foo)))"""

# Reads the realtime and monotonic clocks and draws random bytes twice: 8+8+8+32+16 bytes out.
WORLD = module("""
 (func (export "_start")
   (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1024)))
   (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1032)))
   (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1040)))
   (drop (call $random_get (i32.const 1048) (i32.const 32)))
   (drop (call $random_get (i32.const 1080) (i32.const 16)))
   (call $write_file (i32.const 256) (i32.const 6) (i32.const 1024) (i32.const 72)))
""")


# NaNs whose bits differ between machines and engine settings, seen the three ways a module can
# see them (stored, reinterpreted, copysign), in f64 and f32: a signalling NaN with a payload made
# quiet by an addition, and 0/0 (negative on x86, positive on ARM). $nans writes them at 1024 (36
# bytes); a helper with parameters and locals of its own stores one of them.
NAN_BODY = """
 (data (i32.const 64) "\\01\\00\\00\\00\\00\\00\\f4\\7f")
 (data (i32.const 72) "\\01\\00\\a0\\7f")
 (func $store_f32 (param $at i32) (param $value f32) (local $unused f64)
   (f32.store (local.get $at) (local.get $value)))
 (func $nans
   (f64.store (i32.const 1024) (f64.add (f64.load (i32.const 64)) (f64.const 0)))
   (i64.store (i32.const 1032) (i64.reinterpret_f64 (f64.add (f64.load (i32.const 64)) (f64.const 0))))
   (f64.store (i32.const 1040) (f64.copysign (f64.const 1) (f64.div (f64.const 0) (f64.const 0))))
   (call $store_f32 (i32.const 1048) (f32.add (f32.load (i32.const 72)) (f32.const 0)))
   (i32.store (i32.const 1052) (i32.reinterpret_f32 (f32.div (f32.const 0) (f32.const 0))))
   (f32.store (i32.const 1056) (f32.copysign (f32.const 1) (f32.div (f32.const 0) (f32.const 0)))))
"""
NANS = module(
    NAN_BODY
    + """
 (func (export "_start")
   (call $nans)
   (call $write_file (i32.const 256) (i32.const 6) (i32.const 1024) (i32.const 36)))
"""
)
CANONICAL_NANS = (
    bytes.fromhex("000000000000f87f") * 2
    + bytes.fromhex("000000000000f03f")
    + bytes.fromhex("0000c07f") * 2
    + bytes.fromhex("0000803f")
)  # canonical NaNs, 1.0 and 1.0f, little-endian


def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def manifest(entrypoint: str = "app.wasm", memory_bytes: int = 16 * MiB, **change: object) -> dict:
    data: dict = {
        "api": 1,
        "runtime": "wasm",
        "entrypoint": entrypoint,
        "wasi": "preview1",
        "deterministic": True,
        "memory_bytes": memory_bytes,
    }
    data.update(change)
    return data


def bundle(wat: str, memory_bytes: int = 16 * MiB) -> bytes:
    """A wasm app's bundle: the module and its manifest."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tessera-app.json", json.dumps(manifest(memory_bytes=memory_bytes)))
        archive.writestr("app.wasm", wasm(wat))
    return buffer.getvalue()


def make_slot(
    folder: Path,
    wat: str | bytes,
    *,
    input: bytes = b"",
    fuel_bound: int = 10**10,
    memory_bytes: int = 16 * MiB,
    cache: Path | None = None,
) -> Path:
    """A slot with its input and the runner's settings, for ``wat`` compiled beside it (bytes:
    the module itself)."""
    slot = folder / "slot"
    slot.mkdir(parents=True, exist_ok=True)
    (slot / "input").write_bytes(input)
    module_path = folder / "app.wasm"
    module_path.write_bytes(wat if isinstance(wat, bytes) else wasm(wat))
    settings = Settings(
        module=module_path,
        cache_dir=cache or folder / "compiled",
        fuel_bound=fuel_bound,
        memory_bytes=memory_bytes,
        input_sha256=hashlib.sha256(input).hexdigest(),
    )
    (slot / SETTINGS_NAME).write_text(json.dumps(settings.to_json()))
    return slot


def run_runner(slot: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """The runner in ``slot`` as the sandbox starts it (without the sandbox's limits)."""
    return subprocess.run(
        [sys.executable, "-E", "-s", str(RUNNER)],
        cwd=slot,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        timeout=timeout,
    )
