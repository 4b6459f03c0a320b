"""When a batch's tail begins (``work.services.mark_batch_tails``), on the database: at
TAIL_FRACTION of its units finished, or once its fresh work is all sent; then its unsent
replicas wait for reliable hosts first and those out are overdue by the app's usual
turnaround at the latest. Found with ``bench.simulate`` (docs/batches.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from coordinator.standing.models import HostAppVersion
from coordinator.testing import make_app, make_host
from coordinator.validation.credit_ratios import refresh_turnarounds
from coordinator.work.lifecycle import Policy, ReplicaState, UnitState
from coordinator.work.models import App, Batch, BatchState, Replica
from coordinator.work.services import UnitSpec, create_work_units
from coordinator.work.tails import mark_batch_tails

pytestmark = pytest.mark.django_db
HOUR = 3600


def batch_of(app: App, units: int) -> Batch:
    batch = Batch.objects.create(
        name=f"b{units}", app=app, state=BatchState.RUNNING, units_planned=units, units_created=units
    )
    create_work_units(
        app=app,
        specs=[UnitSpec(f"{batch.name}-{i}", b"x", i) for i in range(units)],
        now=timezone.now(),
        policy=Policy(delay_bound=100 * HOUR),
        batch=batch,
    )
    return batch


def send(batch: Batch, units: range, host, *, sent_at, overdue_at) -> None:
    """Mark one unsent replica of each of these units as out on ``host``."""
    for index in units:
        replica = Replica.objects.filter(
            workunit__batch=batch, workunit__batch_index=index, state=ReplicaState.UNSENT
        ).first()
        Replica.objects.filter(pk=replica.pk).update(
            state=ReplicaState.IN_PROGRESS,
            host=host,
            volunteer_id=host.volunteer_id,
            sent_at=sent_at,
            deadline=sent_at + timedelta(hours=100),
            overdue_at=overdue_at,
        )


def test_the_tail_begins_once_the_fresh_work_is_all_sent_and_holds_what_is_out_to_the_usual_time(settings):
    settings.TESSERA = {**settings.TESSERA, "DISPATCH_BLOCK_UNITS": 4, "TAIL_OVERDUE_FACTOR": 2.0}
    app = make_app()
    App.objects.filter(pk=app.pk).update(turnaround=HOUR)
    batch = batch_of(app, 10)
    now = timezone.now()
    quick, slow = make_host()[0], make_host()[0]
    send(batch, range(10), quick, sent_at=now, overdue_at=now + timedelta(hours=1))
    send(batch, range(6), slow, sent_at=now, overdue_at=now + timedelta(hours=50))
    assert mark_batch_tails(now=now) == [], "the last block's units still have replicas to send"

    send(batch, range(6, 10), slow, sent_at=now, overdue_at=now + timedelta(hours=50))
    Replica.objects.create(workunit=batch.units.get(batch_index=2), dispatch_key=1)  # a reissue
    assert mark_batch_tails(now=now) == [batch.pk], "none of 10 units is finished, but all were sent"

    out = Replica.objects.filter(workunit__batch=batch, state=ReplicaState.IN_PROGRESS)
    assert {r.overdue_at for r in out.filter(host=slow)} == {now + timedelta(hours=2)}, "twice the usual"
    assert {r.overdue_at for r in out.filter(host=quick)} == {now + timedelta(hours=1)}, "sooner stays"
    [waiting] = Replica.objects.filter(workunit__batch=batch, state=ReplicaState.UNSENT)
    assert waiting.reliable_until is not None and waiting.reliable_until > now, "reliable hosts first"


def test_a_tail_begun_before_anything_was_measured_is_held_to_the_usual_time_once_it_is_known():
    app = make_app()
    batch = batch_of(app, 4)
    now = timezone.now()
    host, other = make_host()[0], make_host()[0]
    send(batch, range(4), host, sent_at=now, overdue_at=now + timedelta(hours=50))
    send(batch, range(4), other, sent_at=now, overdue_at=now + timedelta(hours=50))
    assert mark_batch_tails(now=now) == [batch.pk]
    out = Replica.objects.filter(workunit__batch=batch, state=ReplicaState.IN_PROGRESS)
    assert {r.overdue_at for r in out.all()} == {now + timedelta(hours=50)}, "nothing known to hold them to"

    App.objects.filter(pk=app.pk).update(turnaround=HOUR)
    later = now + timedelta(minutes=10)
    assert mark_batch_tails(now=later) == [], "already in its tail"

    assert {r.overdue_at for r in out.all()} == {now + timedelta(hours=2)}
    assert set(batch.units.values_list("transition_time", flat=True)) == {later}, "looked at again now"
    Batch.objects.filter(pk=batch.pk).update(tail_turnaround=HOUR)
    App.objects.filter(pk=app.pk).update(turnaround=0.9 * HOUR)
    mark_batch_tails(now=later + timedelta(minutes=10))
    assert {r.overdue_at for r in out.all()} == {now + timedelta(hours=2)}, "a small change moves nothing"


def test_at_the_final_fraction_every_replica_out_is_backed_up_once(settings):
    settings.TESSERA = {**settings.TESSERA, "TAIL_FRACTION": 0.5, "TAIL_FINAL_FRACTION": 0.9}
    app = make_app()
    batch = batch_of(app, 10)
    now = timezone.now()
    host, other = make_host()[0], make_host()[0]
    send(batch, range(10), host, sent_at=now, overdue_at=now + timedelta(hours=50))
    send(batch, range(10), other, sent_at=now, overdue_at=now + timedelta(hours=50))
    batch.units.filter(batch_index__lt=8).update(state=UnitState.DONE)
    assert mark_batch_tails(now=now) == [batch.pk], "8 of 10 finished: the tail, not the final call"
    out = Replica.objects.filter(workunit__batch=batch, state=ReplicaState.IN_PROGRESS)
    assert {r.overdue_at for r in out.filter(workunit__batch_index__gte=8)} == {now + timedelta(hours=50)}

    batch.units.filter(batch_index=8).update(state=UnitState.DONE)
    later = now + timedelta(minutes=5)
    mark_batch_tails(now=later)
    batch.refresh_from_db()
    assert batch.final_call_since == later
    [last] = batch.units.filter(state=UnitState.ACTIVE)
    assert {r.overdue_at for r in last.replicas.filter(state=ReplicaState.IN_PROGRESS)} == {later}
    assert last.transition_time == later, "the transitioner backs them up now"
    third = make_host()[0]
    backup = Replica.objects.create(workunit=last, dispatch_key=1)
    send(batch, range(9, 10), third, sent_at=later, overdue_at=later + timedelta(hours=9))
    backup.refresh_from_db()
    assert backup.host == third

    mark_batch_tails(now=later + timedelta(minutes=5))
    backup.refresh_from_db()
    assert backup.overdue_at == later + timedelta(hours=9), "once: a backup is not backed up in turn"


def test_the_apps_usual_turnaround_is_the_median_of_its_hosts(settings):
    app = make_app()
    version = app.versions.get()
    for seconds in (100.0, 200.0, 300.0, 400.0, 90_000.0, 0.0):
        host, _ = make_host(established=True)
        HostAppVersion.objects.create(host=host, app_version=version, daily_quota=10, turnaround=seconds)
    for _ in range(5):  # new hosts returning garbage at once
        host, _ = make_host()
        HostAppVersion.objects.create(host=host, app_version=version, daily_quota=10, turnaround=1.0)

    assert refresh_turnarounds() == 1
    assert App.objects.get(pk=app.pk).turnaround == 300.0, "unmeasured and unproven hosts aside"
