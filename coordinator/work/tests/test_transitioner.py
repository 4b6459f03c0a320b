"""The transitioner applied to the database: sweeps, idempotence, two workers at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import dramatiq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordinator.testing import make_app, make_units
from coordinator.work import services
from coordinator.work.lifecycle import FailureReason, Outcome, ReplicaState, UnitState
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.tasks import transition_sweep


def bare_units(app, count: int, now, prefix: str = "bare", **fields) -> list[WorkUnit]:
    """Units as a bulk splitter writes them: no replicas yet, due at ``now``."""
    return WorkUnit.objects.bulk_create(
        WorkUnit(
            app=app,
            name=f"{prefix}-{app.name}-{i}",
            input_inline=b"x",
            input_sha256="0" * 64,
            input_size=1,
            transition_time=now,
            **fields,
        )
        for i in range(count)
    )


@pytest.mark.django_db
def test_a_new_unit_starts_with_its_target_replicas():
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=3)[0]

    assert unit.replicas.filter(state=ReplicaState.UNSENT).count() == 3
    assert unit.transition_time is None


@pytest.mark.django_db
def test_new_units_are_inserted_as_the_lifecycle_leaves_them_and_not_updated_after():
    """An UPDATE of a unit writes a new version of its row into each of its indexes: units a
    split makes are written once."""
    app = make_app()
    with CaptureQueriesContext(connection) as queries:
        units = make_units(app, 3)
    written = [q["sql"] for q in queries.captured_queries if 'UPDATE "work_workunit"' in q["sql"]]
    assert written == []
    assert Replica.objects.filter(workunit__in=units, state=ReplicaState.UNSENT).count() == 6
    assert not WorkUnit.objects.filter(pk__in=[u.pk for u in units], transition_time__isnull=False).exists()


@pytest.mark.django_db
def test_the_sweep_creates_replicas_for_due_units_and_a_second_sweep_changes_nothing():
    now = timezone.now()
    units = bare_units(make_app(), 30, now)

    changed = services.transition_due_units(now=now, chunk=7)
    snapshot = list(Replica.objects.order_by("id").values_list("id", "workunit_id", "state"))
    changed_again = services.transition_due_units(now=now)

    assert changed == 30 and changed_again == 0
    assert list(Replica.objects.order_by("id").values_list("id", "workunit_id", "state")) == snapshot
    assert all(WorkUnit.objects.get(pk=u.pk).replicas.count() == 2 for u in units)


@pytest.mark.django_db
def test_one_pass_takes_the_units_other_reports_marked_and_leaves_later_ones():
    now = timezone.now()
    app = make_app()
    mine = bare_units(app, 3, now)
    waiting = {u.pk for u in bare_units(app, 5, now - timedelta(seconds=1), prefix="waiting")}
    later = bare_units(app, 1, now + timedelta(seconds=30), prefix="later")[0]

    taken = services.transition_units_and_waiting(unit_ids=[u.pk for u in mine], now=now, chunk=4)

    assert set(taken) >= {u.pk for u in mine} and later.pk not in taken
    assert len(set(taken) & waiting) == 4, "a chunk's worth of the others, oldest first"
    for unit in WorkUnit.objects.filter(pk__in=taken):
        assert unit.replicas.count() == 2 and unit.transition_time is None
    assert WorkUnit.objects.get(pk=later.pk).replicas.count() == 0, "not due yet"
    again = services.transition_units_and_waiting(unit_ids=[u.pk for u in mine], now=now)
    assert again == sorted(waiting - set(taken)), "a later message for the same units finds them done"


@pytest.mark.django_db
def test_replicas_past_their_deadline_time_out_without_a_scheduled_transition():
    unit = make_units(make_app(), 1, delay_bound=60, max_error_results=5)[0]
    replica = unit.replicas.first()
    from coordinator.testing import make_host

    host, _ = make_host()
    sent = timezone.now()
    Replica.objects.filter(pk=replica.pk).update(
        state=ReplicaState.IN_PROGRESS,
        host=host,
        volunteer=host.volunteer,
        sent_at=sent,
        deadline=sent + timedelta(seconds=60),
    )
    assert WorkUnit.objects.get(pk=unit.pk).transition_time is None

    assert services.transition_due_units(now=sent + timedelta(seconds=59)) == 0
    services.transition_due_units(now=sent + timedelta(seconds=60))

    replica.refresh_from_db()
    assert (replica.state, replica.outcome) == (ReplicaState.OVER, Outcome.NO_REPLY)
    assert unit.replicas.filter(state=ReplicaState.UNSENT).count() == 2, "reissued"


@pytest.mark.django_db
def test_a_units_later_replicas_go_out_before_fresh_work():
    """Found by the scenario runner: reissued replicas queued behind the whole batch, so a
    disputed unit, and the cheater in it, waited for the batch's end to be settled."""
    from coordinator.scheduler.dispatch import WorkRequest, claim_work
    from coordinator.testing import make_host

    app = make_app()
    timed_out = make_units(app, 1, delay_bound=60, max_error_results=5)[0]
    first, _ = make_host()
    sent = timezone.now()
    Replica.objects.filter(pk=timed_out.replicas.first().pk).update(
        state=ReplicaState.IN_PROGRESS,
        host=first,
        volunteer=first.volunteer,
        sent_at=sent,
        deadline=sent + timedelta(seconds=60),
    )
    fresh = make_units(app, 3)  # queued after the first unit's replicas, before its reissues
    services.transition_due_units(now=sent + timedelta(seconds=60))

    reissue = timed_out.replicas.get(state=ReplicaState.UNSENT, priority=services.RETRY_PRIORITY)
    assert reissue.reliable_until is not None, "a reissue waits for a reliable host first (docs/batches.md)"
    host, _ = make_host()  # not reliable: it gets the reissue once it has waited for one
    claimed = claim_work(host=host, request=WorkRequest(tasks=1), now=reissue.reliable_until)

    assert [a.replica_id for a in claimed] == [reissue.pk]
    assert all(r.priority == 0 for u in fresh for r in u.replicas.all())


@pytest.mark.django_db
def test_too_many_errors_fails_the_unit_with_its_reason_and_cancels_unsent():
    unit = make_units(make_app(), 1, max_error_results=1, max_total_results=6)[0]
    Replica.objects.filter(workunit=unit).update(state=ReplicaState.OVER, outcome=Outcome.CLIENT_ERROR)
    WorkUnit.objects.filter(pk=unit.pk).update(transition_time=timezone.now())

    services.transition_due_units(now=timezone.now())

    unit.refresh_from_db()
    assert (unit.state, unit.failure_reason) == (UnitState.FAILED, FailureReason.TOO_MANY_ERRORS)
    assert not unit.replicas.filter(state=ReplicaState.UNSENT).exists()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_actor_runs_on_a_real_dramatiq_worker():
    now = timezone.now()
    units = bare_units(make_app(), 5, now)
    broker = dramatiq.get_broker()
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    try:
        transition_sweep.send()
        broker.join(transition_sweep.queue_name, timeout=20_000)
        worker.join()
    finally:
        worker.stop()

    assert Replica.objects.filter(workunit__in=units).count() == 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_transitioners_at_once_create_each_replica_once():
    now = timezone.now()
    units = bare_units(make_app(), 400, now, target_nresults=3, min_quorum=2)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            start.wait()
            services.transition_due_units(now=now, chunk=50)
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    counts = {u: 0 for u in (unit.pk for unit in units)}
    for unit_id in Replica.objects.values_list("workunit_id", flat=True):
        counts[unit_id] += 1
    assert set(counts.values()) == {3}
