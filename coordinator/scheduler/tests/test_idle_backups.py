"""Backups for idle hosts, end to end through the RPC on the real database: when nothing waits
to be sent, a reliable host's empty request backs up the tail's slowest unit, the backup goes
to a reliable host, and the first valid result wins, credited once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordinator.accounts.models import Host
from coordinator.scheduler.dispatch_sql import any_unsent
from coordinator.scheduler.idle_hosts import tail_sample, units_out
from coordinator.scheduler.tests.test_acceleration import five_unit_batch, reliable_host, success
from coordinator.testing import SignedHost, make_app, make_host
from coordinator.validation.models import LedgerEntry
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import App, Batch, Replica, WorkUnit
from coordinator.work.services import transition_due_units

DELAY = 3 * 3600  # long enough that nothing is overdue by itself while the test runs
# An empty request's statements (test_query_count's nothing-waits case) and the backups' own,
# whatever the batch's size: the sample reads a bounded range of one index.
MAX_STATEMENTS = 20


def settle(now) -> None:
    transition_due_units(now=now)
    validate_due_units(now=now)
    transition_due_units(now=now)


@pytest.fixture
def tail(settings):
    """A batch of five units in its tail: four done, the fifth with one valid result and one
    replica out on a slow host; nothing waits to be sent."""
    settings.TESSERA = {**settings.TESSERA, "TAIL_FRACTION": 0.8}
    app = make_app()
    batch, _ = five_unit_batch(app, delay_bound=DELAY)
    slow, first, second = (SignedHost(*make_host()) for _ in range(3))
    [held] = [task["replica"] for task in slow.rpc(tasks=1).json()["tasks"]]
    for host in (first, second):
        tasks = [task["replica"] for task in host.rpc(tasks=5).json()["tasks"]]
        assert host.rpc(reports=[success(r) for r in tasks]).status_code == 200
    settle(timezone.now())
    batch.refresh_from_db()
    assert batch.tail_since is not None and not any_unsent()
    # Hosts here usually take an hour; the slow one is due back in an hour (overdue in two).
    App.objects.filter(pk=app.pk).update(turnaround=3600.0)
    Replica.objects.filter(pk=held).update(overdue_at=timezone.now() + timedelta(hours=2))
    app.refresh_from_db()
    return app, batch, slow, Replica.objects.get(pk=held)


@pytest.mark.django_db
def test_an_idle_reliable_hosts_request_backs_up_the_slowest_unit_and_the_first_valid_result_wins(
    tail, settings
):
    app, _, slow, held = tail
    stuck = held.workunit
    overdue_before = held.overdue_at
    assert overdue_before > timezone.now() + timedelta(minutes=30), "not overdue by itself for a while"

    newcomer = SignedHost(*make_host())
    empty = newcomer.rpc(tasks=1).json()
    assert empty["tasks"] == []
    assert empty["next_rpc_seconds"] == settings.TESSERA["RPC_DELAY_NO_WORK"]
    held.refresh_from_db()
    assert held.overdue_at == overdue_before, "a host not reliable backs nothing up"

    fast = reliable_host(app)
    asked = timezone.now()
    with CaptureQueriesContext(connection) as captured:
        reply = fast.rpc(tasks=1).json()
    assert reply["tasks"] == [], "nothing was waiting for it"
    assert len(captured.captured_queries) <= MAX_STATEMENTS, [q["sql"] for q in captured.captured_queries]
    # it comes back at the pace of a host with work, to take the backup it made
    assert reply["next_rpc_seconds"] == settings.TESSERA["RPC_DELAY_WITH_WORK"]
    held.refresh_from_db()
    stuck.refresh_from_db()
    assert asked <= held.overdue_at <= timezone.now(), "made overdue by the idle host's request"
    assert stuck.transition_time <= timezone.now()

    settle(timezone.now())
    [backup] = stuck.replicas.filter(state=ReplicaState.UNSENT)
    assert backup.reliable_until is not None and not backup.reserved, "a backup for reliable hosts first"
    assert newcomer.rpc(tasks=1).json()["tasks"] == [], "it waits for a reliable host"
    [task] = fast.rpc(tasks=1).json()["tasks"]
    assert task["replica"] == backup.pk
    assert fast.rpc(reports=[success(backup.pk)]).status_code == 200
    settle(timezone.now())
    late = slow.rpc(reports=[success(held.pk)])

    stuck.refresh_from_db()
    held.refresh_from_db()
    assert stuck.state == "done"
    assert late.status_code == 200 and held.outcome == Outcome.DIDNT_NEED, "called off, then only acked"
    assert not LedgerEntry.objects.filter(replica=held).exists(), "the slow result is never credited"
    credited = LedgerEntry.objects.filter(replica__workunit=stuck)
    assert credited.count() == 2 and credited.values("replica").distinct().count() == 2


@pytest.mark.django_db
def test_a_reliable_host_with_no_free_core_or_holding_the_unit_backs_nothing_up(tail):
    app, _, _, held = tail
    overdue_before = held.overdue_at

    busy = reliable_host(app)
    Host.objects.filter(pk=busy.host.pk).update(n_cpus=1)
    Replica.objects.filter(pk=held.pk).update(host=busy.host)  # it holds the unit's replica itself
    assert busy.rpc(tasks=1).json()["tasks"] == []
    held.refresh_from_db()
    assert held.overdue_at == overdue_before
    assert units_out([held.workunit_id], busy.host.pk) == [], "never a unit it holds"


@pytest.mark.django_db
def test_the_sample_reads_only_active_units_of_batches_in_their_tails(tail):
    _, batch, _, held = tail

    assert tail_sample(32) == [held.workunit_id]
    Batch.objects.filter(pk=batch.pk).update(tail_since=None)
    assert tail_sample(32) == []
    assert WorkUnit.objects.filter(batch=batch, state="active").count() == 1


@pytest.mark.django_db
def test_a_unit_in_dispute_counts_as_needing_one_more_result(tail):
    _, _, _, held = tail
    stuck = held.workunit
    [valid] = Replica.objects.filter(workunit=stuck, state=ReplicaState.OVER, outcome=Outcome.SUCCESS)
    [needed] = units_out([stuck.pk], host_id=-1)
    assert needed.needed == 1 and [o.replica_id for o in needed.out] == [held.pk]

    # Its result and a third one disagreed: the replica out is what may settle it.
    Replica.objects.filter(pk=valid.pk).update(validate_state="inconclusive")
    dissent = Replica.objects.get(pk=valid.pk)
    other = SignedHost(*make_host()).host
    dissent.pk, dissent.host, dissent.volunteer_id = None, other, other.volunteer_id
    dissent.save()
    [disputed] = units_out([stuck.pk], host_id=-1)
    assert disputed.needed == 1, "before, two successes not invalid counted as a quorum: needs none"
