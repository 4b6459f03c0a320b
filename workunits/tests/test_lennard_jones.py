"""Lennard-Jones MD as WebAssembly: the sweep's checks, the module run under wasmtime against
an independent Python simulation, bit for bit, checkpoints that change nothing (not even the
fuel), a reproducible build, and the bundle the client gets."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import wasmtime
from tessera_client import wasm_nan
from tessera_client.sandbox import AppProcess, Limits

import workunits
from coordinator.work import bundles
from workunits import lennard_jones, wasm_build
from workunits.interface import Manifest, check_app
from workunits.lennard_jones import assimilate, compare, preview, split
from workunits.lennard_jones.reference import simulate

SWEEP = {
    "n_cells": 3,
    "densities": [0.5, 0.8],
    "temperatures": [1.5, 2.0],
    "dt": 0.005,
    "equilibration_steps": 100,
    "production_steps": 200,
    "seed": 7,
}
GAS = (
    "n_cells 2\ndensity 0.25\ntemperature 2.0\ndt 0.005\n"
    "equilibration_steps 95\nproduction_steps 105\nseed 99\n"
)
LIQUID = (
    "n_cells 3\ndensity 0.8\ntemperature 1.2\ndt 0.004\nequilibration_steps 30\nproduction_steps 30\nseed 5\n"
)


@pytest.fixture(scope="session")
def module() -> bytes:
    """Built once per session (and cached under var/wasm/ between sessions)."""
    return wasm_build.build_app_module(lennard_jones)


def run_module(
    module: bytes, slot: Path, *, stop_after: int = 0, bound: int = 10**12
) -> list[tuple[int, int]]:
    """Run the module on ``slot`` as the client does: again while it exits with 75 (at most
    ``stop_after`` runs when that is set). Each run's (exit code, fuel)."""
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    compiled = wasmtime.Module(engine, module)
    runs: list[tuple[int, int]] = []
    while not runs or (runs[-1][0] == 75 and len(runs) != stop_after):
        store = wasmtime.Store(engine)
        store.set_fuel(bound)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["app"]
        wasi.env = [["TESSERA_API", "1"], ["TESSERA_INPUT", "/input"], ["TESSERA_OUTPUT", "/output"]]
        wasi.preopen_dir(str(slot), "/")
        wasi.stderr_file = str(slot / "stderr.txt")
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(store, compiled)
        try:
            instance.exports(store)["_start"](store)
            code = 0
        except wasmtime.ExitTrap as exit:
            code = exit.code
        runs.append((code, bound - store.get_fuel()))
    return runs


def slot_with(tmp_path: Path, name: str, text: str) -> Path:
    slot = tmp_path / name
    slot.mkdir()
    (slot / "input").write_text(text)
    return slot


# --- The module under wasmtime.


@pytest.mark.parametrize("text", [GAS, LIQUID], ids=["gas", "liquid"])
def test_the_module_computes_what_the_python_simulation_does_to_the_bit(module, tmp_path, text):
    slot = slot_with(tmp_path, "slot", text)

    runs = run_module(module, slot)

    assert runs[-1][0] == 0, (slot / "stderr.txt").read_text()
    assert (slot / "output").read_bytes() == simulate(text)
    assert (slot / "progress").read_text() == "1"


def test_an_interrupted_unit_gives_the_same_bytes_and_burns_the_same_fuel(module, tmp_path):
    text = GAS + "checkpoint_steps 40\n"
    whole = slot_with(tmp_path, "whole", text)
    runs = run_module(module, whole)
    interrupted = slot_with(tmp_path, "interrupted", text)

    first = run_module(module, interrupted, stop_after=1)
    assert first[0][0] == 75 and (interrupted / "progress").read_text() == "0.2000"
    rest = run_module(module, interrupted)  # a fresh engine, resuming from the checkpoint

    assert [code for code, _ in runs] == [75, 75, 75, 75, 0]
    assert (interrupted / "output").read_bytes() == (whole / "output").read_bytes() == simulate(GAS)
    assert sum(fuel for _, fuel in first + rest) == sum(fuel for _, fuel in runs)
    assert [fuel for _, fuel in first + rest] == [fuel for _, fuel in runs]


def test_a_unit_past_its_fuel_bound_is_stopped(module, tmp_path):
    slot = slot_with(tmp_path, "slot", GAS)

    with pytest.raises(wasmtime.Trap, match="fuel"):
        run_module(module, slot, bound=1_000_000)


def test_a_bad_input_fails_with_a_message(module, tmp_path):
    slot = slot_with(tmp_path, "slot", GAS.replace("density 0.25", "density 0.8"))

    assert run_module(module, slot)[-1][0] == 2
    assert "twice the cutoff" in (slot / "stderr.txt").read_text()
    assert not (slot / "output").exists()


def test_the_largest_unit_the_splitter_allows_fits_under_the_fuel_bound_twice(module, tmp_path):
    """The costliest unit: 256 particles at the densest, as many steps as the splitter lets
    through (fewer particles cost more fuel per pair, but the step limits keep their units
    smaller; more cost less per pair). Its first 300 steps, extrapolated; the whole unit,
    measured once, burns 3.25e11 fuel in 53 s."""
    pairs = 256 * 255 // 2
    steps = lennard_jones.MAX_PAIR_STEPS // pairs
    largest = {**SWEEP, "n_cells": 4, "densities": [1.2], "temperatures": [0.1], "equilibration_steps": 0}
    assert len(list(split({**largest, "production_steps": steps}))) == 1
    with pytest.raises(ValueError, match="pair interactions"):
        next(split({**largest, "production_steps": steps + 1}))
    text = next(split({**largest, "production_steps": 300})).decode()
    slot = slot_with(tmp_path, "slot", text + "checkpoint_steps 1000\n")

    fuel = sum(fuel for _, fuel in run_module(module, slot))

    assert 2 * fuel / 300 * steps <= lennard_jones.MANIFEST.fuel_bound


# --- The build and the bundle.


def test_the_same_source_builds_the_same_module_wherever_it_is_built(module, tmp_path):
    source = wasm_build.app_source(lennard_jones)
    copies = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        copies.append(shutil.copy(source, tmp_path / name / source.name))

    built = [wasm_build.build_wasm(Path(copy), cache=None) for copy in copies]

    assert hashlib.sha256(built[0]).hexdigest() == hashlib.sha256(built[1]).hexdigest()
    assert built[0] == module and module.startswith(b"\x00asm")
    assert str(tmp_path).encode() not in module and b"tessera-wasm-" not in module


def test_the_module_is_built_with_its_nan_guards_and_published_with_them(module):
    source = wasm_build.app_source(lennard_jones)
    plain = wasm_build.compile_wasm(source.read_bytes(), source.name, nan_guards=False)

    assert wasm_nan.check(module) and not wasm_nan.is_marked(plain)
    assert wasm_nan.guard(plain) == module
    # A module given to publishing without its guards gets them; one that claims them must have them.
    given = zipfile.ZipFile(io.BytesIO(bundles.build_wasm_bundle(lennard_jones, plain)))
    assert given.read("lennard_jones.wasm") == module
    with pytest.raises(ValueError, match="not every float store, reinterpretation or copysign is guarded"):
        bundles.build_wasm_bundle(lennard_jones, plain + wasm_nan.marker_section())


ELF_MACHINE = {"x86_64-pc-linux-gnu": 0x3E, "aarch64-unknown-linux-gnu": 0xB7}


@pytest.mark.parametrize("platform", sorted(ELF_MACHINE))
def test_the_native_versions_are_static_executables_for_their_platforms(platform):
    bundle = zipfile.ZipFile(io.BytesIO(bundles.build_native_bundle(lennard_jones, platform)))
    manifest = json.loads(bundle.read("tessera-app.json"))
    binary = bundle.read(manifest["entrypoint"])

    assert manifest == {"api": 1, "runtime": "native", "entrypoint": "bin/lennard_jones"}
    assert binary[:4] == b"\x7fELF" and binary[18] == ELF_MACHINE[platform]
    assert b"ld-linux" not in binary  # static: no dynamic loader to find on the volunteer's Linux


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the x86-64 Linux native version runs only on x86-64 Linux",
)
def test_the_native_version_writes_the_modules_bytes_through_the_clients_sandbox(module, tmp_path):
    """The native app version, run as the client runs a native app (its own slot, the sandbox's
    limits, no exit 75: it goes on after each checkpoint), gives the bytes the module gives."""
    bundle = zipfile.ZipFile(io.BytesIO(bundles.build_native_bundle(lennard_jones, "x86_64-pc-linux-gnu")))
    binary = tmp_path / "app" / "bin" / "lennard_jones"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(bundle.read("bin/lennard_jones"))
    binary.chmod(0o555)
    text = GAS + "checkpoint_steps 50\n"
    native_slot, wasm_slot = slot_with(tmp_path, "native", text), slot_with(tmp_path, "wasm", text)
    limits = Limits(
        cpu_seconds=60,
        memory_bytes=256 << 20,
        file_bytes=16 << 20,
        processes=8,
        wall_deadline=time.time() + 60,
    )

    app = AppProcess.start(entrypoint=binary, slot=native_slot, limits=limits, native=True)
    outcome = app.wait(60)
    runs = run_module(module, wasm_slot)

    assert outcome is not None and outcome.status == "success", outcome
    assert (native_slot / "output").read_bytes() == (wasm_slot / "output").read_bytes()
    assert (native_slot / "checkpoint").is_file()  # it checkpointed, and went on
    assert len(runs) == 4 and (native_slot / "output").read_bytes() == simulate(GAS)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on PATH for the native build")
def test_the_native_build_computes_the_same_bytes(tmp_path):
    binary = wasm_build.build_native(wasm_build.app_source(lennard_jones), tmp_path / "bin" / "lennard_jones")
    slot = slot_with(tmp_path, "slot", GAS + "checkpoint_steps 50\n")

    assert wasm_build.run_native(binary, slot) == (0, 4)
    assert (slot / "output").read_bytes() == simulate(GAS)


def test_the_bundle_holds_the_module_and_the_manifest_the_client_reads(module):
    bundle = bundles.build_wasm_bundle(lennard_jones, module)

    archive = zipfile.ZipFile(io.BytesIO(bundle))
    assert sorted(archive.namelist()) == ["lennard_jones.wasm", "tessera-app.json"]
    assert archive.read("lennard_jones.wasm") == module
    assert archive.read("tessera-app.json") == (
        b'{"api": 1, "runtime": "wasm", "entrypoint": "lennard_jones.wasm", "wasi": "preview1", '
        b'"deterministic": true, "memory_bytes": 16777216}'
    )
    assert bundles.build_app_bundle(lennard_jones) == bundle  # built from the source, the same bytes


@pytest.mark.parametrize(
    ("wat", "named"),
    [
        ('(module (import "env" "foo" (func)))', r"env\.foo \(func\)"),
        ('(module (import "wasi_snapshot_preview1" "memory" (memory 1)))', "wasi_snapshot_preview1.memory"),
        ('(module (memory (export "memory") 300))', "memory_bytes"),
        ("(module", "not a WebAssembly module"),
    ],
)
def test_a_module_the_client_would_refuse_is_not_bundled(wat, named):
    try:
        module = wasmtime.wat2wasm(wat)
    except wasmtime.WasmtimeError:
        module = b"\x00asm broken"
    with pytest.raises(ValueError, match=named):
        bundles.check_wasm_module(module, memory_bytes=16 * 1024 * 1024)


def test_a_wasm_app_needs_no_compute_but_a_fuel_bound_and_its_source():
    check_app(workunits.load("lennard_jones"))
    assert not hasattr(lennard_jones, "compute") and lennard_jones.MANIFEST.entrypoint == "lennard_jones.wasm"
    assert workunits.load("montecarlo_pi").MANIFEST.runtime == "python"
    wasm = {"name": "x", "version": 1, "title": "x", "runtime": "wasm", "wasm_source": "src/x.c"}
    with pytest.raises(ValueError, match="fuel_bound"):
        Manifest(**wasm)
    with pytest.raises(ValueError, match="compares bitwise"):
        Manifest(**wasm, fuel_bound=10, compare="tolerance")
    with pytest.raises(ValueError, match="wasm_source"):
        Manifest(**{**wasm, "wasm_source": "../x.c"}, fuel_bound=10)
    with pytest.raises(ValueError, match="runtime"):
        Manifest(name="x", version=1, title="x", runtime="java")


# --- The splitter, the comparison, the table and the picture.


def test_each_state_point_is_a_unit_an_isotherm_at_a_time():
    units = [dict(line.split(" ") for line in data.decode().splitlines()) for data in split(SWEEP)]

    assert [(u["temperature"], u["density"]) for u in units] == [
        ("1.5", "0.5"), ("1.5", "0.8"), ("2.0", "0.5"), ("2.0", "0.8"),
    ]  # fmt: skip
    assert {u["n_cells"] for u in units} == {"3"} and {u["dt"] for u in units} == {"0.005"}
    assert len({u["seed"] for u in units}) == 4
    assert next(split(SWEEP)) == next(split(dict(SWEEP))), "the same parameters, the same inputs"


def test_listed_points_are_units_in_their_order():
    grid = {k: v for k, v in SWEEP.items() if k not in ("densities", "temperatures")}
    points = [{"density": 0.8, "temperature": 2.0}, {"density": 0.3, "temperature": 1.0}]

    units = [data.decode() for data in split({**grid, "points": points})]

    assert ["density 0.8\ntemperature 2.0" in units[0], "density 0.3\ntemperature 1.0" in units[1]] == [
        True
    ] * 2


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"n_cells": 1}, "n_cells"),
        ({"n_cells": 2}, r"densities is 0\.5: with n_cells 2 the box is 4\.000 sigma"),
        ({"densities": []}, "densities"),
        ({"densities": [0.5, 2]}, "densities"),
        ({"temperatures": [0]}, "temperatures"),
        ({"dt": 0.1}, "dt"),
        ({"dt": "0.005"}, "dt"),
        ({"equilibration_steps": 1.5}, "equilibration_steps"),
        ({"production_steps": 0}, "production_steps"),
        ({"seed": -1}, "seed"),
        ({"pressure": 1}, "pressure"),
        ({"n_cells": 8, "production_steps": 5000}, r"n_cells 8 \(2048 particles\) and 5100 steps"),
        ({"points": [{"density": 0.5, "temperature": 1}]}, "either points or"),
    ],
)
def test_bad_parameters_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        next(split({**SWEEP, **change}))


def test_bad_points_are_refused_by_their_place():
    grid = {k: v for k, v in SWEEP.items() if k not in ("densities", "temperatures")}
    points = [{"density": 0.5, "temperature": 1.0}, {"density": 0.9, "temperature": 1.0}]

    with pytest.raises(ValueError, match=r"points\[1\]\.density is 0\.9"):
        list(split({**grid, "points": points}))
    with pytest.raises(ValueError, match=r"points\[0\] must be an object"):
        list(split({**grid, "points": [{"density": 0.5}]}))


def test_outputs_agree_only_when_they_are_the_same_bytes():
    output = simulate(GAS)

    assert compare(output, bytes(output))
    assert not compare(output, output.replace(b'"seed": 99', b'"seed": 98'))


def fake_output(temperature: float, density: float, pressure: float | None) -> bytes:
    numbers = dict.fromkeys(lennard_jones.COLUMNS, 1.25)
    numbers.update(temperature=temperature, density=density, pressure=pressure, n_particles=108)
    return json.dumps(numbers, sort_keys=True).encode()


def test_the_batch_result_is_a_table_of_the_state_points(module, tmp_path):
    slot = slot_with(tmp_path, "slot", GAS)
    run_module(module, slot)
    outputs = [(0, (slot / "output").read_bytes()), (1, fake_output(2.0, 0.3, None))]

    table = assimilate(outputs).decode().splitlines()

    assert table[0] == ",".join(lennard_jones.COLUMNS) and len(table) == 3
    first = dict(zip(lennard_jones.COLUMNS, table[1].split(",")))
    assert (first["temperature"], first["density"], first["n_particles"]) == ("2", "0.25", "32")
    assert float(first["pressure"]) == json.loads(outputs[0][1])["pressure"]  # to the last bit
    assert table[2].split(",")[lennard_jones.COLUMNS.index("pressure")] == ""  # a diverged run


def read_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height, zlib.decompress(data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8])


def test_the_preview_draws_each_isotherm_in_its_colour():
    from workunits.lennard_jones import plot

    outputs = [(0, fake_output(1.5, 0.5, 0.4)), (1, fake_output(1.5, 0.8, 2.0))]

    width, height, raw = read_png(preview(SWEEP, outputs))

    assert (width, height) == (plot.WIDTH, plot.HEIGHT) and len(raw) == height * (1 + 3 * width)
    pixels = b"".join(raw[y * (1 + 3 * width) + 1 : (y + 1) * (1 + 3 * width)] for y in range(height))
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), 3)}
    assert plot.colour(0, 2) in colours  # the isotherm at 1.5, done
    assert plot.colour(1, 2) not in colours  # 2.0 is not done yet
    assert read_png(preview(SWEEP, []))[:2] == (width, height)
