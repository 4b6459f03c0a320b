"""A scientist's batches, end to end: submitted through the API with the helper script,
split by the coordinator's worker, crunched by real `tessera` clients of two volunteers,
validated, assimilated, and the result checked against the app run directly. Cancelling a
batch stops the work on the volunteers' computers too.

Runs the embedded default on SQLite, and on a fresh PostgreSQL database in the PostgreSQL pass.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import workunits
from tests.coordinator_process import MAKE_SCIENTIST, CoordinatorProcess
from tests.volunteers import attach, wait_for
from workunits.interface import Checkpoint
from workunits.lennard_jones.reference import simulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from tessera_batches import Batches

TWO_VOLUNTEERS = {"min_quorum": 2, "target_nresults": 2}
PI = {"seed": 11, "units": 3, "samples_per_unit": 200_000}
TILES = {"width": 48, "height": 32, "tile": 16, "max_iterations": 60, "center": [-0.6, 0.0], "span": 3.0}
SIR_REST = {"seed": 2, "population": 400, "initial_infected": 4, "days": 60, "runs": 3}
SIR_TABLE = "beta,gamma\n0.2,0.1\n0.5,0.1\n0.9,0.25\n"
# Two small state points of the wasm app: 108 particles, 150 steps each.
LJ = {
    "n_cells": 3,
    "densities": [0.3, 0.8],
    "temperatures": [1.5],
    "dt": 0.005,
    "equilibration_steps": 50,
    "production_steps": 100,
    "seed": 4,
}
WASM_FUEL = """
from coordinator.validation.models import LedgerEntry
from coordinator.work.models import Replica
rows = Replica.objects.filter(workunit__batch_id=values["batch"], validate_state="valid")
fields = ("workunit_id", "fuel", "app_version__runtime", "volunteer__user__username")
result = {"replicas": list(rows.order_by("workunit_id", "id").values_list(*fields)),
          "ledger": sorted(LedgerEntry.objects.filter(replica__in=rows).values_list("fuel", flat=True))}
"""


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    url = os.environ.get("DATABASE_URL", "")
    server = url.rsplit("/", 1)[0] if url.startswith(("postgres", "pgsql")) else None
    with CoordinatorProcess(tmp_path_factory.mktemp("science"), postgres_server=server) as running:
        for name in ("montecarlo_pi", "sir_sweep", "mandelbrot", "lennard_jones"):
            version = workunits.load(name).MANIFEST.version
            assert f"{name} v{version}: published" in running.manage("publish_app", name)
        yield running


def direct_result(app: str, parameters: dict[str, Any]) -> bytes:
    """The batch result computed right here, by the app's own functions; a wasm app's units
    by the independent Python simulation of its kernel."""
    module = workunits.load(app)
    wasm = module.MANIFEST.runtime == "wasm"
    compute = (lambda data, _: simulate(data.decode())) if wasm else module.compute
    outputs = ((i, compute(data, Checkpoint())) for i, data in enumerate(module.split(parameters)))
    return module.assimilate(outputs)


def test_a_batch_of_each_app_is_crunched_by_volunteers_and_matches_a_direct_run(coordinator, tmp_path):
    batches = Batches(coordinator.url, coordinator.django(MAKE_SCIENTIST, username="marie"))
    table = tmp_path / "sweep.csv"
    table.write_text(SIR_TABLE)
    submitted = {
        "montecarlo_pi": batches.submit("montecarlo_pi", "pi", parameters=PI, **TWO_VOLUNTEERS),
        "mandelbrot": batches.submit("mandelbrot", "tiles", parameters=TILES, **TWO_VOLUNTEERS),
        "sir_sweep": batches.submit(
            "sir_sweep", "sweep", parameter_file=table, parameters=SIR_REST, **TWO_VOLUNTEERS
        ),
        "lennard_jones": batches.submit("lennard_jones", "fluid", parameters=LJ, **TWO_VOLUNTEERS),
    }
    for batch in submitted.values():
        wait_for(lambda b=batch: batches.get(b["id"])["state"] == "running", 30, f"{batch['name']} split")
    clients = [attach(coordinator, tmp_path, name) for name in ("ada", "alan")]
    # Ada runs no native programs, so she gets the wasm module; Alan may get the native build.
    assert clients[0]("prefs", "set", "native_apps", "no").returncode == 0

    for client in clients:
        client.start("--exit-when-idle")
    for client in clients:
        assert client.wait(240) == 0, client.output()

    for app, batch in submitted.items():
        done = batches.wait(batch["id"], poll=0.5, timeout=60, progress=False)
        assert done["state"] == "done", done
        assert done["units"]["validated"] == done["units"]["planned"] > 0 and done["units"]["failed"] == 0
        parameters = batches.get(batch["id"])["parameters"]
        assert batches.result(batch["id"]) == direct_result(app, parameters), app
    assert batches.failures(submitted["montecarlo_pi"]["id"]) == []
    picture = batches.result(submitted["mandelbrot"]["id"])
    assert picture.startswith(b"\x89PNG")
    fuel = coordinator.django(WASM_FUEL, batch=submitted["lennard_jones"]["id"])
    measured: dict[int, set[int]] = {}  # the fuel the wasm replicas of each unit reported
    for unit, used, runtime, volunteer in fuel["replicas"]:
        assert runtime == "wasm" or (runtime == "native" and volunteer == "alan" and used is None), fuel
        if runtime == "wasm":
            measured.setdefault(unit, set()).add(used)
    assert len(measured) == 2 and all(len(used) == 1 and min(used) > 0 for used in measured.values()), fuel
    settled = sorted(min(measured[unit]) for unit, *_ in fuel["replicas"])
    assert fuel["ledger"] == settled, "each grant keeps the fuel its unit's wasm replicas settled"
    rows = batches.result(submitted["sir_sweep"]["id"]).decode().splitlines()
    assert rows[0].startswith("beta,gamma") and [r.split(",")[:2] for r in rows[1:]] == [
        ["0.2", "0.1"],
        ["0.5", "0.1"],
        ["0.9", "0.25"],
    ]


def test_cancelling_a_batch_makes_the_volunteers_computer_drop_its_tasks(coordinator, tmp_path):
    batches = Batches(coordinator.url, coordinator.django(MAKE_SCIENTIST, username="lise"))
    slow = {"seed": 3, "units": 6, "samples_per_unit": 3_000_000}  # several seconds a unit
    batch = batches.submit("montecarlo_pi", "long pi", parameters=slow, min_quorum=1, target_nresults=1)
    wait_for(lambda: batches.get(batch["id"])["state"] == "running", 30, "the batch split")
    client = attach(coordinator, tmp_path, "emmy")
    client("prefs", "set", "max_cpus", "1")

    client.start("--exit-when-idle")
    wait_for(lambda: batches.get(batch["id"])["units"]["in_progress"] >= 2, 60, "tasks to go out")
    cancelled = batches.cancel(batch["id"])

    assert cancelled["state"] == "cancelled"
    assert client.wait(120) == 0, client.output()
    log = client.output()
    assert "the project called off task" in log, log
    kept = client.records("montecarlo_pi")  # a task finished before the call stays as reported
    assert [record["history"][-1][0] for record in kept] == ["reported"] * len(kept)
    assert len(kept) < 6 - 1, "the called-off tasks were forgotten, not crunched"
    finished = batches.get(batch["id"])
    assert finished["units"]["failed"] + finished["units"]["validated"] == 6
    reasons = {unit["reason"] for unit in batches.failures(batch["id"])}
    assert reasons == {"cancelled"}
    assert json.loads(json.dumps(finished))["result_url"] is None
