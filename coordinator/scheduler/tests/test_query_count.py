"""The scheduler RPC is the hot path: its statement count must not grow with the batch."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from tessera_client.protocol import Report

from coordinator.shares.models import Share
from coordinator.testing import SignedHost, make_app, make_host, make_units
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Batch, Replica

pytestmark = pytest.mark.django_db

# Signature check and nonce (2), reports (5: the last the speed and turnaround of the
# version they ran, one statement per version), whether any replica waits (1), claim (10:
# the volunteer's lock; one statement for what limits the claim, that is the host's figures,
# its tasks in progress, reserved work and its quota rows; the app versions' fingerprint (the
# list itself is cached); the shares with work waiting and their use; the candidates; last
# contact; the quota used; the share's use; the units; the assignment), the called-off check
# of the tasks still held (1), plus savepoints. The reply's credit comes from the rows
# authentication read: no statement of its own.
MAX_STATEMENTS = 23


def statements_for_one_rpc(batch: int) -> int:
    # One app's work only: a claim writes once per app version it hands out.
    Replica.objects.filter(state=ReplicaState.UNSENT).update(
        state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED
    )
    app = make_app()
    scientist = Batch.objects.create(name="b", app=app, share=Share.objects.get_or_create(name="s")[0])
    make_units(app, 4 * batch, min_quorum=1, target_nresults=1, batch=scientist)
    host = SignedHost(*make_host(n_cpus=16))  # room for 2 x 50 tasks in progress
    tasks = host.rpc(tasks=2 * batch).json()["tasks"]
    finished, held = tasks[:batch], [t["replica"] for t in tasks[batch:]]
    reports = [  # with elapsed, as clients send it: the speed and turnaround are measured too
        Report(replica=t["replica"], status="success", cpu_time=1, output=b"out", elapsed=1.0)
        for t in finished
    ]
    with CaptureQueriesContext(connection) as captured:
        reply = host.rpc(reports=reports, tasks=batch, in_progress=held)
    assert reply.status_code == 200
    assert len(reply.json()["acks"]) == batch and len(reply.json()["tasks"]) == batch
    assert reply.json()["abort"] == []
    return len(captured.captured_queries)


def test_reporting_and_fetching_costs_the_same_statements_for_2_or_50_replicas():
    small, large = statements_for_one_rpc(2), statements_for_one_rpc(50)

    assert small == large
    assert large <= MAX_STATEMENTS


# Signature check and nonce (2), whether anything waits (1), last contact (1), why nothing
# came (2: the app versions' fingerprint and the head of the queue), plus a savepoint and its
# release: no volunteer lock, no claim context, no candidates (14 statements before there was
# this probe).
MAX_STATEMENTS_NOTHING_WAITS = 9


def test_asking_when_nothing_waits_for_anyone_costs_no_claim_and_work_still_comes_once_it_waits():
    app = make_app()
    host = SignedHost(*make_host())
    Replica.objects.filter(state=ReplicaState.UNSENT).update(
        state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED
    )
    host.rpc(tasks=5)  # the process's caches (plan classes, app versions) filled, as in steady state

    with CaptureQueriesContext(connection) as captured:
        reply = host.rpc(tasks=5)

    assert reply.status_code == 200 and reply.json()["tasks"] == []
    statements = [query["sql"] for query in captured.captured_queries]
    assert not any("FOR UPDATE" in sql for sql in statements), statements  # no lock, no claim
    assert len(statements) <= MAX_STATEMENTS_NOTHING_WAITS, statements
    make_units(app, 2, min_quorum=1, target_nresults=1)
    assert len(host.rpc(tasks=5).json()["tasks"]) == 2
