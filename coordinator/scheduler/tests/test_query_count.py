"""The scheduler RPC is the hot path: its statement count must not grow with the batch."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from tessera_client.protocol import Report

from coordinator.testing import SignedHost, make_app, make_host, make_units

pytestmark = pytest.mark.django_db

# Signature check and nonce (2), reports (4), claim (8 with the host's reputations), the
# credit standing in the reply (1), plus savepoints or BEGIN/COMMIT.
MAX_STATEMENTS = 19


def statements_for_one_rpc(batch: int) -> int:
    make_units(make_app(), 3 * batch, min_quorum=1, target_nresults=1)
    host = SignedHost(*make_host())
    tasks = host.rpc(tasks=batch).json()["tasks"]
    reports = [Report(replica=t["replica"], status="success", cpu_time=1, output=b"out") for t in tasks]
    with CaptureQueriesContext(connection) as captured:
        reply = host.rpc(reports=reports, tasks=batch)
    assert reply.status_code == 200
    assert len(reply.json()["acks"]) == batch and len(reply.json()["tasks"]) == batch
    return len(captured.captured_queries)


def test_reporting_and_fetching_costs_the_same_statements_for_2_or_50_replicas():
    small, large = statements_for_one_rpc(2), statements_for_one_rpc(50)

    assert small == large
    assert large <= MAX_STATEMENTS
