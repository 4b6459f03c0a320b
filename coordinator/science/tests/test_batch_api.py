"""The scientists' API: submit, watch, cancel, fetch; bad input changes nothing; scientists
are isolated from each other."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.core import keys
from coordinator.science import cleanup, services
from coordinator.science.services import split_due_batches
from coordinator.testing import SignedHost, assert_error, make_host, make_scientist, make_volunteer
from coordinator.work.lifecycle import FailureReason, Outcome, ReplicaState, UnitState
from coordinator.work.models import Batch, BatchState, Replica, WorkUnit
from coordinator.work.publishing import publish_app
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db

PI = {"seed": 3, "units": 4, "samples_per_unit": 1000}
SIR_REST = {"seed": 1, "population": 200, "initial_infected": 2, "days": 30, "runs": 2}


@pytest.fixture
def published():
    key = keys.create_project_key(keys.project_key_path())
    for name in ("montecarlo_pi", "sir_sweep"):
        publish_app(name=name, signing_key=key)


def api(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def submit(client: Client, **body):
    return client.post("/api/v1/batches", json.dumps(body), content_type="application/json")


def nothing_made() -> bool:
    return not Batch.objects.exists() and not WorkUnit.objects.exists()


def test_a_scientist_submits_watches_and_the_splitter_makes_the_units(published):
    _, token = make_scientist()
    client = api(token)

    reply = submit(client, app="montecarlo_pi", name="pi run", parameters=PI, min_quorum=1, target_nresults=1)

    assert reply.status_code == 201, reply.content
    batch = reply.json()
    assert (batch["state"], batch["units"]["planned"], batch["result_url"]) == ("splitting", 4, None)
    split_due_batches(now=timezone.now())
    watched = client.get(f"/api/v1/batches/{batch['id']}").json()
    assert watched["state"] == "running"
    assert watched["units"] == {"planned": 4, "waiting": 4, "in_progress": 0, "validated": 0, "failed": 0}
    assert [b["id"] for b in client.get("/api/v1/batches").json()["results"]] == [batch["id"]]


def test_a_csv_table_comes_as_a_multipart_upload(published):
    _, token = make_scientist()
    table = SimpleUploadedFile("sweep.csv", b"beta,gamma\n0.2,0.1\n0.5,0.1\n0.9,0.3\n")

    reply = api(token).post(
        "/api/v1/batches",
        {"app": "sir_sweep", "name": "sweep", "parameters": json.dumps(SIR_REST), "parameter_file": table},
    )

    assert reply.status_code == 201, reply.content
    assert reply.json()["units"]["planned"] == 3
    assert Batch.objects.get().parameters["points"][2] == {"beta": 0.9, "gamma": 0.3}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"app": "nope", "name": "x", "parameters": PI}, 404, "there is no app 'nope'"),
        ({"app": "montecarlo_pi", "name": "x"}, 400, "send parameters"),
        ({"app": "montecarlo_pi", "name": "x", "parameters": [1]}, 400, "must be a JSON object"),
        ({"app": "montecarlo_pi", "name": "x", "parameters": {**PI, "units": 0}}, 400, "units must be"),
        (
            {"app": "montecarlo_pi", "name": "x", "parameters": {**PI, "colour": 1}},
            400,
            "unknown parameter(s): colour",
        ),
        (
            {"app": "montecarlo_pi", "name": "x", "parameters": PI, "min_quorum": 3},
            400,
            "target_nresults must be",
        ),
        ({"app": "montecarlo_pi", "name": "x", "parameters": PI, "priority": 1000}, 400, "priority"),
        ({"app": "mandelbrot", "name": "x", "parameters": {}}, 400, "no published version"),
    ],
)
def test_bad_json_submissions_are_refused_clearly_and_make_nothing(published, body, status, says):
    _, token = make_scientist()
    reply = submit(api(token), **body)
    assert_error(reply, status)
    assert says in json.dumps(reply.json()["detail"])
    assert nothing_made()


@pytest.mark.parametrize(
    ("name", "data", "status", "says"),
    [
        ("sweep.csv", b"", 400, "is empty"),
        ("sweep.csv", b"beta,gama\n0.1,0.1\n", 400, "line 1: the columns must be beta, gamma"),
        ("sweep.csv", b"beta,gamma\n0.1,0.1\n0.2,x\n", 400, "line 3, gamma: 'x' is not a number"),
        ("sweep.csv", b"beta,gamma\n0.1,0.1\n\n0.2,11\n", 400, "line 4, gamma is 11"),
        ("sweep.json", b'{"seed": 1,', 400, "line 1, column 12"),
        ("sweep.csv", b"beta,gamma\n" + b"0.1,0.1\n" * 200, 413, "at most"),
    ],
)
def test_bad_parameter_files_are_refused_naming_the_line_and_make_nothing(
    published, settings, name, data, status, says
):
    settings.BATCH_PARAMETER_FILE_MAX_BYTES = 1000
    _, token = make_scientist()
    reply = api(token).post(
        "/api/v1/batches",
        {
            "app": "sir_sweep",
            "name": "x",
            "parameters": json.dumps(SIR_REST),
            "parameter_file": SimpleUploadedFile(name, data),
        },
    )
    body = assert_error(reply, status)
    assert says in body["detail"] and name in body["detail"]
    assert nothing_made()


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer tss_forged", 401), ("Token tss_x", 401), ("Bearer tsr_volunteer", 401)],
)
def test_the_api_wants_a_scientist_token(published, header, status):
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    assert_error(client.get("/api/v1/batches"), status)
    assert_error(submit(client, app="montecarlo_pi", name="x", parameters=PI), status)
    assert nothing_made()


def test_a_volunteer_token_or_a_scientist_who_left_the_group_gets_nothing(published):
    _, volunteer_token = make_volunteer()
    assert_error(api(volunteer_token).get("/api/v1/batches"), 401)
    user, token = make_scientist()
    user.groups.clear()
    assert_error(api(token).get("/api/v1/batches"), 401)


def test_scientists_never_see_or_touch_each_others_batches(published):
    _, alice = make_scientist("alice")
    _, bob = make_scientist("bob")
    mine = submit(api(alice), app="montecarlo_pi", name="alice's", parameters=PI).json()["id"]
    split_due_batches(now=timezone.now())

    assert api(bob).get("/api/v1/batches").json()["results"] == []
    for path in ("", "/result", "/failures"):
        assert_error(api(bob).get(f"/api/v1/batches/{mine}{path}"), 404, "unknown_batch")
    assert_error(api(bob).post(f"/api/v1/batches/{mine}/cancel"), 404, "unknown_batch")
    assert Batch.objects.get(pk=mine).state == BatchState.RUNNING
    assert_error(api(alice).get(f"/api/v1/batches/{mine + 1}"), 404, "unknown_batch")


def test_cancelling_withdraws_unsent_work_and_tells_hosts_to_abort(published):
    _, token = make_scientist()
    batch_id = submit(api(token), app="montecarlo_pi", name="pi", parameters=PI).json()["id"]
    split_due_batches(now=timezone.now())
    host = SignedHost(*make_host())
    tasks = host.rpc(tasks=2).json()["tasks"]
    held = sorted(task["replica"] for task in tasks)
    assert len(held) == 2

    reply = api(token).post(f"/api/v1/batches/{batch_id}/cancel")

    assert reply.status_code == 200 and reply.json()["state"] == "cancelled"
    units = WorkUnit.objects.filter(batch_id=batch_id)
    assert set(units.values_list("state", "failure_reason")) == {(UnitState.FAILED, FailureReason.CANCELLED)}
    replicas = Replica.objects.filter(workunit__batch_id=batch_id)
    assert not replicas.filter(state__in=[ReplicaState.UNSENT, ReplicaState.IN_PROGRESS]).exists()
    assert replicas.filter(outcome=Outcome.DIDNT_NEED).count() == replicas.count() == 8
    # Nothing more goes out, and the host hears which of its tasks to abort (only its own).
    other = SignedHost(*make_host())
    assert other.rpc(tasks=10).json()["tasks"] == []
    assert other.rpc(tasks=0, in_progress=held).json()["abort"] == []
    assert host.rpc(in_progress=[*held, 999_999]).json()["abort"] == held
    # A result it finished anyway is thanked for and dropped: no credit.
    late = Report(replica=held[0], status="success", cpu_time=1, output=b"{}")
    acks = host.rpc(reports=[late]).json()["acks"]
    assert acks == [{"replica": held[0], "status": "cancelled"}]
    assert Replica.objects.get(pk=held[0]).granted_credit is None
    # Cancelling again is harmless; the sweep finds nothing more to do.
    assert api(token).post(f"/api/v1/batches/{batch_id}/cancel").status_code == 200
    assert transition_due_units(now=timezone.now()) == 0
    assert_error(api(token).get(f"/api/v1/batches/{batch_id}/result"), 409, "no_result")


def test_a_batch_that_is_done_cannot_be_cancelled(published):
    _, token = make_scientist()
    batch_id = submit(api(token), app="montecarlo_pi", name="pi", parameters=PI).json()["id"]
    Batch.objects.filter(pk=batch_id).update(state=BatchState.DONE)
    assert_error(api(token).post(f"/api/v1/batches/{batch_id}/cancel"), 409, "batch_finished")


def test_a_batch_the_app_could_not_assimilate_says_why_and_has_no_result(published):
    _, token = make_scientist()
    batch_id = submit(api(token), app="montecarlo_pi", name="pi", parameters=PI).json()["id"]
    error = "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
    Batch.objects.filter(pk=batch_id).update(state=BatchState.DONE, assimilation_error=error)

    watched = api(token).get(f"/api/v1/batches/{batch_id}").json()
    assert (watched["state"], watched["result_url"], watched["assimilation_error"]) == ("done", None, error)
    refused = api(token).get(f"/api/v1/batches/{batch_id}/result")
    assert_error(refused, 409, "assimilation_failed")
    assert error in refused.json()["detail"]


def test_a_big_cancel_answers_at_once_and_a_worker_calls_off_the_rest(published, monkeypatch, empty_broker):
    _, token = make_scientist()
    batch_id = submit(api(token), app="montecarlo_pi", name="pi", parameters=PI).json()["id"]
    split_due_batches(now=timezone.now())
    monkeypatch.setattr(services, "CANCEL_CHUNK", 1)
    monkeypatch.setattr(services, "CANCEL_REQUEST_SECONDS", 0.0)

    assert api(token).post(f"/api/v1/batches/{batch_id}/cancel").json()["state"] == "cancelled"

    units = WorkUnit.objects.filter(batch_id=batch_id)
    assert units.filter(state=UnitState.ACTIVE).count() == 3, "one chunk in the request, the rest later"
    queued = [json.loads(m)["actor_name"] for m in list(empty_broker.queues["default"].queue)]
    assert queued == ["finish_cancel"]
    assert cleanup.finish_cancelled_batches(now=timezone.now()) == 3
    assert not units.filter(state=UnitState.ACTIVE).exists()
    assert Batch.objects.get(pk=batch_id).cleaned
    assert cleanup.finish_cancelled_batches(now=timezone.now()) == 0
