"""A batch from split to result: crunched by hosts, validated, assimilated by the app."""

import base64
import json

import dramatiq
import pytest
from django.contrib.admin import AdminSite
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.core import keys
from coordinator.scheduler.tasks import after_reports
from coordinator.science import selectors
from coordinator.science.admin import BatchAdmin
from coordinator.science.services import assimilate_due_batches, split_due_batches, submit_batch
from coordinator.testing import SignedHost, make_host, make_scientist
from coordinator.validation.correction import correction_sweep
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Policy
from coordinator.work.models import Batch, BatchState
from coordinator.work.publishing import publish_app
from coordinator.work.selectors import finished_batches
from coordinator.work.services import transition_due_units
from workunits import montecarlo_pi
from workunits.interface import Checkpoint

pytestmark = pytest.mark.django_db

PARAMETERS = {"seed": 21, "units": 6, "samples_per_unit": 20_000}


def crunch_everything(host: SignedHost, *, fail_units: frozenset[int] = frozenset()) -> None:
    """Compute every task the host is given with the app itself; fail the units asked to."""
    reports = []
    for task in host.rpc(tasks=100).json()["tasks"]:
        data = base64.b64decode(task["input_inline"])
        if json.loads(data)["unit"] in fail_units:
            reports.append(Report(replica=task["replica"], status="client_error", cpu_time=1, message="boom"))
        else:
            output = montecarlo_pi.compute(data, Checkpoint())
            reports.append(Report(replica=task["replica"], status="success", cpu_time=1, output=output))
    assert host.rpc(reports=reports).status_code == 200


def settle() -> None:
    for _ in range(3):
        transition_due_units(now=timezone.now())
        validate_due_units(now=timezone.now())


def split_batch_of(parameters: dict, **policy: int) -> Batch:
    publish_app(name="montecarlo_pi", signing_key=keys.create_project_key(keys.project_key_path()))
    batch = submit_batch(
        owner=None,
        app_name="montecarlo_pi",
        name="pi",
        parameters=parameters,
        policy=Policy(**{"min_quorum": 1, "target_nresults": 1, **policy}),
    )
    split_due_batches(now=timezone.now())
    return batch


def test_a_finished_batch_gets_the_apps_result_from_the_canonical_outputs():
    batch = split_batch_of(PARAMETERS)
    assert assimilate_due_batches(now=timezone.now()) == 0  # units are still active

    crunch_everything(SignedHost(*make_host()))
    settle()
    assert assimilate_due_batches(now=timezone.now()) == 1

    batch = Batch.objects.get(pk=batch.pk)
    direct = montecarlo_pi.assimilate(
        (i, montecarlo_pi.compute(data, Checkpoint()))
        for i, data in enumerate(montecarlo_pi.split(PARAMETERS))
    )
    assert batch.state == BatchState.DONE and batch.finished is not None
    assert batch.result.read() == direct
    assert batch.result.name.endswith("result.json") and batch.units_failed == 0
    assert assimilate_due_batches(now=timezone.now()) == 0  # once only


def test_failed_units_are_counted_and_the_result_comes_from_the_rest():
    batch = split_batch_of(PARAMETERS, max_error_results=1, max_total_results=1)

    crunch_everything(SignedHost(*make_host()), fail_units=frozenset({2}))
    settle()
    assimilate_due_batches(now=timezone.now())

    batch = Batch.objects.get(pk=batch.pk)
    assert (batch.state, batch.units_failed) == (BatchState.DONE, 1)
    assert json.loads(batch.result.read())["samples"] == 5 * PARAMETERS["samples_per_unit"]


@pytest.mark.django_db(transaction=True)
def test_the_report_that_settles_a_batchs_last_unit_gets_it_assimilated_without_the_sweep(empty_broker):
    batch = split_batch_of(PARAMETERS)
    worker = dramatiq.Worker(empty_broker, worker_timeout=50)
    worker.start()
    try:
        crunch_everything(SignedHost(*make_host()))  # the reports hint after_reports
        for _ in range(3):  # after_reports, then the assimilation it announced
            empty_broker.join(after_reports.queue_name, fail_fast=True, timeout=30_000)
            worker.join()
    finally:
        worker.stop()

    batch.refresh_from_db()
    assert batch.state == BatchState.DONE and batch.result
    assert finished_batches(batch.units.values_list("pk", flat=True)) == []  # running no more


def test_outputs_the_assimilator_cannot_read_end_the_batch_with_the_error_and_spare_the_others():
    """Found by the scenario runner: colluders who agree on a non-JSON lie make it canonical,
    and the assimilator raised on every sweep, so no batch finished any more."""
    fooled = split_batch_of(PARAMETERS)
    liar = SignedHost(*make_host())
    tasks = liar.rpc(tasks=100).json()["tasks"]
    lies = [Report(replica=t["replica"], status="success", cpu_time=1, output=b"agreed lie") for t in tasks]
    assert liar.rpc(reports=lies).status_code == 200
    settle()
    sound = submit_batch(
        owner=None,
        app_name="montecarlo_pi",
        name="sound",
        parameters=PARAMETERS,
        policy=Policy(min_quorum=1, target_nresults=1),
    )
    split_due_batches(now=timezone.now())
    crunch_everything(SignedHost(*make_host()))
    settle()

    assert assimilate_due_batches(now=timezone.now()) == 2

    fooled, sound = Batch.objects.get(pk=fooled.pk), Batch.objects.get(pk=sound.pk)
    assert fooled.state == BatchState.DONE and not fooled.result
    assert fooled.assimilation_error.startswith("JSONDecodeError: Expecting value")
    assert sound.state == BatchState.DONE and json.loads(sound.result.read())["samples"] > 0
    assert sound.assimilation_error == ""


def test_a_correction_after_assimilation_makes_the_result_again_and_names_the_changed_units(client, settings):
    """Two colluders' agreed lie is assimilated; an established host's audit overturns it,
    the batch's result is made again from the corrected outputs, and the scientist sees which
    units changed in the API and the admin."""
    # The batch is in its tail, so the dispute's replicas wait for reliable hosts first; the
    # auditors here are established but not reliable, so let them have them at once.
    settings.TESSERA = {**settings.TESSERA, "ACCELERATED_WAIT_SECONDS": 0}
    batch = split_batch_of({**PARAMETERS, "units": 2}, min_quorum=2, target_nresults=2)
    for colluder in (SignedHost(*make_host()) for _ in range(2)):
        tasks = colluder.rpc(tasks=100).json()["tasks"]
        lies = [
            Report(
                replica=t["replica"], status="success", cpu_time=1, output=b'{"inside": 0, "samples": 20000}'
            )
            for t in tasks
        ]
        assert colluder.rpc(reports=lies).status_code == 200
    settle()
    assert assimilate_due_batches(now=timezone.now()) == 1
    assert json.loads(Batch.objects.get(pk=batch.pk).result.read())["pi"] == 0, "the lie"

    auditors = [SignedHost(*make_host(established=True)) for _ in range(2)]
    auditors[0].rpc()
    for _ in range(3):
        correction_sweep(now=timezone.now())
        settle()
        for auditor in auditors:
            crunch_everything(auditor)
        settle()
    assert assimilate_due_batches(now=timezone.now()) == 1

    batch = Batch.objects.get(pk=batch.pk)
    direct = montecarlo_pi.assimilate(
        (i, montecarlo_pi.compute(data, Checkpoint()))
        for i, data in enumerate(montecarlo_pi.split(batch.parameters))
    )
    assert batch.revision == 1 and not batch.reassimilate
    assert batch.result.read() == direct
    assert selectors.corrected_units(batch) == [0, 1]
    assert "2 unit(s) had a cheater's answer replaced" in BatchAdmin(Batch, AdminSite()).corrections(batch)
    scientist, token = make_scientist()
    Batch.objects.filter(pk=batch.pk).update(owner=scientist)
    reply = client.get(f"/api/v1/batches/{batch.pk}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert (reply["revision"], reply["corrected_units"]) == (1, [0, 1])
