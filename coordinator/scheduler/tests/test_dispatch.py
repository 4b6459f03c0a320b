"""The scheduler RPC's rules for handing out work, through the signed HTTP endpoint."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from tessera_client.protocol import Report
from tessera_client.signing import bundle_message, signature_is_valid

from coordinator.accounts.models import Host
from coordinator.scheduler.claim_writes import start_quota_use
from coordinator.standing.models import HostAppVersion
from coordinator.testing import (
    CODE_SIGNING_KEY,
    SignedHost,
    assert_error,
    make_app,
    make_host,
    make_units,
    make_volunteer,
)
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db


def signed_host(**options) -> SignedHost:
    return SignedHost(*make_host(**options))


def test_work_goes_out_by_priority_then_age(settings):
    settings.TESSERA = {**settings.TESSERA, "DISPATCH_BLOCK_UNITS": 1}  # a block per unit: by age
    app = make_app()
    old_low = make_units(app, 1, priority=0)[0]
    high = make_units(app, 1, priority=5)[0]
    newer_low = make_units(app, 1, priority=0)[0]

    reply = signed_host().rpc(tasks=3)

    assert reply.status_code == 200
    names = [task["workunit"] for task in reply.json()["tasks"]]
    assert names == [high.name, old_low.name, newer_low.name]


def test_one_replica_per_unit_per_volunteer_even_across_hosts():
    app = make_app()
    units = make_units(app, 3, min_quorum=2, target_nresults=2)
    volunteer, _ = make_volunteer()
    first, second = signed_host(volunteer=volunteer), signed_host(volunteer=volunteer)

    got_first = first.rpc(tasks=10).json()["tasks"]
    got_second = second.rpc(tasks=10).json()["tasks"]

    assert len(got_first) == 3, "one replica of each unit, not two"
    assert got_second == [], "the volunteer's other host may not take the second replicas"
    other = signed_host().rpc(tasks=10).json()["tasks"]
    assert sorted(t["workunit"] for t in other) == sorted(u.name for u in units)


def test_units_needing_more_memory_than_the_host_has_are_not_sent():
    app = make_app()
    big = make_units(app, 1, memory_bytes=16 << 30)[0]
    small = make_units(app, 1, memory_bytes=1 << 30)[0]

    tasks = signed_host(memory_bytes=4 << 30).rpc(tasks=10).json()["tasks"]

    assert [t["workunit"] for t in tasks] == [small.name]
    assert Replica.objects.filter(workunit=big, state=ReplicaState.UNSENT).count() == 2


def test_a_first_dispatch_makes_the_quota_row_and_one_made_meanwhile_is_counted_over():
    """``start_quota_use`` is one statement: it makes the host's row for the version with the
    host's starting quota, and where another request made it first, sets today's count as an
    existing row's would be set; the quota itself is left as it was."""
    app = make_app()
    client = signed_host(daily_quota=7)
    version = app.versions.get()
    today = timezone.now().date()

    start_quota_use(client.host.pk, version.pk, 7, today, 2)
    row = HostAppVersion.objects.get(host=client.host, app_version=version)
    assert (row.daily_quota, row.quota_day, row.quota_used, row.speed_samples) == (7, today, 2, 0)

    HostAppVersion.objects.filter(pk=row.pk).update(daily_quota=40)
    start_quota_use(client.host.pk, version.pk, 7, today, 5)
    row.refresh_from_db()
    assert (row.daily_quota, row.quota_used) == (40, 5)
    assert HostAppVersion.objects.filter(host=client.host).count() == 1


def test_daily_quota_caps_what_a_host_gets_per_app_version_and_resets_the_next_day():
    app, other = make_app(), make_app()
    make_units(app, 10, min_quorum=1, target_nresults=1)
    client = signed_host(daily_quota=3)

    assert len(client.rpc(tasks=10).json()["tasks"]) == 3
    assert client.rpc(tasks=10).json()["tasks"] == []
    make_units(other, 2, min_quorum=1, target_nresults=1)
    assert len(client.rpc(tasks=10).json()["tasks"]) == 2, "another app version has its own quota"
    quota = HostAppVersion.objects.get(host=client.host, app_version__app=app)
    assert (quota.daily_quota, quota.quota_used) == (3, 3)
    yesterday = timezone.now().date() - timedelta(days=1)
    HostAppVersion.objects.filter(host=client.host).update(quota_day=yesterday)
    assert len(client.rpc(tasks=10).json()["tasks"]) == 3


def test_asking_for_seconds_of_work_sizes_the_batch_by_the_host_speed(settings):
    # The request, not the work buffer, decides here.
    settings.TESSERA = {**settings.TESSERA, "WORK_BUFFER_SECONDS": 1000.0}
    app = make_app()
    make_units(app, 10, min_quorum=1, target_nresults=1, fpops_estimate=1e11)
    # 1e11 flops at 1e9 flops x 1 cpu = 100 s per unit: 250 s of work is 3 units.
    client = signed_host(flops=1e9, n_cpus=1)

    tasks = client.rpc(seconds=250).json()["tasks"]

    assert len(tasks) == 3


def test_a_task_carries_what_the_host_needs_to_run_it():
    app = make_app(max_output_bytes=1234)
    unit = make_units(app, 1, input_data=b"seed=42", delay_bound=3600)[0]
    before = timezone.now()

    reply = signed_host().rpc(tasks=1).json()
    task = reply["tasks"][0]

    version = app.versions.get()
    assert base64.b64decode(task["input_inline"]) == b"seed=42"
    assert task["input_sha256"] == hashlib.sha256(b"seed=42").hexdigest()
    assert task["app_version"]["sha256"] == version.bundle_sha256
    assert task["app_version"]["signature"] == version.signature
    assert task["max_output_bytes"] == 1234
    assert task["memory_bytes"] == unit.memory_bytes
    message = bundle_message(app=app.name, version=1, platform="any", sha256=version.bundle_sha256)
    assert signature_is_valid(
        bytes(CODE_SIGNING_KEY.verify_key), message, base64.b64decode(task["app_version"]["signature"])
    )
    assert task["upload_url"] == f"/api/v1/replicas/{task['replica']}/upload"
    deadline = Replica.objects.get(pk=task["replica"]).deadline
    assert before + timedelta(seconds=3600) <= deadline <= timezone.now() + timedelta(seconds=3600)
    assert unit.name == task["workunit"]
    assert reply["next_rpc_seconds"] > 0


def test_large_inputs_come_as_a_presigned_link_that_expires(settings, monkeypatch):
    app = make_app()
    data = bytes(range(256)) * 40  # over the inline limit
    make_units(app, 1, input_data=data, delay_bound=3600)
    holder = signed_host()

    task = holder.rpc(tasks=1).json()["tasks"][0]

    assert task["input_inline"] is None
    assert task["input_url"].startswith("/api/v1/objects/download?token=")
    assert b"".join(Client().get(task["input_url"]).streaming_content) == data  # no signature needed
    forged = task["input_url"][:-3] + ("AAA" if not task["input_url"].endswith("AAA") else "BBB")
    assert_error(Client().get(forged), 401, "authentication_failed")
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)
    assert_error(Client().get(task["input_url"]), 401, "authentication_failed")


def test_a_report_is_recorded_once_and_a_repeat_is_acknowledged():
    app = make_app()
    make_units(app, 1)
    client = signed_host()
    replica_id = client.rpc(tasks=1).json()["tasks"][0]["replica"]
    report = Report(replica=replica_id, status="success", cpu_time=12.5, output=b"42")

    first = client.rpc(reports=[report]).json()
    stored = Replica.objects.get(pk=replica_id)
    second = client.rpc(reports=[report]).json()

    assert first["acks"] == [{"replica": replica_id, "status": "accepted"}]
    assert second["acks"] == [{"replica": replica_id, "status": "duplicate"}]
    again = Replica.objects.get(pk=replica_id)
    assert (again.state, again.outcome, again.received_at) == (
        ReplicaState.OVER,
        Outcome.SUCCESS,
        stored.received_at,
    )
    assert again.output_sha256 == hashlib.sha256(b"42").hexdigest()
    assert again.cpu_time == 12.5


def test_an_uploaded_output_is_stored_and_bound_to_the_report():
    app = make_app()
    make_units(app, 1)
    client = signed_host()
    replica_id = client.rpc(tasks=1).json()["tasks"][0]["replica"]
    output = b"\x00result" * 1000

    uploaded = client.upload(replica_id, output)
    reported = client.rpc(
        reports=[Report(replica=replica_id, status="success", cpu_time=1, output=output, inline=False)]
    )

    assert uploaded.status_code == 204
    assert reported.status_code == 200
    replica = Replica.objects.get(pk=replica_id)
    digest = hashlib.sha256(output).hexdigest()
    assert replica.output_file.name == f"outputs/{replica.workunit_id}/{replica_id}-{digest[:16]}"
    assert replica.uploaded_sha256 == replica.output_sha256 == digest
    # The host's own copy is gone, and overwriting it with its still valid policy changes nothing.
    assert not default_storage.exists(f"uploads/{replica.workunit_id}/{replica_id}")
    assert client.upload(replica_id, b"swapped").status_code == 409  # no new policy after the report
    with replica.output_file.open("rb") as handle:
        assert handle.read() == output
    assert replica.output_size == len(output)


def test_a_report_after_the_deadline_is_still_accepted_and_counted():
    app = make_app()
    unit = make_units(app, 1, min_quorum=1, target_nresults=1, delay_bound=60)[0]
    client = signed_host()
    replica_id = client.rpc(tasks=1).json()["tasks"][0]["replica"]
    transition_due_units(now=timezone.now() + timedelta(seconds=61))
    assert Replica.objects.get(pk=replica_id).outcome == Outcome.NO_REPLY
    assert unit.replicas.filter(state=ReplicaState.UNSENT).count() == 1, "a timed-out replica is reissued"

    reply = client.rpc(reports=[Report(replica=replica_id, status="success", cpu_time=1, output=b"late")])

    assert reply.json()["acks"] == [{"replica": replica_id, "status": "accepted"}]
    assert Replica.objects.get(pk=replica_id).outcome == Outcome.SUCCESS
    transition_due_units(now=timezone.now() + timedelta(seconds=62))
    unit.refresh_from_db()
    assert unit.need_validate
    # The late success is enough for this quorum of one: the reissued replica is cancelled.
    assert unit.replicas.filter(outcome=Outcome.DIDNT_NEED).count() == 1


def test_reports_wake_the_transitioner_for_their_units():
    app = make_app()
    unit = make_units(app, 1, min_quorum=2, target_nresults=2)[0]
    first, second = signed_host(), signed_host()
    for client in (first, second):
        replica_id = client.rpc(tasks=1).json()["tasks"][0]["replica"]
        client.rpc(reports=[Report(replica=replica_id, status="success", cpu_time=1, output=b"same")])

    unit.refresh_from_db()
    assert unit.transition_time is not None and unit.transition_time <= timezone.now()
    transition_due_units(now=timezone.now())
    unit.refresh_from_db()
    assert unit.need_validate and unit.transition_time is None


def test_a_client_error_is_reissued_to_another_host(settings):
    # No host here is reliable: the reissue waits for none (test_acceleration tests the wait).
    settings.TESSERA = {**settings.TESSERA, "ACCELERATED_WAIT_SECONDS": 0}
    app = make_app()
    unit = make_units(app, 1, min_quorum=1, target_nresults=1)[0]
    client = signed_host()
    replica_id = client.rpc(tasks=1).json()["tasks"][0]["replica"]

    client.rpc(
        reports=[
            Report(replica=replica_id, status="client_error", cpu_time=0.5, exit_code=3, message="segfault")
        ]
    )
    transition_due_units(now=timezone.now())

    replica = Replica.objects.get(pk=replica_id)
    assert (replica.outcome, replica.exit_code, replica.message) == (Outcome.CLIENT_ERROR, 3, "segfault")
    assert unit.replicas.filter(state=ReplicaState.UNSENT).count() == 1
    assert signed_host().rpc(tasks=1).json()["tasks"][0]["workunit"] == unit.name


def test_units_without_an_app_version_wait():
    from coordinator.work.models import App

    bare = App.objects.create(name="no-version-yet")
    make_units(bare, 1)

    assert signed_host().rpc(tasks=5).json()["tasks"] == []
    assert WorkUnit.objects.get(app=bare).replicas.filter(state=ReplicaState.UNSENT).count() == 2


def test_a_host_reports_its_measured_speed_and_the_work_it_gets_follows_it(settings):
    settings.TESSERA = {**settings.TESSERA, "MAX_IN_PROGRESS_PER_CPU": 100}
    make_units(make_app(), 20, fpops_estimate=1e9)
    host, key = make_host(flops=1e9, n_cpus=1)
    signed = SignedHost(host, key)

    slow = signed.send("POST", "/api/v1/scheduler", json.dumps({"work_request": {"seconds": 2}}).encode())
    measured = {"flops": 4e9, "n_cpus": 2, "memory_bytes": 1 << 30}
    body = {"work_request": {"seconds": 2}, "host_info": measured}
    fast = signed.send("POST", "/api/v1/scheduler", json.dumps(body).encode())

    host.refresh_from_db()
    assert (host.flops, host.n_cpus, host.memory_bytes) == (4e9, 2, 1 << 30)
    assert len(slow.json()["tasks"]) == 2
    assert len(fast.json()["tasks"]) == 16


def test_the_reply_carries_the_host_and_volunteer_credit():
    volunteer, _ = make_volunteer()
    host, key = make_host(volunteer)
    Host.objects.filter(pk=host.pk).update(total_credit=12.5, rac=3.0, rac_time=timezone.now())
    type(volunteer).objects.filter(pk=volunteer.pk).update(total_credit=40, rac=0.0)

    credit = SignedHost(host, key).rpc().json()["credit"]

    assert credit["host_total"] == 12.5
    assert 2.99 < credit["host_rac"] <= 3.0
    assert credit["volunteer_total"] == 40
    assert credit["volunteer_rac"] == 0.0


@pytest.mark.parametrize("prefix", ["/", "/project/"])
def test_a_tasks_urls_are_what_reverse_gives_under_any_script_prefix(prefix):
    from django.urls import reverse, set_script_prefix

    from coordinator.scheduler.api import url_of

    set_script_prefix(prefix)
    try:
        for pk in (1, 7, 987654320, 2**40):
            assert url_of("replica-upload", pk) == reverse("replica-upload", args=[pk])
            assert url_of("app-version-bundle", pk) == reverse("app-version-bundle", args=[pk])
        assert url_of("replica-upload", 7).startswith(prefix)
    finally:
        set_script_prefix("/")
