"""The work buffer: a task for each free core, and beyond them only what starts soon
(``scheduler.buffer``), as a pure rule and through the signed RPC."""

from __future__ import annotations

import math

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from tessera_client.protocol import Report

from coordinator.scheduler.buffer import UNBOUNDED, buffer_room
from coordinator.scheduler.claim_choice import buffer_seconds
from coordinator.scheduler.dispatch import WorkRequest, claim_work
from coordinator.testing import SignedHost, make_app, make_host, make_units
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica

HOUR = 3600.0


def test_an_hours_task_goes_one_to_a_free_core_and_a_seconds_task_fills_the_buffer():
    assert buffer_room(cores=4, held=0, task_cores=1, task_seconds=HOUR / 4, buffer_seconds=60) == 4
    assert buffer_room(cores=4, held=3, task_cores=1, task_seconds=HOUR / 4, buffer_seconds=60) == 1
    assert buffer_room(cores=4, held=4, task_cores=1, task_seconds=HOUR / 4, buffer_seconds=60) == 0
    # one second of the whole computer a task: sixty wait within a minute, beyond the free core
    assert buffer_room(cores=1, held=0, task_cores=1, task_seconds=1.0, buffer_seconds=60) == 61
    # what it holds beyond its cores already waits, and counts against the buffer
    assert buffer_room(cores=1, held=31, task_cores=1, task_seconds=1.0, buffer_seconds=60) == 30


def test_a_task_on_every_core_counts_for_all_of_them():
    assert buffer_room(cores=8, held=0, task_cores=8, task_seconds=HOUR, buffer_seconds=60) == 1
    assert buffer_room(cores=8, held=1, task_cores=8, task_seconds=HOUR, buffer_seconds=60) == 0


def test_no_estimate_or_no_buffer_limit_leaves_the_other_limits_to_decide():
    assert buffer_room(cores=1, held=5, task_cores=1, task_seconds=0.0, buffer_seconds=60) == UNBOUNDED
    assert buffer_room(cores=1, held=5, task_cores=1, task_seconds=HOUR, buffer_seconds=math.inf) == UNBOUNDED


@given(
    cores=st.integers(1, 256),
    held=st.integers(0, 2000),
    task_seconds=st.floats(1e-3, 1e6),
    buffer_seconds=st.floats(0, 1e6),
)
def test_what_it_may_take_waits_within_the_buffer_and_more_held_never_gets_more(
    cores, held, task_seconds, buffer_seconds
):
    room = buffer_room(
        cores=cores, held=held, task_cores=1, task_seconds=task_seconds, buffer_seconds=buffer_seconds
    )
    free = max(0, cores - held)
    assert room >= free  # a free core always gets a task
    waiting_after = max(0, held + room - cores) * task_seconds
    assert room == free or waiting_after <= buffer_seconds + 1e-6 * task_seconds * (held + room)
    more_held = buffer_room(
        cores=cores, held=held + 1, task_cores=1, task_seconds=task_seconds, buffer_seconds=buffer_seconds
    )
    assert more_held <= room


# -- through the RPC ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_host_gets_an_hours_task_per_free_core_and_the_next_when_it_reports(settings):
    settings.TESSERA = {**settings.TESSERA, "WORK_BUFFER_SECONDS": 60.0}
    app = make_app()
    make_units(app, 5, min_quorum=1, target_nresults=1, fpops_estimate=2 * HOUR * 1e9)
    host = SignedHost(*make_host(flops=1e9, n_cpus=2))  # an hour of its whole computer a task

    first = host.rpc(tasks=10).json()
    assert len(first["tasks"]) == 2  # two cores, nothing waiting behind them
    assert host.rpc(tasks=10).json()["tasks"] == []  # both busy: nothing to wait

    done = first["tasks"][0]
    reply = host.rpc(
        reports=[Report(replica=done["replica"], status="success", cpu_time=1.0, output=b"out")], tasks=10
    ).json()

    assert len(reply["tasks"]) == 1  # the core it freed
    held = Replica.objects.filter(host=host.host, state=ReplicaState.IN_PROGRESS)
    assert held.count() == 2


@pytest.mark.django_db
def test_short_tasks_still_travel_many_to_a_request(settings):
    settings.TESSERA = {**settings.TESSERA, "WORK_BUFFER_SECONDS": 60.0, "MAX_IN_PROGRESS_PER_CPU": 100}
    make_units(make_app(), 30, min_quorum=1, target_nresults=1, fpops_estimate=1e9)  # a second each
    host = SignedHost(*make_host(flops=1e9, n_cpus=1))

    assert len(host.rpc(tasks=20).json()["tasks"]) == 20


@pytest.mark.django_db
def test_a_stock_boinc_clients_host_keeps_its_own_buffer(settings):
    settings.TESSERA = {**settings.TESSERA, "WORK_BUFFER_SECONDS": 60.0}
    make_units(make_app(), 10, min_quorum=1, target_nresults=1, fpops_estimate=HOUR * 1e9)
    ours, _ = make_host(flops=1e9, n_cpus=2)
    boinc, _ = make_host(flops=1e9, n_cpus=2, bearer=True)

    assert buffer_seconds(ours) == 60.0
    assert buffer_seconds(boinc) == math.inf
    assert len(claim_work(host=boinc, request=WorkRequest(tasks=6), now=timezone.now())) == 6
