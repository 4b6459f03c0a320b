"""One app as three versions, crunched by a real volunteer's client (docs/platforms.md).

The Lennard-Jones app is published as the operator publishes it: its wasm module, and native
executables for x86-64 and ARM Linux built from the same C source. A Python version of the same
kernel (``workunits/lennard_jones/reference.py``) is registered beside them, signed with the
project's key. The coordinator explores every time (``VERSION_EXPLORE_PROBABILITY`` 1), so the
client gets each version it can run until the scheduler has measured it on this computer, then
the fastest: the native build. The three versions write the same bytes, so the batch's result
is the direct computation's whatever ran where.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import pytest

import workunits
from coordinator.work import bundles
from coordinator.work.bundles import WORKUNITS
from tests.coordinator_process import MAKE_SCIENTIST, CoordinatorProcess
from tests.test_science_end_to_end import direct_result
from tests.volunteers import attach, wait_for

sys.path.insert(0, str(WORKUNITS.parent / "scripts"))
from tessera_batches import Batches

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"),
    reason="the native version is built for x86-64 Linux",
)
# 16 state points of 108 particles and 150 steps: a few milliseconds as native code, about
# two seconds in Python.
POINTS = {
    "n_cells": 3,
    "densities": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8],
    "temperatures": [1.5, 2.5],
    "dt": 0.005,
    "equilibration_steps": 50,
    "production_steps": 100,
    "seed": 9,
}
REGISTER_PYTHON = """
import base64
from coordinator.core import keys
from coordinator.work.models import App
from coordinator.work.services import register_app_version
app = App.objects.get(name="lennard_jones")
version = register_app_version(app=app, version=values["version"], bundle=base64.b64decode(values["bundle"]),
                               signing_key=keys.load_project_key(), platform="any", runtime="python")
result = version.pk
"""
WHAT_RAN = """
from coordinator.standing.models import HostAppVersion
from coordinator.work.models import Replica
replicas = Replica.objects.filter(workunit__batch_id=values["batch"]).exclude(sent_at=None)
result = {
    "sent": list(replicas.order_by("sent_at", "id").values_list("app_version__runtime", flat=True)),
    "speeds": {row.app_version.runtime: [row.speed_flops, row.speed_samples]
               for row in HostAppVersion.objects.filter(app_version__app__name="lennard_jones")
               .select_related("app_version")},
}
"""


def python_version_bundle() -> bytes:
    """The reference kernel as a Python app version: the runtime, the module, a main.py."""
    files = {f"workunits/{name}": (WORKUNITS / name).read_bytes() for name in bundles.RUNTIME_FILES}
    files["workunits/lj_reference.py"] = (WORKUNITS / "lennard_jones" / "reference.py").read_bytes()
    files["main.py"] = (
        b"from workunits import lj_reference as app\nfrom workunits.runtime import main\n\nmain(app)\n"
    )
    files["tessera-app.json"] = json.dumps({"api": 1, "entrypoint": "main.py"}).encode()
    return bundles.zip_files(files)


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    if os.environ.get("DATABASE_URL", ""):
        pytest.skip(
            "runs in the SQLite pass only: version choice is the same code on either database, and"
            " this minute in both passes would take CI past its 30 minutes"
        )
    root = tmp_path_factory.mktemp("versions")
    with CoordinatorProcess(root, VERSION_EXPLORE_PROBABILITY="1") as running:
        published = running.manage("publish_app", "lennard_jones")
        assert "(x86_64-pc-linux-gnu, native): published" in published, published
        version = workunits.load("lennard_jones").MANIFEST.version
        bundle = base64.b64encode(python_version_bundle()).decode()
        running.django(REGISTER_PYTHON, version=version, bundle=bundle)
        yield running


def test_a_computer_gets_each_version_until_measured_then_the_fastest_and_all_give_the_same_bytes(
    coordinator, tmp_path
):
    batches = Batches(coordinator.url, coordinator.django(MAKE_SCIENTIST, username="dorothy"))
    batch = batches.submit("lennard_jones", "three ways", parameters=POINTS, min_quorum=1, target_nresults=1)
    wait_for(lambda: batches.get(batch["id"])["state"] == "running", 30, "the batch split")
    client = attach(coordinator, tmp_path, "rosalind")
    for key, value in (("max_cpus", "1"), ("work_buf_hours", "0")):  # one task at a time
        assert client("prefs", "set", key, value).returncode == 0

    client.start("--exit-when-idle")
    assert client.wait(300) == 0, client.output()

    done = batches.wait(batch["id"], poll=0.5, timeout=60, progress=False)
    assert done["state"] == "done" and done["units"]["validated"] == 16, done
    ran = coordinator.django(WHAT_RAN, batch=batch["id"])
    sent, speeds = ran["sent"], ran["speeds"]
    assert set(sent) == {"python", "wasm", "native"} and len(sent) == 16, sent
    assert all(sent.count(kind) >= 3 for kind in ("python", "wasm")), f"each was measured: {sent}, {speeds}"
    assert sent[-4:] == ["native"] * 4, f"measured, the fastest wins: {sent}, {speeds}"
    assert speeds["native"][0] > speeds["wasm"][0] > speeds["python"][0] > 0, speeds
    assert all(samples >= 3 for _, samples in speeds.values()), speeds
    assert batches.result(batch["id"]) == direct_result(
        "lennard_jones", batches.get(batch["id"])["parameters"]
    )
