"""NaN guards (tessera_client.wasm_nan): a guarded module shows the same NaN bits on every machine
with wasmtime's canonicalization off, the check finds every missing guard, the runner trusts
only a module the check passes, and modules the pass cannot read are left for canonicalization."""

from __future__ import annotations

import hashlib
import struct

import pytest
import wasmtime
from wasm_apps import CANONICAL_NANS, NAN_BODY, NANS, make_slot, run_runner, wasm

from tessera_client import _wasm_world, wasm_nan
from tessera_client._wasm_run import engine_settings

MiB = 1024 * 1024
# A plain (non-WASI) module: $nans writes its 36 bytes at 1024 when "run" is called.
PLAIN_NANS = f'(module (memory (export "memory") 1) {NAN_BODY} (func (export "run") (call $nans)))'

# Most of the instruction set's immediates, in a function that computes a number from them.
EVERY_KIND = """
(module
  (type $binary (func (param f64 f64) (result f64)))
  (type $pair (func (result i32 f64)))
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $add $mul)
  (global $g (mut f64) (f64.const 0.5))
  (func $add (type $binary) (f64.add (local.get 0) (local.get 1)))
  (func $mul (type $binary) (f64.mul (local.get 0) (local.get 1)))
  (func $pair (type $pair) (i32.const 3) (f64.const 2.25))
  (func (export "run") (param $n i32) (result f64)
    (local $i i32) (local $acc f64) (local $f f32) (local $r funcref)
    (local.set $r (ref.func $add))
    (drop (ref.is_null (local.get $r)))
    (drop (ref.is_null (ref.null func)))
    (memory.fill (i32.const 2048) (i32.const 7) (i32.const 64))
    (memory.copy (i32.const 4096) (i32.const 2048) (i32.const 64))
    (local.set $f (f32.const -1.5))
    (f32.store offset=8 (i32.const 4096) (local.get $f))
    (block $done
      (loop $again
        (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
        (block $two (block $one (block $zero
          (br_table $zero $one $two (i32.rem_u (local.get $i) (i32.const 3))))
          (local.set $acc (call_indirect (type $binary) (local.get $acc) (f64.const 1.25) (i32.const 0)))
          (br $two))
          (local.set $acc
            (call_indirect (type $binary) (local.get $acc) (f64.const 1.0009765625) (i32.const 1))))
        (local.set $acc (select (result f64) (local.get $acc) (f64.neg (local.get $acc))
          (f64.ge (local.get $acc) (f64.const 0))))
        (f64.store offset=16 align=8 (i32.const 4096) (local.get $acc))
        (i64.store (i32.const 4104) (i64.reinterpret_f64 (f64.load offset=16 (i32.const 4096))))
        (global.set $g (f64.copysign (global.get $g) (f64.load (i32.const 4104))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))
    (block (type $pair) (call $pair)) (drop) (drop)
    (f64.add (f64.add (local.get $acc) (global.get $g))
      (f64.add (f64.convert_i32_s (i32.trunc_sat_f32_s (f32.load offset=8 (i32.const 4096))))
        (f64.convert_i64_s (i64.extend32_s (i64.const -5)))))))
"""

SIMD = """
(module (memory (export "memory") 1)
  (func (export "run")
    (v128.store (i32.const 0) (f64x2.add (v128.const f64x2 1 2) (v128.const f64x2 3 4)))))
"""


def run_plain(module: bytes, *args: object, canonicalize: bool) -> tuple[object, bytes]:
    """Call "run" of a plain module with or without wasmtime's NaN canonicalization: its result
    and the bytes at 1024..1060."""
    config = wasmtime.Config()
    config.cranelift_nan_canonicalization = canonicalize
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, module), [])
    result = instance.exports(store)["run"](store, *args)  # type: ignore[operator]
    memory = instance.exports(store)["memory"]
    return result, bytes(memory.read(store, 1024, 1060))  # type: ignore[union-attr]


def test_guarded_nans_have_the_canonical_bits_without_wasmtimes_canonicalization():
    plain = wasm(PLAIN_NANS)
    guarded = wasm_nan.guard(plain)

    _, unguarded_bits = run_plain(plain, canonicalize=False)
    _, guarded_bits = run_plain(guarded, canonicalize=False)
    _, canonicalized_bits = run_plain(plain, canonicalize=True)

    # The payload of a quieted signalling NaN survives an addition on x86 and ARM alike.
    assert unguarded_bits[:8] != CANONICAL_NANS[:8]
    assert unguarded_bits[:8] == struct.pack("<Q", 0x7FFC000000000001)
    assert guarded_bits == CANONICAL_NANS
    assert canonicalized_bits == CANONICAL_NANS


def test_a_guarded_module_computes_what_the_module_computed():
    plain = wasm(EVERY_KIND)
    guarded = wasm_nan.guard(plain)

    assert guarded != plain and wasm_nan.check(guarded)
    for n in (0, 1, 7, 200):
        expected, _ = run_plain(plain, n, canonicalize=True)
        assert run_plain(guarded, n, canonicalize=False)[0] == expected


def test_a_copied_nan_keeps_its_bits_and_needs_no_guard():
    copy = """(module (memory (export "memory") 1) (data (i32.const 64) "\\01\\00\\00\\00\\00\\00\\f4\\7f")
      (func (export "run") (f64.store (i32.const 1024) (f64.load (i32.const 64)))))"""
    plain = wasm(copy)
    guarded = wasm_nan.guard(plain)

    assert len(guarded) == len(plain + wasm_nan.marker_section())  # the body as it was
    assert wasm_nan.check(guarded)
    assert run_plain(guarded, canonicalize=False)[1][:8] == struct.pack("<Q", 0x7FF4000000000001)


def test_the_pass_is_idempotent_and_marks_what_it_guards():
    plain = wasm(PLAIN_NANS)
    guarded = wasm_nan.guard(plain)

    assert not wasm_nan.is_marked(plain) and not wasm_nan.check(plain)
    assert wasm_nan.is_marked(guarded) and wasm_nan.check(guarded)
    assert wasm_nan.guard(guarded) == guarded
    assert wasm_nan.guarded_if_possible(plain) == guarded


def test_a_missing_or_altered_guard_fails_the_check():
    plain = wasm(PLAIN_NANS)
    guarded = wasm_nan.guard(plain)
    marker_only = plain + wasm_nan.marker_section()
    canonical = bytes([0x44]) + struct.pack("<Q", 0x7FF8000000000000)
    altered = guarded.replace(canonical, bytes([0x44]) + struct.pack("<Q", 0x7FF8000000000001), 1)

    assert wasm_nan.is_marked(marker_only) and not wasm_nan.check(marker_only)
    assert altered != guarded and wasm_nan.is_marked(altered) and not wasm_nan.check(altered)
    wasmtime.Module(wasmtime.Engine(), altered)  # still valid WebAssembly: only the check notices


def test_modules_the_pass_cannot_read_are_left_for_canonicalization():
    simd = wasm(SIMD)

    with pytest.raises(wasm_nan.Unsupported, match="0xfd"):
        wasm_nan.guard(simd)
    assert wasm_nan.guarded_if_possible(simd) == simd
    assert not wasm_nan.check(simd)
    with pytest.raises(wasm_nan.Unsupported, match="not a WebAssembly"):
        wasm_nan.guard(b"\0asm\x02\0\0\0")
    assert not wasm_nan.check(wasm(PLAIN_NANS)[:-5])  # cut short


def test_the_runner_runs_a_guarded_module_without_canonicalization(tmp_path):
    guarded = wasm_nan.guard(wasm(NANS))
    slot = make_slot(tmp_path, guarded)

    done = run_runner(slot)

    assert done.returncode == 0, done.stderr
    assert (slot / "output").read_bytes() == CANONICAL_NANS
    # Run outside the sandbox, the runner has room for the guard region.
    settings = engine_settings(16 * MiB, nan_guarded=True, guard_region=True)
    key = _wasm_world.cache_key(_sha256(guarded), settings)
    assert [path.name.split("-")[0] for path in (tmp_path / "compiled").iterdir()] == [key]


def test_the_runner_refuses_a_module_marked_but_not_guarded(tmp_path):
    slot = make_slot(tmp_path, wasm(NANS) + wasm_nan.marker_section())

    done = run_runner(slot)

    assert done.returncode != 0
    assert b"is marked tessera.nan-guard but not every float store" in done.stderr
    assert not (slot / "output").exists()
    assert not list((tmp_path / "compiled").glob("*.cwasm"))


def test_an_unguarded_module_runs_with_canonicalization(tmp_path):
    slot = make_slot(tmp_path, NANS)

    assert run_runner(slot).returncode == 0

    assert (slot / "output").read_bytes() == CANONICAL_NANS
    key = _wasm_world.cache_key(_sha256(wasm(NANS)), engine_settings(16 * MiB, guard_region=True))
    assert [path.name.split("-")[0] for path in (tmp_path / "compiled").iterdir()] == [key]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
