"""A volunteer's host against a live coordinator over real HTTP, using the client package."""

import hashlib

import pytest
from django.utils import timezone
from tessera_client.protocol import HostKey, ProjectSession, ProtocolError, Report

from coordinator.testing import make_app, make_units, make_volunteer
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_hosts_attach_crunch_and_bring_a_unit_to_validation(live_server):
    app = make_app()
    small = make_units(app, 1, input_data=b"n=10")[0]
    large_input = b"0123456789" * 1000
    large = make_units(app, 1, input_data=large_input, priority=-1)[0]
    sessions: list[ProjectSession] = []

    for index in range(2):
        _, token = make_volunteer()
        session = ProjectSession(live_server.url, HostKey.generate())
        sessions.append(session)
        host_id = session.register(
            account_token=token, name=f"pc{index}", platform="linux-x86_64", n_cpus=2, memory_bytes=4 << 30
        )
        assert session.host_id == host_id
        tasks = session.scheduler_rpc(tasks=5)["tasks"]
        assert [t["workunit"] for t in tasks] == [small.name, large.name]

        reports = []
        for task in tasks:
            data = session.fetch_input(task)
            output = hashlib.sha256(data).digest() * 200  # 6400 bytes: over the inline limit
            session.upload_output(task["upload_url"], output)
            reports.append(
                Report(replica=task["replica"], status="success", cpu_time=1.0, output=output, inline=False)
            )
        reply = session.scheduler_rpc(reports=reports)
        assert [ack["status"] for ack in reply["acks"]] == ["accepted", "accepted"]
        bundle = session.request("GET", tasks[0]["app_version"]["url"], sign=False).content
        assert hashlib.sha256(bundle).hexdigest() == tasks[0]["app_version"]["sha256"]

    for session in sessions:
        session.close()
    assert Replica.objects.filter(state=ReplicaState.OVER, outcome=Outcome.SUCCESS).count() == 4
    transition_due_units(now=timezone.now())
    assert set(WorkUnit.objects.values_list("need_validate", flat=True)) == {True}


def test_the_client_sees_refusals_as_protocol_errors(live_server):
    with (
        ProjectSession(live_server.url, HostKey.generate(), host_id=999_999) as session,
        pytest.raises(ProtocolError) as unknown,
    ):
        session.scheduler_rpc(tasks=1)
    assert (unknown.value.status, unknown.value.code) == (401, "unknown_host")
