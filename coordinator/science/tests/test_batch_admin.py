"""Batches in the admin site: the submit form, the watch page, the result, cancelling, the API
token; a scientist sees only their own batches."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from coordinator.core import keys
from coordinator.science.forms import BatchSubmitForm
from coordinator.science.services import split_due_batches, submit_batch
from coordinator.testing import PASSWORD, make_scientist
from coordinator.work.lifecycle import FailureReason
from coordinator.work.models import Batch, BatchState, WorkUnit
from coordinator.work.publishing import publish_app

pytestmark = pytest.mark.django_db

ADD = "/admin/work/batch/add/"
SIR_REST = {"seed": 1, "population": 200, "initial_infected": 2, "days": 30, "runs": 2}
FORM = {
    "name": "sweep",
    "app_name": "sir_sweep",
    "min_quorum": 2,
    "target_nresults": 2,
    "max_error_results": 3,
    "max_total_results": 6,
    "priority": 0,
    "deadline_hours": 24,
}


@pytest.fixture
def published():
    key = keys.create_project_key(keys.project_key_path())
    for name in ("sir_sweep", "mandelbrot"):
        publish_app(name=name, signing_key=key)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def batch_for(user, name: str = "mine") -> Batch:
    return submit_batch(
        owner=user,
        app_name="sir_sweep",
        name=name,
        parameters={**SIR_REST, "beta": [0.3], "gamma": [0.1, 0.2]},
    )


def test_a_scientist_submits_a_csv_through_the_form_and_the_splitter_is_asked_at_once(
    published, empty_broker, django_capture_on_commit_callbacks
):
    user, _ = make_scientist()
    client = signed_in(user)
    assert "sir_sweep" in client.get(ADD).content.decode()

    table = SimpleUploadedFile("sweep.csv", b"beta,gamma\n0.2,0.1\n0.4,0.1\n")
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(ADD, {**FORM, "parameter_file": table, "parameters_json": json.dumps(SIR_REST)})

    assert page.status_code == 302, page.content.decode()[:3000]
    batch = Batch.objects.get()
    assert (batch.owner, batch.units_planned, batch.delay_bound) == (user, 2, 24 * 3600)
    queued = [json.loads(m)["actor_name"] for m in list(empty_broker.queues["default"].queue)]
    assert queued == ["split_batch"]


def test_typed_json_parameters_are_enough(published):
    user, _ = make_scientist()
    page = signed_in(user).post(
        ADD, {**FORM, "parameters_json": json.dumps({**SIR_REST, "beta": [0.2], "gamma": [0.1, 0.2]})}
    )
    assert page.status_code == 302
    assert Batch.objects.get().units_planned == 2


def test_checking_the_form_writes_nothing_until_the_admin_saves(published):
    user, _ = make_scientist()
    parameters = json.dumps({**SIR_REST, "beta": [0.2], "gamma": [0.1, 0.2]})
    form = BatchSubmitForm(data={**FORM, "parameters_json": parameters}, owner=user)

    assert form.is_valid(), form.errors
    assert Batch.objects.count() == 0, "clean() only checks"
    assert form.submission.planned == 2


@pytest.mark.parametrize(
    ("upload", "typed", "says"),
    [
        (("sweep.csv", b""), SIR_REST, "sweep.csv: the parameter file &#x27;sweep.csv&#x27; is empty"),
        (
            ("sweep.csv", b"beta,gamma\n0.2,0.1\n0.4,zero\n"),
            SIR_REST,
            "line 3, gamma: &#x27;zero&#x27; is not a number",
        ),
        (("sweep.csv", b"beta;gamma\n0.2;0.1\n"), SIR_REST, "line 1: the columns must be beta, gamma"),
        (("sweep.json", b'{"seed": 1,\n'), {}, "line 2, column 1"),
        (None, {**SIR_REST, "beta": [0.2], "gamma": [-1]}, "gamma is -1"),
        (None, "{not json", "line 1, column 2"),
        (None, "", "upload a parameter file or type the parameters"),
    ],
)
def test_bad_parameters_are_shown_on_the_form_and_nothing_is_made(published, upload, typed, says):
    user, _ = make_scientist()
    data = {
        **FORM,
        "parameters_json": typed if isinstance(typed, str) else json.dumps(typed) if typed else "",
    }
    if upload:
        data["parameter_file"] = SimpleUploadedFile(*upload)
    page = signed_in(user).post(ADD, data)
    assert page.status_code == 200
    assert says in page.content.decode()
    assert not Batch.objects.exists() and not WorkUnit.objects.exists()


def test_an_unknown_app_cannot_be_chosen(published):
    user, _ = make_scientist()
    page = signed_in(user).post(ADD, {**FORM, "app_name": "nope", "parameters_json": "{}"})
    assert page.status_code == 200 and "Select a valid choice" in page.content.decode()
    assert not Batch.objects.exists()


def test_scientists_see_and_change_only_their_own_batches(published):
    alice, _ = make_scientist("alice")
    bob, _ = make_scientist("bob")
    hers = batch_for(alice, "alice's sweep")
    hers.result.save("r.csv", ContentFile(b"beta,gamma\n"))
    split_due_batches(now=timezone.now())
    as_bob = signed_in(bob)

    assert "alice&#x27;s sweep" not in as_bob.get("/admin/work/batch/").content.decode()
    assert as_bob.get(f"/admin/work/batch/{hers.pk}/change/").status_code == 302  # "does not exist"
    assert as_bob.get(f"/admin/work/batch/{hers.pk}/result/").status_code == 404
    as_bob.post("/admin/work/batch/", {"action": "cancel_batches", "_selected_action": [hers.pk]})
    assert Batch.objects.get(pk=hers.pk).state == BatchState.RUNNING

    as_alice = signed_in(alice)
    assert "alice&#x27;s sweep" in as_alice.get("/admin/work/batch/").content.decode()
    page = as_alice.get(f"/admin/work/batch/{hers.pk}/change/").content.decode()
    assert '<th scope="row">waiting</th><td>2</td>' in page
    assert as_alice.get(f"/admin/work/batch/{hers.pk}/result/").getvalue() == b"beta,gamma\n"


def test_staff_outside_the_group_and_volunteers_are_refused():
    staff = get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)
    assert signed_in(staff).get("/admin/work/batch/").status_code == 403
    assert signed_in(staff).get("/admin/work/batch/api-token/").status_code == 403
    plain = get_user_model().objects.create_user("plain", password=PASSWORD)
    assert signed_in(plain).get("/admin/work/batch/").status_code == 302  # to the login page


def test_the_watch_page_shows_the_picture_and_the_failures(published):
    user, _ = make_scientist()
    batch = submit_batch(
        owner=user,
        app_name="mandelbrot",
        name="tiles",
        parameters={"width": 32, "height": 16, "tile": 16, "max_iterations": 20, "span": 3.0},
    )
    split_due_batches(now=timezone.now())
    WorkUnit.objects.filter(batch=batch, batch_index=1).update(
        state="failed", failure_reason=FailureReason.TOO_MANY_ERRORS
    )
    batch.refresh_from_db()
    batch.result.save("m.png", ContentFile(b"\x89PNG fake"))
    Batch.objects.filter(pk=batch.pk).update(state=BatchState.DONE, finished=timezone.now(), units_failed=1)

    page = signed_in(user).get(f"/admin/work/batch/{batch.pk}/change/").content.decode()

    assert f'<img src="/admin/work/batch/{batch.pk}/result/"' in page
    assert "<td>1</td><td>mandelbrot-" in page and "too_many_errors" in page
    assert '<th scope="row">validated</th><td>1</td>' in page  # the kept counts of a done batch
    assert '<th scope="row">failed</th><td>1</td>' in page


def test_the_watch_page_says_why_a_batch_has_no_result(published):
    user, _ = make_scientist()
    batch = batch_for(user)
    Batch.objects.filter(pk=batch.pk).update(
        state=BatchState.DONE, finished=timezone.now(), assimilation_error="ValueError: <bad> output"
    )

    page = signed_in(user).get(f"/admin/work/batch/{batch.pk}/change/").content.decode()

    assert "no result: the app could not assimilate the outputs (ValueError: &lt;bad&gt; output)" in page


def test_the_cancel_action_stops_a_running_batch(published):
    user, _ = make_scientist()
    batch = batch_for(user)
    split_due_batches(now=timezone.now())

    signed_in(user).post("/admin/work/batch/", {"action": "cancel_batches", "_selected_action": [batch.pk]})

    assert Batch.objects.get(pk=batch.pk).state == BatchState.CANCELLED
    assert set(WorkUnit.objects.values_list("failure_reason", flat=True)) == {FailureReason.CANCELLED}


def test_the_token_page_makes_a_token_the_api_accepts(published):
    user, old = make_scientist()
    page = signed_in(user).post("/admin/work/batch/api-token/").content.decode()
    token = page.split('id="token" type="text" readonly value="')[1].split('"')[0]

    assert token.startswith("tss_") and token != old
    assert Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/batches").status_code == 200
    assert Client(HTTP_AUTHORIZATION=f"Bearer {old}").get("/api/v1/batches").status_code == 401
