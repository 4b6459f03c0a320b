"""WebAssembly apps benchmark: the Lennard-Jones kernel as wasm, as native code and as Python.

Run ``python -m bench.wasm`` (``--quick`` for a short run, ``--help`` for the knobs).

One unit of the ``lennard_jones`` app, made by the app's own ``split`` from its example's
settings (500 particles, here at density 0.8 and temperature 2.0, 1,000 + 4,000 steps), is
computed three ways, in one run, one after the other in each of ``--reps`` rounds; the
figures are medians:

* **wasm**: the module ``workunits.wasm_build`` builds, run by the client's own runner script
  (``tessera_client/_wasm_run.py``) in a scratch slot as a task runs it: the sandbox's command
  line (``python -E -s``) and environment, the slot as working folder, the settings in
  ``.tessera-wasm.json``, the app's fuel bound with fuel metering on, the compiled module from
  the client's cache (an untimed first run fills it), and a checkpoint every 1e8 pair
  interactions (exit 75, recorded, a fresh instance), all in one process. Not through the
  sandbox's launcher itself, which drops to SCHED_IDLE: on a shared machine that would time
  the other load rather than the module.
* **native**: the same C built by the system's gcc -O2 (``build_native``) and run on its own
  slot again while it exits 75 (``run_native``): it checkpoints and restarts as often.
* **python**: ``simulate`` from ``workunits/lennard_jones/reference.py``, the independent
  pure-Python simulation the tests hold the module to, bit for bit. It is far slower, so it
  runs the same system (same particles, density, temperature and seed) for a few steps: its
  time per MD step is the time of a run of ``1 + --python-steps`` steps less that of a
  one-step run, over ``--python-steps`` (so its set-up, the lattice, the velocities and the
  first forces, drops out). ``python_seconds`` is that time per step times the unit's steps,
  an extrapolation, not a measurement; ``speedup_over_python`` is Python's time per step over
  wasm's (wasm's whole unit over its steps, set-up and restarts included).

Every round checks that wasm and native wrote the same bytes, and the Python runs give the same
bytes as the runner on the same short inputs; the bench stops if not.

``start_ms_cached``: the runner's own start in this process, timed around its own functions:
``read_settings`` (the slot's settings), ``ModuleRunner`` (the engine, the cached module
deserialized, the linker) and ``ModuleRunner.run`` (store, WASI, instantiation, ``_start``), on
a unit of 32 particles and one step whose own work is under 0.1 ms (``start_probe_fuel``).
``process_start_ms_cached`` is the whole runner process on that unit, Python and the wasmtime
import included; ``process_start_ms_uncached`` the first one, which compiled the module.

The profile (``--profile-reps`` rounds) shows where wasm's time goes beyond native's: the same
unit in this process, run by a loop like the runner's (a fresh store and instance per run, again
while it exits 75), with the runner's engine settings as they are (``wasm_seconds_in_process``),
then without one of what they pay for safety and sameness: fuel metering
(``wasm_seconds_no_fuel``); with bounds checked in code (``wasm_seconds_bounds_in_code``: the
memory reserved only up to its limit, as the runner does when a tight address-space limit
leaves no room for its 4 GiB reservation and guard region). Then the compiler's module without
NaN guards: with wasmtime's NaN canonicalization instead (``wasm_seconds_canonicalization``),
with neither (``wasm_seconds_no_nan_guards``: what the guards cost), also without fuel
(``wasm_seconds_no_fuel_no_nan``), and canonicalizing with bounds checked in code
(``wasm_seconds_before_guards``: how the runner ran every module before the guards and the
guard region). Each must write the runner's bytes.

It prints a table and ends with one line of JSON (``wasm_seconds``, ``native_seconds``,
``python_seconds``, ``wasm_to_native``, ``speedup_over_python``, ``start_ms_cached``, ``fuel``,
``fuel_per_second``, the targets and whether they were met, ``cpus``, ``loadavg``, …). It
touches only its own scratch folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from tessera_client import _wasm_world as world
from tessera_client import wasm_nan
from tessera_client._wasm_run import WASI, WASI_ENV, ModuleRunner, engine_settings, make_engine
from tessera_client._wasm_state import (
    EXIT_CHECKPOINT,
    SETTINGS_NAME,
    STATE_NAME,
    RunState,
    Settings,
    read_settings,
)
from tessera_client.app_contract import STDERR_NAME, STDOUT_NAME, clean_env
from tessera_client.wasm_tasks import RUNNER

from bench.cpu import machine_cpu
from bench.report import Table, print_json_line, print_pairs
from workunits import lennard_jones, wasm_build
from workunits.lennard_jones.reference import simulate

TARGETS = {"wasm_to_native": 0.6, "speedup_over_python": 20.0, "start_ms_cached": 50.0}
PROBE = {"n_cells": 2, "points": [{"density": 0.25, "temperature": 2.0}], "dt": 0.005, "seed": 1}
NO_FUEL = {"consume_fuel": False}
NO_CANONICALIZATION = {"cranelift_nan_canonicalization": False}
WITH_CANONICALIZATION = {"cranelift_nan_canonicalization": True}
# Each variant of the profile: the module it runs (the published one, with NaN guards, or the
# compiler's own, without), whether its memory has the runner's 4 GiB reservation and guard
# region (else bounds are checked in code, as under a tight address-space limit), and how its
# engine differs from the runner's for that module.
VARIANTS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "in_process": ("guarded", True, {}),
    "no_fuel": ("guarded", True, NO_FUEL),
    "bounds_in_code": ("guarded", False, {}),
    "canonicalization": ("plain", True, WITH_CANONICALIZATION),
    "no_nan_guards": ("plain", True, NO_CANONICALIZATION),
    "no_fuel_no_nan": ("plain", True, {**NO_FUEL, **NO_CANONICALIZATION}),
    "before_guards": ("plain", False, WITH_CANONICALIZATION),
}


# The knobs' values for a full run and for --quick (a knob given on the command line wins).
FULL = {
    "reps": 5,
    "profile_reps": 3,
    "python_steps": 12,
    "starts": 20,
    "equilibration_steps": lennard_jones.MANIFEST.example_parameters["equilibration_steps"],
    "production_steps": lennard_jones.MANIFEST.example_parameters["production_steps"],
}
QUICK = {**FULL, "reps": 3, "profile_reps": 1, "python_steps": 4, "starts": 10}
QUICK.update(equilibration_steps=250, production_steps=1000)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for knob, what in (
        ("reps", "rounds of wasm, native and Python"),
        ("profile-reps", "rounds of the profile (0: none)"),
        ("python-steps", "MD steps Python is timed over"),
        ("starts", "starts of the cached module timed"),
        ("equilibration-steps", "the unit's equilibration steps"),
        ("production-steps", "the unit's production steps"),
    ):
        name = knob.replace("-", "_")
        parser.add_argument(
            f"--{knob}", type=int, help=f"{what} (default {FULL[name]}, --quick {QUICK[name]})"
        )
    parser.add_argument("--density", type=float, default=0.8, help="the unit's state point (default 0.8)")
    parser.add_argument("--temperature", type=float, default=2.0, help="(default 2.0)")
    parser.add_argument("--quick", action="store_true", help="1,250 steps, 3 rounds, a 1-round profile")
    opts = parser.parse_args(argv)
    for name, value in (QUICK if opts.quick else FULL).items():
        if getattr(opts, name) is None:
            setattr(opts, name, value)
    if opts.python_steps < 2:
        parser.error("--python-steps must be at least 2")
    return opts


def unit_text(opts: argparse.Namespace, equilibration: int, production: int) -> bytes:
    """The app's own unit for the chosen state point (the example's cells, dt and seed)."""
    example = lennard_jones.MANIFEST.example_parameters
    point = {"density": opts.density, "temperature": opts.temperature}
    parameters = {key: example[key] for key in ("n_cells", "dt", "seed")}
    parameters.update(points=[point], equilibration_steps=equilibration, production_steps=production)
    return next(lennard_jones.split(parameters))


def probe_text() -> bytes:
    return next(lennard_jones.split({**PROBE, "equilibration_steps": 0, "production_steps": 1}))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Run:
    """One computation of a unit: its wall and CPU seconds, output, fuel and number of runs."""

    seconds: float
    cpu: float
    output: bytes
    fuel: int = 0
    runs: int = 1


@dataclass(frozen=True)
class Scratch:
    """The bench's folder: the module as an installed app holds it, its cache, the native build."""

    root: Path

    @property
    def module(self) -> Path:
        return self.root / "app" / "lennard_jones.wasm"

    def cache(self, variant: str = "") -> Path:
        return self.root / (f"compiled-{variant}" if variant else "compiled")

    @property
    def plain_module(self) -> Path:
        """The module as the compiler made it, without NaN guards (for the profile)."""
        return self.root / "plain" / "lennard_jones.wasm"

    @property
    def native(self) -> Path:
        return self.root / "bin" / "lennard_jones"

    def build(self) -> None:
        self.module.parent.mkdir(parents=True)
        self.module.write_bytes(wasm_build.build_app_module(lennard_jones))
        if not wasm_nan.check(self.module.read_bytes()):
            raise SystemExit("the app's module came out without its NaN guards")
        source = wasm_build.app_source(lennard_jones)
        self.plain_module.parent.mkdir(parents=True)
        plain = wasm_build.compile_wasm(source.read_bytes(), source.name, nan_guards=False)
        self.plain_module.write_bytes(plain)
        wasm_build.build_native(source, self.native)

    def slot(self, name: str, text: bytes) -> Path:
        """A fresh slot with the input and the runner's settings, as ``wasm_tasks.prepare`` writes them."""
        slot = self.root / "slots" / name
        shutil.rmtree(slot, ignore_errors=True)
        slot.mkdir(parents=True)
        (slot / "input").write_bytes(text)
        settings = Settings(
            module=self.module,
            cache_dir=self.cache(),
            fuel_bound=lennard_jones.MANIFEST.fuel_bound,
            memory_bytes=lennard_jones.MANIFEST.memory_bytes,
            input_sha256=hashlib.sha256(text).hexdigest(),
        )
        (slot / SETTINGS_NAME).write_text(json.dumps(settings.to_json(), indent=1))
        return slot


# --- the three ways ------------------------------------------------------------------------------


def run_wasm(scratch: Scratch, text: bytes, name: str = "wasm") -> Run:
    """The client's runner script on ``text`` in a fresh slot, as the sandbox starts it."""
    slot = scratch.slot(name, text)
    with (slot / STDOUT_NAME).open("ab") as out, (slot / STDERR_NAME).open("ab") as err:
        cpu, started = children_cpu(), time.perf_counter()
        code = subprocess.run(
            [sys.executable, "-E", "-s", str(RUNNER)],
            cwd=slot,
            env=clean_env(slot),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            check=False,
        ).returncode
        seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if code != 0:
        raise SystemExit(f"the runner failed with {code}: {(slot / STDERR_NAME).read_text()[-2000:]}")
    record = RunState.decode((slot / STATE_NAME).read_bytes())
    return Run(seconds, cpu, (slot / "output").read_bytes(), record.fuel, record.runs)


def run_native(scratch: Scratch, text: bytes) -> Run:
    slot = scratch.slot("native", text)
    cpu, started = children_cpu(), time.perf_counter()
    code, runs = wasm_build.run_native(scratch.native, slot)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if code != 0:
        raise SystemExit(f"the native build failed with {code}")
    return Run(seconds, cpu, (slot / "output").read_bytes(), runs=runs)


def run_python(text: bytes) -> Run:
    cpu, started = time.process_time(), time.perf_counter()
    output = simulate(text.decode())
    return Run(time.perf_counter() - started, time.process_time() - cpu, output)


def python_per_step(short: bytes, long: bytes, steps: int) -> tuple[float, float, Run, Run]:
    """Python's seconds per MD step (wall, CPU): the long run less the one-step run, over the
    steps between them; and the two runs."""
    one, many = run_python(short), run_python(long)
    return (many.seconds - one.seconds) / steps, (many.cpu - one.cpu) / steps, one, many


# --- the start of a cached module ----------------------------------------------------------------


def start_in_process(slot: Path) -> tuple[float, float, int]:
    """The runner's start, with its own functions: settings read, cached module deserialized and
    linked (ms), then instantiated and ``_start`` run on the probe (ms), and the probe's fuel."""
    started = time.perf_counter()
    settings = read_settings(slot)
    runner = ModuleRunner(slot, settings)
    ready = time.perf_counter()
    code, fuel = runner.run(settings.fuel_bound)
    done = time.perf_counter()
    if code != 0:
        raise SystemExit(f"the probe exited with {code}")
    return 1e3 * (ready - started), 1e3 * (done - ready), fuel


def measure_starts(scratch: Scratch, count: int) -> dict[str, Any]:
    """The first runner process (it compiles the module into the cache), then ``count`` rounds of
    the in-process start and of the whole process, on the probe unit."""
    probe = probe_text()
    uncached = run_wasm(scratch, probe, "probe-first")
    slot = scratch.slot("probe", probe)
    setup, started, processes, fuel = [], [], [], 0
    for _ in range(count):
        ready_ms, run_ms, fuel = start_in_process(slot)
        setup.append(ready_ms)
        started.append(run_ms)
        processes.append(1e3 * run_wasm(scratch, probe, "probe-process").seconds)
    whole = [a + b for a, b in zip(setup, started, strict=True)]
    return {
        "start_ms_cached": round(statistics.median(whole), 2),
        "start_setup_ms": round(statistics.median(setup), 2),
        "start_instantiate_run_ms": round(statistics.median(started), 2),
        "start_probe_fuel": fuel,
        "process_start_ms_cached": round(statistics.median(processes), 1),
        "process_start_ms_uncached": round(1e3 * uncached.seconds, 1),
        "starts": count,
    }


# --- the profile: the runner's engine without what it pays for -----------------------------------


def wasi_config(slot: Path) -> wasmtime.WasiConfig:
    config = wasmtime.WasiConfig()
    config.argv = ["app"]
    config.env = WASI_ENV
    config.stdout_file = str(slot / STDOUT_NAME)
    config.stderr_file = str(slot / STDERR_NAME)
    config.preopen_dir(str(slot), "/")
    return config


def run_variant(scratch: Scratch, text: bytes, variant: str) -> Run:
    """The unit in this process, as the runner runs it but with the variant's engine settings."""
    memory = lennard_jones.MANIFEST.memory_bytes
    kind, guard_region, overrides = VARIANTS[variant]
    wasm = (scratch.module if kind == "guarded" else scratch.plain_module).read_bytes()
    guarded = wasm_nan.is_marked(wasm)
    config = {**engine_settings(memory, nan_guarded=guarded, guard_region=guard_region), **overrides}
    engine = make_engine(config)
    module = world.load_module(engine, wasm, scratch.cache(variant), config)
    slot = scratch.slot(variant, text)
    fake = world.World(hashlib.sha256(text).digest())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    fake.define(linker, WASI)
    cpu, started = time.process_time(), time.perf_counter()
    code, runs = EXIT_CHECKPOINT, 0
    while code == EXIT_CHECKPOINT:
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=memory)
        if config["consume_fuel"]:
            store.set_fuel(lennard_jones.MANIFEST.fuel_bound)
        store.set_wasi(wasi_config(slot))
        fake.reset()
        instance = linker.instantiate(store, module)
        try:
            instance.exports(store)["_start"](store)  # type: ignore[operator]
            code = 0
        except wasmtime.ExitTrap as exit:
            code = exit.code
        runs += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"the {variant} variant exited with {code}")
    return Run(seconds, cpu, (slot / "output").read_bytes(), runs=runs)


# --- one run of the bench ------------------------------------------------------------------------


def check_same(what: str, a: bytes, b: bytes) -> None:
    if a != b:
        raise SystemExit(f"{what} differ:\n{a[:400]!r}\n{b[:400]!r}")


def python_inputs(opts: argparse.Namespace) -> tuple[bytes, bytes]:
    """A one-step run and a run of 1 + python_steps steps (through a velocity rescaling when
    there are 10 or more)."""
    return unit_text(opts, 0, 1), unit_text(opts, opts.python_steps - 2, 3)


def measure_rounds(scratch: Scratch, opts: argparse.Namespace) -> dict[str, list[Any]]:
    """wasm, native and Python one after the other, ``reps`` times, every output checked."""
    unit = unit_text(opts, opts.equilibration_steps, opts.production_steps)
    short, long = python_inputs(opts)
    expected = (
        run_wasm(scratch, short, "python-short").output,
        run_wasm(scratch, long, "python-long").output,
    )
    found: dict[str, list[Any]] = {
        key: [] for key in ("wasm", "native", "python", "python_cpu", "python_measured")
    }
    for _ in range(opts.reps):
        wasm, native = run_wasm(scratch, unit), run_native(scratch, unit)
        check_same("the wasm and native outputs", wasm.output, native.output)
        check_same("the wasm outputs of two rounds", wasm.output, (found["wasm"] or [wasm])[0].output)
        per_step, per_step_cpu, one, many = python_per_step(short, long, opts.python_steps)
        check_same("the Python and wasm outputs (one step)", one.output, expected[0])
        check_same("the Python and wasm outputs (short run)", many.output, expected[1])
        found["wasm"].append(wasm)
        found["native"].append(native)
        found["python"].append(per_step)
        found["python_cpu"].append(per_step_cpu)
        found["python_measured"].append(many.seconds)
    return found


def measure_profile(scratch: Scratch, opts: argparse.Namespace, output: bytes) -> dict[str, list[Run]]:
    unit = unit_text(opts, opts.equilibration_steps, opts.production_steps)
    found: dict[str, list[Run]] = {variant: [] for variant in VARIANTS}
    for _ in range(opts.profile_reps):
        for variant in VARIANTS:
            run = run_variant(scratch, unit, variant)
            check_same(f"the outputs of the {variant} variant and the runner", run.output, output)
            found[variant].append(run)
    return found


# --- the figures ---------------------------------------------------------------------------------


def median(values: Any) -> float:
    return statistics.median(list(values))


def main_figures(opts: argparse.Namespace, rounds: dict[str, list[Any]]) -> dict[str, Any]:
    wasm, native, steps = rounds["wasm"], rounds["native"], opts.equilibration_steps + opts.production_steps
    if len({run.fuel for run in wasm}) != 1:
        raise SystemExit(f"the fuel differs between rounds: {[run.fuel for run in wasm]}")
    wasm_s, native_s = median(r.seconds for r in wasm), median(r.seconds for r in native)
    wasm_cpu, native_cpu = median(r.cpu for r in wasm), median(r.cpu for r in native)
    python_step, python_step_cpu = median(rounds["python"]), median(rounds["python_cpu"])
    return {
        "wasm_seconds": round(wasm_s, 3),
        "native_seconds": round(native_s, 3),
        "python_seconds": round(python_step * steps, 1),
        "wasm_to_native": round(native_s / wasm_s, 3),
        "speedup_over_python": round(python_step * steps / wasm_s, 1),
        "wasm_ms_per_step": round(1e3 * wasm_s / steps, 3),
        "native_ms_per_step": round(1e3 * native_s / steps, 3),
        "python_ms_per_step": round(1e3 * python_step, 2),
        "python_seconds_is": f"extrapolated: Python's time per step ({opts.python_steps} steps) x {steps}",
        "python_measured_seconds": round(median(rounds["python_measured"]), 3),
        "python_measured_steps": opts.python_steps + 1,
        "wasm_cpu_seconds": round(wasm_cpu, 3),
        "native_cpu_seconds": round(native_cpu, 3),
        "wasm_to_native_cpu": round(native_cpu / wasm_cpu, 3),
        "speedup_over_python_cpu": round(python_step_cpu * steps / wasm_cpu, 1),
        "fuel": wasm[0].fuel,
        "fuel_per_second": round(wasm[0].fuel / wasm_s),
        "runs_per_unit": wasm[0].runs,
        "native_runs_per_unit": native[0].runs,
        "wasm_seconds_each": [round(r.seconds, 3) for r in wasm],
        "native_seconds_each": [round(r.seconds, 3) for r in native],
        "reps": opts.reps,
    }


def profile_figures(profile: dict[str, list[Run]], native_s: float) -> dict[str, Any]:
    if not profile["in_process"]:
        return {}
    seconds = {variant: median(r.seconds for r in runs) for variant, runs in profile.items()}
    base = seconds["in_process"]
    return {
        "wasm_seconds_in_process": round(base, 3),
        "wasm_seconds_no_fuel": round(seconds["no_fuel"], 3),
        "wasm_seconds_bounds_in_code": round(seconds["bounds_in_code"], 3),
        "wasm_seconds_canonicalization": round(seconds["canonicalization"], 3),
        "wasm_seconds_no_nan_guards": round(seconds["no_nan_guards"], 3),
        "wasm_seconds_no_fuel_no_nan": round(seconds["no_fuel_no_nan"], 3),
        "wasm_seconds_before_guards": round(seconds["before_guards"], 3),
        "fuel_metering_share": round(1 - seconds["no_fuel"] / base, 3),
        "nan_guards_share": round(1 - seconds["no_nan_guards"] / base, 3),
        "bounds_in_code_cost": round(seconds["bounds_in_code"] / base - 1, 3),
        "wasm_to_native_canonicalization": round(native_s / seconds["canonicalization"], 3),
        "wasm_to_native_no_fuel_no_nan": round(native_s / seconds["no_fuel_no_nan"], 3),
        "wasm_to_native_before_guards": round(native_s / seconds["before_guards"], 3),
        "profile_reps": len(profile["in_process"]),
    }


def unit_figures(opts: argparse.Namespace) -> dict[str, Any]:
    n_cells = lennard_jones.MANIFEST.example_parameters["n_cells"]
    return {
        "particles": 4 * n_cells**3,
        "density": opts.density,
        "temperature": opts.temperature,
        "steps": opts.equilibration_steps + opts.production_steps,
    }


def target_figures(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "targets": TARGETS,
        "wasm_to_native_met": figures["wasm_to_native"] >= TARGETS["wasm_to_native"],
        "speedup_over_python_met": figures["speedup_over_python"] >= TARGETS["speedup_over_python"],
        "start_ms_cached_met": figures["start_ms_cached"] <= TARGETS["start_ms_cached"],
    }


def run(opts: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tessera-wasm-bench-") as folder:
        scratch = Scratch(Path(folder))
        scratch.build()
        starts = measure_starts(scratch, opts.starts)
        busy, started = machine_cpu()[0], time.monotonic()
        rounds = measure_rounds(scratch, opts)
        busy = (machine_cpu()[0] - busy) / (time.monotonic() - started)
        profile = measure_profile(scratch, opts, rounds["wasm"][0].output)
    figures = {"benchmark": "wasm", **unit_figures(opts), **main_figures(opts, rounds), **starts}
    figures.update(profile_figures(profile, figures["native_seconds"]))
    figures.update(target_figures(figures))
    figures["outputs_identical"] = True  # wasm = native every round, Python = wasm: else it stopped
    figures["cpus"] = os.cpu_count()
    figures["loadavg"] = [round(value, 2) for value in os.getloadavg()]
    figures["loadavg_before"] = [round(value, 2) for value in load_before]
    figures["machine_busy_cores"] = round(busy, 2)
    return figures


# --- the report ----------------------------------------------------------------------------------

TABLE = Table((("way", 30), ("median s", 9), ("ms/step", 8), ("CPU s", 8), ("min s", 8), ("max s", 8)))


def met(figures: dict[str, Any], name: str) -> str:
    sign = "<=" if name == "start_ms_cached" else ">="
    return f"target {sign} {TARGETS[name]:g}: {'met' if figures[f'{name}_met'] else 'NOT met'}"


def print_table(figures: dict[str, Any]) -> None:
    steps = figures["steps"]
    print(TABLE.header())
    for way, key in (("wasm, the client's runner", "wasm"), ("native, gcc -O2", "native")):
        each = figures[f"{key}_seconds_each"]
        cells = [f"{figures[f'{key}_seconds']:.3f}", f"{figures[f'{key}_ms_per_step']:.3f}"]
        cells += [f"{figures[f'{key}_cpu_seconds']:.3f}", f"{min(each):.3f}", f"{max(each):.3f}"]
        print(TABLE.row([way, *cells]))
    python = [f"{figures['python_seconds']:.1f}", f"{figures['python_ms_per_step']:.2f}", "", "", ""]
    print(TABLE.row(["python, extrapolated", *python]))
    for way, key in (
        ("profile: runner's engine", "in_process"),
        ("  without fuel metering", "no_fuel"),
        ("  bounds checked in code", "bounds_in_code"),
        ("  canonicalizing, no guards", "canonicalization"),
        ("  neither guards nor canon.", "no_nan_guards"),
        ("  and without fuel", "no_fuel_no_nan"),
        ("  canonicalizing, bounds in code", "before_guards"),
    ):
        if f"wasm_seconds_{key}" in figures:
            value = figures[f"wasm_seconds_{key}"]
            print(TABLE.row([way, f"{value:.3f}", f"{1e3 * value / steps:.3f}", "", "", ""]))


def print_summary(figures: dict[str, Any]) -> None:
    unit = f"{figures['particles']} particles, density {figures['density']:g}, T {figures['temperature']:g}"
    start = (
        f"{figures['start_ms_cached']} ms in the runner (settings, engine and cached module "
        f"{figures['start_setup_ms']} ms, instantiate and run {figures['start_instantiate_run_ms']} ms)"
    )
    process = (
        f"{figures['process_start_ms_cached']} ms cached, {figures['process_start_ms_uncached']} ms compiling"
    )
    machine = f"{figures['cpus']} CPUs, load {figures['loadavg']}"
    rows = [
        ("unit", f"{unit}, {figures['steps']:,} steps, {figures['runs_per_unit']} runs"),
        ("wasm / native", f"{figures['wasm_to_native']} ({met(figures, 'wasm_to_native')})"),
        (
            "wasm over Python, per step",
            f"{figures['speedup_over_python']} x ({met(figures, 'speedup_over_python')})",
        ),
        ("start of a cached module", f"{start} ({met(figures, 'start_ms_cached')})"),
        ("runner process start", process),
        ("fuel", f"{figures['fuel']:,}, {figures['fuel_per_second']:.3g} per second"),
        ("outputs", "wasm = native every round; Python = wasm on the short runs"),
        ("machine", f"{machine}, {figures['machine_busy_cores']} cores busy during the rounds"),
    ]
    if "fuel_metering_share" in figures:
        rows.append(("fuel metering's share", f"{100 * figures['fuel_metering_share']:.1f} %"))
        rows.append(("the NaN guards' share", f"{100 * figures['nan_guards_share']:.1f} %"))
        rows.append(("bounds in code would cost", f"{100 * figures['bounds_in_code_cost']:.1f} %"))
        rows.append(("wasm / native canonicalizing", f"{figures['wasm_to_native_canonicalization']}"))
        rows.append(("wasm / native without fuel, NaN", f"{figures['wasm_to_native_no_fuel_no_nan']}"))
        rows.append(("wasm / native before guards", f"{figures['wasm_to_native_before_guards']}"))
    print_pairs(rows, width=30)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    figures = run(opts)
    print_table(figures)
    print()
    print_summary(figures)
    print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
