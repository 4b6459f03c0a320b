"""Batches: checked whole before anything is made, then split in chunks that resume exactly."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.utils import timezone

from coordinator.core import keys
from coordinator.core.errors import InvalidInput, NotFound
from coordinator.core.statistics import planner_rows
from coordinator.science.services import split_due_batches, split_next_chunk, submit_batch
from coordinator.work.lifecycle import Policy
from coordinator.work.models import Batch, BatchState, Replica, WorkUnit
from coordinator.work.publishing import publish_app
from workunits import montecarlo_pi

pytestmark = pytest.mark.django_db

PARAMETERS = {"seed": 9, "units": 25, "samples_per_unit": 1000}


@pytest.fixture
def published():
    publish_app(name="montecarlo_pi", signing_key=keys.create_project_key(keys.project_key_path()))


def submit(parameters=PARAMETERS, **options):
    return submit_batch(owner=None, app_name="montecarlo_pi", name="pi", parameters=parameters, **options)


def test_a_batch_is_checked_and_counted_before_any_unit_is_made(published):
    batch = submit(policy=Policy(min_quorum=1, target_nresults=1), priority=3)

    assert (batch.state, batch.units_planned, batch.units_created) == (BatchState.SPLITTING, 25, 0)
    assert not WorkUnit.objects.exists()


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"seed": 9, "units": 0, "samples_per_unit": 10}, "units must be a whole number"),
        ({"seed": 9, "units": 3}, "samples_per_unit"),
        ("not an object", "JSON object"),
        ({"seed": 9, "units": 3, "samples_per_unit": 10, "extra": 1}, "unknown parameter"),
    ],
)
def test_bad_parameters_refuse_the_batch_and_make_nothing(published, parameters, words):
    with pytest.raises(InvalidInput, match=words):
        submit(parameters)

    assert not Batch.objects.exists() and not WorkUnit.objects.exists()


def test_an_unknown_or_unpublished_app_is_refused(published):
    with pytest.raises(NotFound, match="no app 'nope'"):
        submit_batch(owner=None, app_name="nope", name="x", parameters={})
    with pytest.raises(InvalidInput, match="publish_app sir_sweep"):
        submit_batch(owner=None, app_name="sir_sweep", name="x", parameters={})


def test_splitting_goes_chunk_by_chunk_and_each_unit_gets_its_input_and_replicas(published):
    batch = submit(policy=Policy(min_quorum=2, target_nresults=3), priority=3)
    now = timezone.now()

    assert split_next_chunk(batch_id=batch.pk, now=now, chunk=10) == 10
    batch.refresh_from_db()
    assert (batch.state, batch.units_created) == (BatchState.SPLITTING, 10)
    assert split_next_chunk(batch_id=batch.pk, now=now, chunk=10) == 10
    assert split_next_chunk(batch_id=batch.pk, now=now, chunk=10) == 5
    assert split_next_chunk(batch_id=batch.pk, now=now, chunk=10) == 0

    batch.refresh_from_db()
    assert (batch.state, batch.units_created) == (BatchState.RUNNING, 25)
    units = list(batch.units.order_by("batch_index"))
    expected = list(montecarlo_pi.split(PARAMETERS))
    assert [bytes(u.input_inline) for u in units] == expected
    assert [u.batch_index for u in units] == list(range(25))
    assert {(u.priority, u.min_quorum, u.fpops_estimate) for u in units} == {(3, 2, 2e9)}
    assert Replica.objects.filter(workunit__batch=batch).count() == 75
    assert json.loads(expected[24])["unit"] == 24


def test_the_sweep_finishes_every_splitting_batch(published):
    first, second = submit(), submit({"seed": 1, "units": 3, "samples_per_unit": 5})

    made = split_due_batches(now=timezone.now())

    assert made == 28
    assert set(Batch.objects.values_list("state", flat=True)) == {BatchState.RUNNING}
    assert first.units.count() == 25 and second.units.count() == 3
    assert split_due_batches(now=timezone.now()) == 0  # a second run changes nothing


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_splitters_at_once_make_each_unit_once(published):
    batch = submit({"seed": 2, "units": 60, "samples_per_unit": 5})

    def splitter() -> int:
        try:
            made = 0
            while step := split_next_chunk(batch_id=batch.pk, now=timezone.now(), chunk=7):
                made += step
            return made
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(lambda _: splitter(), range(2)))

    assert sum(made) == 60
    assert sorted(batch.units.values_list("batch_index", flat=True)) == list(range(60))


def test_one_splitting_run_goes_through_the_splitter_once(published, monkeypatch):
    calls = []
    real_split = montecarlo_pi.split

    def counted(parameters):
        calls.append(1)
        return real_split(parameters)

    monkeypatch.setattr(montecarlo_pi, "split", counted)
    monkeypatch.setattr("coordinator.science.services.SPLIT_CHUNK", 4)
    batch = submit()

    assert split_due_batches(now=timezone.now()) == 25
    assert len(calls) == 2  # the check at submission, then one pass for all seven chunks
    assert sorted(batch.units.values_list("batch_index", flat=True)) == list(range(25))


def test_a_batchs_first_chunk_is_small_so_volunteers_start_at_once(published, monkeypatch):
    monkeypatch.setattr("coordinator.science.services.SPLIT_FIRST_CHUNK", 3)
    monkeypatch.setattr("coordinator.science.services.SPLIT_CHUNK", 10)
    batch = submit()
    now = timezone.now()

    made = [split_next_chunk(batch_id=batch.pk, now=now) for _ in range(5)]

    assert made == [3, 10, 10, 2, 0]
    assert sorted(batch.units.values_list("batch_index", flat=True)) == list(range(25))


@pytest.mark.postgres
def test_a_split_that_outgrows_the_planners_statistics_refreshes_them(published):
    """Dispatch plans on these tables while the batch splits; with the statistics of the empty
    tables PostgreSQL planned it as a loop over every unit (100 times slower)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE work_workunit, work_replica")
    assert planner_rows(WorkUnit) == 0
    parameters = {"seed": 3, "units": 2500, "samples_per_unit": 1}
    batch = submit(parameters, policy=Policy(min_quorum=2, target_nresults=2))

    assert split_due_batches(now=timezone.now()) == 2500

    assert batch.units.count() == 2500
    # Analyzed after the first chunk (1,000 > 0) and the second (1,000 > 500), not the third
    # (500 is not more than half of 2,000).
    assert planner_rows(WorkUnit) == pytest.approx(2000, rel=0.05)
    assert planner_rows(Replica) == pytest.approx(4000, rel=0.05)
