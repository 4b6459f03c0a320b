"""Clean-up: spare outputs go after assimilation; everything but the result goes after the
retention period; nothing a late host or the validator still needs is touched."""

import base64
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.core import keys
from coordinator.science import cleanup
from coordinator.science.services import assimilate_due_batches, split_due_batches, submit_batch
from coordinator.testing import SignedHost, make_host
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Policy, ReplicaState, ValidateState
from coordinator.work.models import Batch, Replica
from coordinator.work.publishing import publish_app
from coordinator.work.services import transition_due_units
from workunits import montecarlo_pi
from workunits.interface import Checkpoint

pytestmark = pytest.mark.django_db


def finished_batch(units: int = 3, *, vouched: bool = True) -> Batch:
    """A montecarlo_pi batch crunched by two hosts that upload their outputs as files; one of
    them established (so its results are vouched for) unless ``vouched`` is false."""
    publish_app(name="montecarlo_pi", signing_key=keys.create_project_key(keys.project_key_path()))
    batch = submit_batch(
        owner=None,
        app_name="montecarlo_pi",
        name="pi",
        parameters={"seed": 5, "units": units, "samples_per_unit": 500},
        policy=Policy(min_quorum=2, target_nresults=2),
    )
    split_due_batches(now=timezone.now())
    for index in range(2):
        host = SignedHost(*make_host(established=vouched and index == 0))
        reports = []
        for task in host.rpc(tasks=100).json()["tasks"]:
            output = montecarlo_pi.compute(base64.b64decode(task["input_inline"]), Checkpoint())
            assert host.upload(task["replica"], output).status_code == 204
            reports.append(Report(replica=task["replica"], status="success", output=output, inline=False))
        assert host.rpc(reports=reports).status_code == 200
    for _ in range(3):
        transition_due_units(now=timezone.now())
        validate_due_units(now=timezone.now())
    assert assimilate_due_batches(now=timezone.now()) == 1
    return Batch.objects.get(pk=batch.pk)


def stored(replicas) -> list[bool]:
    return [default_storage.exists(r.output_file.name) for r in replicas]


def test_after_assimilation_only_the_canonical_outputs_stay():
    batch = finished_batch()
    replicas = list(Replica.objects.filter(workunit__batch=batch).select_related("workunit"))
    canonical = [r for r in replicas if r.pk == r.workunit.canonical_replica_id]
    spare = [r for r in replicas if r.pk != r.workunit.canonical_replica_id]
    assert len(canonical) == len(spare) == 3 and all(stored(replicas))
    # One spare result is still waiting for the validator: it must keep its output.
    waiting = spare.pop()
    Replica.objects.filter(pk=waiting.pk).update(validate_state=ValidateState.INIT)

    assert cleanup.clean_assimilated_batches() == 2

    assert stored(canonical) == [True] * 3 and stored(spare) == [False] * 2
    assert default_storage.exists(waiting.output_file.name)
    cleared = Replica.objects.filter(pk__in=[r.pk for r in spare])
    assert set(cleared.values_list("output_file", "output_inline")) == {("", None)}
    assert Batch.objects.get(pk=batch.pk).cleaned
    assert cleanup.clean_assimilated_batches() == 0  # once only
    assert Batch.objects.get(pk=batch.pk).result.read()  # the result is untouched


def test_outputs_of_units_nobody_vouched_for_stay_for_their_audit():
    """Found by the collusion tests: cleaning a unit an audit could reopen deleted the output
    that became canonical, and the corrected batch could not be assimilated again."""
    batch = finished_batch(vouched=False)

    assert cleanup.clean_assimilated_batches() == 0
    assert all(stored(Replica.objects.filter(workunit__batch=batch)))
    assert Batch.objects.get(pk=batch.pk).cleaned


def test_a_retired_batch_loses_its_inputs_and_outputs_but_keeps_its_result(settings):
    settings.BATCH_RETENTION_DAYS = 30
    batch = finished_batch()
    files = [r.output_file.name for r in Replica.objects.filter(workunit__batch=batch)]
    now = timezone.now()

    assert cleanup.purge_retired_batches(now=now + timedelta(days=29)) == 0  # not old enough
    assert cleanup.purge_retired_batches(now=now + timedelta(days=31)) == 6

    assert not any(default_storage.exists(name) for name in files)
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.purged is not None and batch.result.read()
    assert not batch.units.filter(input_inline__isnull=False).exists()
    assert not Replica.objects.filter(workunit__batch=batch).exclude(output_file="").exists()
    assert cleanup.purge_retired_batches(now=now + timedelta(days=40)) == 0  # once only


def test_a_batch_with_a_host_still_crunching_is_not_purged(settings):
    settings.BATCH_RETENTION_DAYS = 1
    batch = finished_batch(units=1)
    late = Replica.objects.filter(workunit__batch=batch).exclude(pk=batch.units.get().canonical_replica_id)
    late.update(state=ReplicaState.IN_PROGRESS, outcome="init", deadline=timezone.now() + timedelta(days=3))
    assert cleanup.retired_batches(now=timezone.now() + timedelta(days=2)) == []
