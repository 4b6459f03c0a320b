"""The `tessera` client, as volunteers run it, against a real coordinator process.

The coordinator is the embedded default in its own process (runserver with the in-process
worker) on a fresh SQLite file, as `make run` makes it; the SQLite pass runs these tests. The
client runs as `python -m tessera_client`, exactly the `tessera` command. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from coordinator.work.bundles import DEMO_APP
from tests.coordinator_process import (
    MAKE_UNITS,
    MAKE_VOLUNTEER,
    PUBLISH_APP,
    REPLICAS,
    VOLUNTEER_CREDIT,
    CoordinatorProcess,
)
from tests.volunteers import Tessera, attach, wait_for
from workunits import montecarlo_pi
from workunits.interface import Checkpoint

APPS = Path(__file__).parent / "apps"
PYTHON = sys.executable


def hash_chain(seed: str, rounds: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def chain_input(seed: str, rounds: int) -> str:
    return json.dumps({"seed": seed, "rounds": rounds})


pytestmark = pytest.mark.sqlite_pass(
    "the client sees the coordinator through its protocol only, whatever its database, and these"
    " two minutes in both passes would take CI past its 30 minutes"
)


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    with CoordinatorProcess(tmp_path_factory.mktemp("coordinator")) as running:
        yield running


def replicas_of(coordinator: CoordinatorProcess, prefix: str) -> list[dict]:
    return [r for r in coordinator.django(REPLICAS) if r["workunit__name"].startswith(prefix)]


def test_two_volunteers_attach_crunch_report_and_are_granted_credit(coordinator, tmp_path):
    coordinator.django(PUBLISH_APP, name="chain", folder=str(DEMO_APP))
    coordinator.django(PUBLISH_APP, name="bigout", folder=str(APPS / "bigout"))
    seeds = [("chain-a", 300_000), ("chain-b", 500_000)]
    coordinator.django(MAKE_UNITS, app="chain", inputs=[chain_input(s, n) for s, n in seeds])
    coordinator.django(MAKE_UNITS, app="bigout", inputs=["big input"])
    fingerprint = coordinator.manage("keys", "show").split("fingerprint:")[1].split()[0]

    clients = [attach(coordinator, tmp_path, name) for name in ("ada", "grace")]
    shown = clients[0]("status").stdout
    for client in clients:
        client.start("--exit-when-idle")
    for client in clients:
        assert client.wait(120) == 0, client.output()

    assert "127.0.0.1" in shown
    assert (
        fingerprint
        in (tmp_path / "ada").joinpath("projects", f"127.0.0.1-{coordinator.port}.json").read_text()
    )
    replicas = replicas_of(coordinator, "chain") + replicas_of(coordinator, "bigout")
    assert len(replicas) == 6
    assert {(r["state"], r["outcome"]) for r in replicas} == {("over", "success")}
    by_unit = {r["workunit__name"]: r for r in replicas}
    for index, (seed, rounds) in enumerate(seeds):
        expected = hash_chain(seed, rounds).encode()
        assert by_unit[f"chain-{index}"]["output_sha256"] == hashlib.sha256(expected).hexdigest()
    big = hashlib.sha256(b"big input").hexdigest().encode() * 160
    assert by_unit["bigout-0"]["output_sha256"] == hashlib.sha256(big).hexdigest()
    assert all(r["cpu_time"] > 0 for r in replicas_of(coordinator, "chain"))

    credit = wait_for(
        lambda: (
            (c := coordinator.django(VOLUNTEER_CREDIT))
            and c.get("ada", 0) > 0
            and c.get("grace", 0) > 0
            and c
        ),
        60,
        "validation to grant credit",
    )
    assert credit["ada"] == credit["grace"]
    clients[0].start("--exit-when-idle")  # one more contact brings the credit home
    assert clients[0].wait(60) == 0
    status = clients[0]("status").stdout
    assert f"{credit['ada']:.2f}" in status


def test_a_task_killed_with_its_client_resumes_from_its_checkpoint_and_is_reported_once(
    coordinator, tmp_path
):
    rounds = 10_000_000
    coordinator.django(PUBLISH_APP, name="longchain", folder=str(DEMO_APP))
    coordinator.django(
        MAKE_UNITS,
        app="longchain",
        inputs=[chain_input("long", rounds)],
        policy={"min_quorum": 1, "target_nresults": 1},
    )
    client = attach(coordinator, tmp_path, "linus")

    client.start()

    def checkpointed():
        found = list(client.data.glob("tasks/*/*/slot/checkpoint"))
        return found and json.loads(found[0].read_text())["done"] > 0 and found[0]

    checkpoint = wait_for(checkpointed, 60, "the first checkpoint")
    slot = checkpoint.parent
    client.process.send_signal(signal.SIGKILL)
    client.process.wait(10)
    done_at_kill = json.loads(checkpoint.read_text())["done"]
    assert done_at_kill < rounds
    wait_for(lambda: not apps_running_in(slot), 10, "the app to die with the client")

    client.start("--exit-when-idle")
    assert client.wait(120) == 0, client.output()

    [replica] = replicas_of(coordinator, "longchain")
    expected = hash_chain("long", rounds).encode()
    assert (replica["state"], replica["outcome"]) == ("over", "success")
    assert replica["output_sha256"] == hashlib.sha256(expected).hexdigest()
    [record] = client.records("longchain")
    states = [state for state, _ in record["history"]]
    assert record["runs"] == 2 and states.count("running") == 2
    assert states.count("reported") == 1
    assert "resumed" in client.output()
    assert client.output().count("reported 1 result") == 1


def apps_running_in(slot: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == slot:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_no_result_is_lost_while_the_coordinator_is_down(coordinator, tmp_path):
    coordinator.django(PUBLISH_APP, name="offline", folder=str(DEMO_APP))
    seeds = [f"offline-{i}" for i in range(4)]
    coordinator.django(
        MAKE_UNITS,
        app="offline",
        inputs=[chain_input(seed, 400_000) for seed in seeds],
        policy={"min_quorum": 1, "target_nresults": 1},
    )
    client = attach(coordinator, tmp_path, "margaret")

    client.start("--exit-when-idle")
    wait_for(lambda: len(client.records("offline")) == 4, 60, "the client to fetch the work")
    coordinator.stop()
    wait_for(
        lambda: all(r["state"] == "done" for r in client.records("offline")), 90, "crunching to go on offline"
    )
    time.sleep(1.5)  # it tries, fails and backs off at least once
    coordinator.start()
    assert client.wait(120) == 0, client.output()

    replicas = replicas_of(coordinator, "offline")
    assert [(r["state"], r["outcome"]) for r in replicas] == [("over", "success")] * 4
    for replica, seed in zip(replicas, seeds, strict=True):
        assert replica["output_sha256"] == hashlib.sha256(hash_chain(seed, 400_000).encode()).hexdigest()
    assert "trying again in" in client.output()
    assert all([s for s, _ in r["history"]].count("reported") == 1 for r in client.records("offline"))


TAMPER_BUNDLE = """
from coordinator.work.models import AppVersion
version = AppVersion.objects.get(app__name=values["app"])
path = version.bundle.path
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0x01
open(path, "wb").write(bytes(data))
result = path
"""

FORGE_SIGNATURE = """
import base64
from coordinator.work.models import AppVersion
AppVersion.objects.filter(app__name=values["app"]).update(signature=base64.b64encode(b"\\x07" * 64).decode())
result = True
"""

SIGN_WITH_ANOTHER_KEY = """
from pathlib import Path
from nacl.signing import SigningKey
from coordinator.work.bundles import build_bundle
from coordinator.work.models import App
from coordinator.work.services import register_app_version
app = App.objects.create(name=values["name"])
bundle = build_bundle(Path(values["folder"]))
register_app_version(app=app, version=1, bundle=bundle, signing_key=SigningKey.generate())
result = True
"""


def test_bad_bundles_and_failing_apps_become_clear_client_errors_and_the_rest_runs(coordinator, tmp_path):
    # One replica each, never reissued: no later test's volunteer inherits these failures.
    single = {
        "min_quorum": 1,
        "target_nresults": 1,
        "max_error_results": 1,
        "max_total_results": 1,
        "delay_bound": 6,
    }
    # The tampered app has bytes of its own: were it the good app's bundle, a host that ran the
    # good unit first would hold that hash verified in its cache and rightly run it from there.
    own_bytes = tmp_path / "tampered-app"
    shutil.copytree(DEMO_APP, own_bytes)
    (own_bytes / "TAMPERED.txt").write_text("damaged on the server after it was signed\n")
    coordinator.django(PUBLISH_APP, name="tampered", folder=str(own_bytes))
    coordinator.django(PUBLISH_APP, name="forged", folder=str(DEMO_APP))
    coordinator.django(TAMPER_BUNDLE, app="tampered")
    coordinator.django(FORGE_SIGNATURE, app="forged")
    coordinator.django(SIGN_WITH_ANOTHER_KEY, name="foreign", folder=str(DEMO_APP))
    for name in ("crash", "hog", "spin"):
        coordinator.django(PUBLISH_APP, name=name, folder=str(APPS / name))
    coordinator.django(PUBLISH_APP, name="good", folder=str(DEMO_APP))
    for name in ("tampered", "forged", "foreign", "crash", "hog", "spin"):
        coordinator.django(MAKE_UNITS, app=name, inputs=[chain_input(name, 1000)], policy=single)
    coordinator.django(
        MAKE_UNITS, app="good", inputs=[chain_input("good", 1000)], policy={**single, "delay_bound": 600}
    )
    client = attach(coordinator, tmp_path, "alan")

    client.start("--exit-when-idle")
    assert client.wait(120) == 0, client.output()

    outcomes = {
        r["workunit__name"].rsplit("-", 1)[0]: r for r in coordinator.django(REPLICAS) if r["host_id"]
    }
    expected_words = {
        "tampered": "SHA-256",
        "forged": "not signed by the project.s pinned key",
        "foreign": "not signed by the project.s pinned key",
        "crash": "cannot parse input",
        "hog": "out of memory",
        "spin": "deadline passed",
    }
    for name, words in expected_words.items():
        replica = outcomes[name]
        assert replica["outcome"] == "client_error", (name, replica)
        assert re.search(words, replica["message"]), (name, replica["message"])
    assert outcomes["good"]["outcome"] == "success"
    assert outcomes["good"]["output_sha256"] == hashlib.sha256(hash_chain("good", 1000).encode()).hexdigest()
    assert client.output().count("refused app") == 3


def test_ctrl_c_stops_the_client_cleanly_and_the_task_resumes(coordinator, tmp_path):
    rounds = 10_000_000
    coordinator.django(PUBLISH_APP, name="interrupted", folder=str(DEMO_APP))
    single = {"min_quorum": 1, "target_nresults": 1}
    coordinator.django(MAKE_UNITS, app="interrupted", inputs=[chain_input("ctrl-c", rounds)], policy=single)
    client = attach(coordinator, tmp_path, "ada-lovelace")
    client.start()
    checkpoint = wait_for(
        lambda: next(iter(client.data.glob("tasks/*/*/slot/checkpoint")), None), 60, "the first checkpoint"
    )

    client.process.send_signal(signal.SIGINT)

    assert client.wait(10) == 0
    assert not apps_running_in(checkpoint.parent)
    [record] = client.records("interrupted")
    assert record["state"] == "running"
    assert "stopping: running tasks will resume from their checkpoints" in client.output()
    client.start("--exit-when-idle")
    assert client.wait(120) == 0, client.output()
    [replica] = replicas_of(coordinator, "interrupted")
    assert replica["output_sha256"] == hashlib.sha256(hash_chain("ctrl-c", rounds).encode()).hexdigest()
    assert client.records("interrupted")[0]["runs"] == 2


def test_attach_refuses_a_project_whose_key_has_another_fingerprint(coordinator, tmp_path):
    token = coordinator.django(MAKE_VOLUNTEER, username="skeptic")
    client = Tessera(tmp_path / "skeptic")

    refused = client("attach", coordinator.url, "--token", token, "--fingerprint", "SHA256:0000")

    assert refused.returncode == 2
    assert "not attaching" in " ".join(refused.stdout.split())
    assert not list(client.data.glob("projects/*.json"))
    accepted = coordinator.manage("keys", "show").split("fingerprint:")[1].split()[0]
    assert client("attach", coordinator.url, "--token", token, "--fingerprint", accepted).returncode == 0


def test_one_computer_crunches_for_two_projects_by_their_shares(coordinator, tmp_path):
    single = {"min_quorum": 1, "target_nresults": 1}
    with CoordinatorProcess(tmp_path / "second") as second:
        for project, prefix in ((coordinator, "first"), (second, "second")):
            project.django(PUBLISH_APP, name=prefix, folder=str(DEMO_APP))
            inputs = [chain_input(f"{prefix}-{i}", 100_000) for i in range(6)]
            project.django(MAKE_UNITS, app=prefix, inputs=inputs, policy=single)
        client = attach(coordinator, tmp_path, "mary")
        token = second.django(MAKE_VOLUNTEER, username="mary")
        joined = client("attach", second.url, "--token", token, "--name", "second", "--resource-share", "300")
        assert joined.returncode == 0, joined.stdout

        client.start("--exit-when-idle")
        assert client.wait(120) == 0, client.output()

        for project, prefix in ((coordinator, "first"), (second, "second")):
            done = replicas_of(project, prefix)
            assert [(r["state"], r["outcome"]) for r in done] == [("over", "success")] * 6
        status = " ".join(client("status").stdout.split())
        assert "second" in status and "300" in status


def test_a_published_science_app_runs_on_the_client_and_matches_a_direct_run(coordinator, tmp_path):
    assert "montecarlo_pi v3: published" in coordinator.manage("publish_app", "montecarlo_pi")
    parameters = {"seed": 5, "units": 3, "samples_per_unit": 300_000}
    inputs = [data.decode() for data in montecarlo_pi.split(parameters)]
    single = {"min_quorum": 1, "target_nresults": 1}
    coordinator.django(MAKE_UNITS, app="montecarlo_pi", inputs=inputs, policy=single, fpops=6e8)
    client = attach(coordinator, tmp_path, "enrico")

    client.start("--exit-when-idle")
    assert client.wait(120) == 0, client.output()

    replicas = replicas_of(coordinator, "montecarlo_pi")
    assert [(r["state"], r["outcome"]) for r in replicas] == [("over", "success")] * 3
    for replica, data in zip(replicas, inputs, strict=True):
        expected = montecarlo_pi.compute(data.encode(), Checkpoint())
        assert replica["output_sha256"] == hashlib.sha256(expected).hexdigest()
