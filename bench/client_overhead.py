"""Client overhead benchmark: how much of a volunteer's CPU goes to science, and what idling costs.

Run ``python -m bench.client_overhead`` (``--quick`` for a short run, ``--help`` for the knobs).

It starts a real coordinator process (the embedded default on a scratch SQLite file, from
``tests/coordinator_process.py``), publishes the demo app (a checkpointed SHA-256 chain) and
queues N units of a few seconds each, attaches one `tessera` client in a scratch data folder,
and then measures, in one run:

* **crunch**: ``tessera run --exit-when-idle`` until every unit is crunched and reported. The
  CPU time of the client and everything it started comes from ``RUSAGE_CHILDREN`` around it;
  the science app's share is the CPU the apps themselves used (the client measures each with
  ``wait4`` and reports it as the replica's ``cpu_time``), so the rest is the client:
  ``app_cpu_fraction = app / (app + client)``, where the client's share leaves out its
  one-off start (imports), measured alone as the CPU of ``tessera --version`` (median of 5)
  and given as ``client_startup_cpu_s``; ``app_cpu_fraction_with_startup`` counts it too.
  The sandbox launcher becomes the app by ``execve``, so its interpreter start counts as
  the app's.
* **idle**: the same client attached to a project with no work, left running for S seconds;
  its own CPU time (``/proc/<pid>/stat``) over that window gives ``idle_cpu_percent`` of one
  core, and ``VmRSS`` gives ``idle_rss_mb``. The dashboard is closed then (its listener is
  in the client, its HTTP code not yet imported).
* **dashboard open**: then the same client's dashboard is opened as a browser opens it (the
  page, its script and style, then its state every 2 s, the page's pace) for D seconds:
  ``dashboard_cpu_percent`` of one core meanwhile, ``dashboard_rss_mb`` after (and
  ``dashboard_extra_mb`` over the idle figure), ``dashboard_state_ms`` the median answer.

With ``--wasm`` the crunch phase runs WebAssembly tasks instead: the ``lennard_jones`` app,
published as a project publishes it (``manage.py publish_app``), and N units of its own split
(500 particles at density 0.8, ``--steps`` MD steps, a few seconds each; the module checkpoints
and exits 75 every 801 steps), made with the app's fuel bound and memory limit. The client runs
each in its wasm runner (wasmtime in the task's sandboxed process); the runner's process, Python
and the wasmtime import included, counts as the app's, as it is what the volunteer lends the
CPU to.

It prints a table and ends with one line of JSON (``app_cpu_fraction``, ``idle_cpu_percent``,
``idle_rss_mb``, ``app_cpu_s``, ``client_cpu_s``, ``units``, ``rounds`` or, with ``--wasm``,
``app`` and ``steps``, …). Linux only (it reads ``/proc``); it touches only its own scratch
folders and 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.cpu import read_process_cpu
from bench.report import print_json_line, print_pairs
from coordinator.work.bundles import DEMO_APP
from tests.coordinator_process import MAKE_UNITS, MAKE_VOLUNTEER, PUBLISH_APP, REPLICAS, CoordinatorProcess
from workunits import lennard_jones

CLIENT = [sys.executable, "-m", "tessera_client"]
SINGLE = {"min_quorum": 1, "target_nresults": 1}
N_CELLS = 5  # 500 particles, as in the Lennard-Jones app's example


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=12, help="units to crunch (default 12)")
    parser.add_argument("--rounds", type=int, default=6_000_000, help="SHA-256 rounds per unit (~3 s)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="how long to watch the idle client")
    parser.add_argument(
        "--dashboard-seconds", type=float, default=30.0, help="how long the dashboard stays open (polled)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="4 units of ~1 s (~2.5 s with --wasm), 15 s idle"
    )
    parser.add_argument("--wasm", action="store_true", help="crunch Lennard-Jones WebAssembly tasks instead")
    parser.add_argument("--steps", type=int, default=1250, help="with --wasm: MD steps per unit (~3 s)")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.units, opts.rounds, opts.steps, opts.idle_seconds = 4, 2_000_000, 1000, 15.0
        opts.dashboard_seconds = 10.0
    return opts


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def attach(coordinator: CoordinatorProcess, data: Path, username: str) -> None:
    token = coordinator.django(MAKE_VOLUNTEER, username=username)
    subprocess.run(
        [*CLIENT, "--data-dir", str(data), "attach", coordinator.url, "--token", token],
        check=True,
        capture_output=True,
    )


def startup_cpu() -> float:
    """CPU seconds the client spends starting (imports, argument parsing), median of 5."""
    spent = []
    for _ in range(5):
        before = children_cpu()
        subprocess.run([*CLIENT, "--version"], check=True, capture_output=True)
        spent.append(children_cpu() - before)
    return statistics.median(spent)


def queue_demo(coordinator: CoordinatorProcess, opts: argparse.Namespace) -> dict[str, Any]:
    """The demo app (a SHA-256 chain) and its units; what the figures say of them."""
    coordinator.django(PUBLISH_APP, name="overhead", folder=str(DEMO_APP))
    inputs = [json.dumps({"seed": f"overhead-{i}", "rounds": opts.rounds}) for i in range(opts.units)]
    coordinator.django(MAKE_UNITS, app="overhead", inputs=inputs, policy=SINGLE, fpops=opts.rounds * 2e3)
    return {"units": opts.units, "rounds": opts.rounds}


def lennard_jones_parameters(opts: argparse.Namespace) -> dict[str, Any]:
    """A sweep of one unit per temperature: 500 particles at density 0.8, ``steps`` steps each."""
    temperatures = [round(1.0 + 0.1 * i, 1) for i in range(opts.units)]
    equilibration = opts.steps // 5
    return {"n_cells": N_CELLS, "densities": [0.8], "temperatures": temperatures, "dt": 0.005,
            "equilibration_steps": equilibration, "production_steps": opts.steps - equilibration,
            "seed": 1}  # fmt: skip


def queue_lennard_jones(coordinator: CoordinatorProcess, opts: argparse.Namespace) -> dict[str, Any]:
    """The Lennard-Jones wasm app, published as a project does, and units of its own split,
    carrying its fuel bound and memory limit as a batch's units do."""
    coordinator.manage("publish_app", "lennard_jones")
    manifest = lennard_jones.MANIFEST
    inputs = [data.decode() for data in lennard_jones.split(lennard_jones_parameters(opts))]
    coordinator.django(
        MAKE_UNITS,
        app=manifest.name,
        inputs=inputs,
        policy=SINGLE,
        fpops=manifest.fpops_per_unit,
        memory_bytes=manifest.memory_bytes,
        fuel_bound=manifest.fuel_bound,
    )
    return {"units": opts.units, "app": manifest.name, "particles": 4 * N_CELLS**3, "steps": opts.steps}


def crunch(coordinator: CoordinatorProcess, scratch: Path, opts: argparse.Namespace) -> dict[str, Any]:
    queued = queue_lennard_jones(coordinator, opts) if opts.wasm else queue_demo(coordinator, opts)
    name = queued.get("app", "overhead")
    data = scratch / "cruncher"
    attach(coordinator, data, "cruncher")
    before, started = children_cpu(), time.monotonic()
    subprocess.run(
        [*CLIENT, "--data-dir", str(data), "run", "--exit-when-idle"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=3600,
    )
    total, wall = children_cpu() - before, time.monotonic() - started
    replicas = [r for r in coordinator.django(REPLICAS) if r["workunit__name"].startswith(f"{name}-")]
    if len(replicas) != opts.units or any(r["outcome"] != "success" for r in replicas):
        raise SystemExit(f"not every unit was crunched: {replicas}")
    app = sum(r["cpu_time"] for r in replicas)
    startup = startup_cpu()
    return {
        **queued,
        "wall_s": round(wall, 2),
        "app_cpu_s": round(app, 3),
        "client_cpu_s": round(total - app - startup, 3),
        "client_startup_cpu_s": round(startup, 3),
        "app_cpu_fraction": round(app / (total - startup), 5),
        "app_cpu_fraction_with_startup": round(app / total, 5),
    }


def idle(coordinator: CoordinatorProcess, scratch: Path, opts: argparse.Namespace) -> dict[str, Any]:
    data = scratch / "idler"
    attach(coordinator, data, "idler")
    client = subprocess.Popen(
        [*CLIENT, "--data-dir", str(data), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(5.0)  # past start-up and the first (empty) scheduler RPC
        cpu_start, wall_start = read_process_cpu(client.pid), time.monotonic()
        time.sleep(opts.idle_seconds)
        cpu, wall = read_process_cpu(client.pid) - cpu_start, time.monotonic() - wall_start
        rss = process_rss_mb(client.pid)
        opened = dashboard_open(client.pid, data, opts.dashboard_seconds)
    finally:
        client.terminate()
        client.wait(30)
    return {
        "idle_seconds": round(wall, 1),
        "idle_cpu_s": round(cpu, 3),
        "idle_cpu_percent": round(100 * cpu / wall, 3),
        "idle_rss_mb": round(rss, 1),
        **opened,
        "dashboard_extra_mb": round(opened["dashboard_rss_mb"] - rss, 1),
    }


def dashboard_open(pid: int, data: Path, seconds: float) -> dict[str, Any]:
    """The idle client's dashboard, opened as a browser opens it: the page, its script and style,
    then its state every 2 s (the page's own pace) for ``seconds``; the client's CPU meanwhile
    and its memory after, against the same client closed."""
    url = json.loads((data / "keys" / "dashboard.json").read_text())["url"]
    with requests.Session() as browser:
        browser.trust_env = False
        for asset in ("", "dashboard.js", "dashboard.css"):
            browser.get(url + asset, timeout=30).raise_for_status()
        cpu_start, wall_start, latencies = read_process_cpu(pid), time.monotonic(), []
        while time.monotonic() - wall_start < seconds:
            asked = time.perf_counter()
            browser.get(url + "api/state", timeout=30).raise_for_status()
            latencies.append(time.perf_counter() - asked)
            time.sleep(2.0)
        cpu, wall = read_process_cpu(pid) - cpu_start, time.monotonic() - wall_start
    return {
        "dashboard_seconds": round(wall, 1),
        "dashboard_cpu_percent": round(100 * cpu / wall, 3),
        "dashboard_rss_mb": round(process_rss_mb(pid), 1),
        "dashboard_state_ms": round(1000 * statistics.median(latencies), 1),
    }


def run(opts: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tessera-client-bench-") as folder:
        scratch = Path(folder)
        # A new host may take NEW_HOST_DAILY_QUOTA (10) tasks of an app version a day until its
        # results validate; the client's last request can come before the validator has raised
        # its quota, which left 2 of the 12 units unsent (2026-12-06): the quota covers them all.
        settings = {
            "RPC_DELAY_NO_WORK": "300",  # the coordinator's default pace when idle
            "NEW_HOST_DAILY_QUOTA": str(max(10, opts.units)),
        }
        with CoordinatorProcess(scratch / "coordinator", **settings) as coordinator:
            figures = {**crunch(coordinator, scratch, opts), **idle(coordinator, scratch, opts)}
    figures["cpus"] = os.cpu_count()
    return figures


def crunched(figures: dict[str, Any]) -> str:
    if "app" in figures:
        unit = f"{figures['particles']} particles, {figures['steps']:,} steps"
        return f"{figures['units']} x Lennard-Jones (wasm), {unit}"
    return f"{figures['units']} x {figures['rounds']:,} SHA-256 rounds"


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    figures = run(opts)
    client = f"{figures['client_cpu_s']} s, and {figures['client_startup_cpu_s']} s to start"
    idle = f"{figures['idle_cpu_percent']} % of one core over {figures['idle_seconds']} s"
    dashboard = (
        f"{figures['dashboard_rss_mb']} MB (+{figures['dashboard_extra_mb']}),"
        f" {figures['dashboard_cpu_percent']} % of one core, state in {figures['dashboard_state_ms']} ms"
    )
    print_pairs(
        [
            ("units crunched", crunched(figures)),
            ("wall time", f"{figures['wall_s']} s on {figures['cpus']} CPUs"),
            ("CPU in the science app", f"{figures['app_cpu_s']} s"),
            ("CPU in the client", client),
            ("app share of CPU", f"{100 * figures['app_cpu_fraction']:.2f} %"),
            ("  counting the start", f"{100 * figures['app_cpu_fraction_with_startup']:.2f} %"),
            ("idle client CPU", idle),
            ("idle client memory", f"{figures['idle_rss_mb']} MB resident"),
            ("dashboard open", dashboard),
        ],
        width=28,
    )
    print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
