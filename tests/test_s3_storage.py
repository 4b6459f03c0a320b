"""Object storage on a real S3 server (SeaweedFS): hosts move the bytes straight to and from
the bucket under presigned URLs and POST policies; the bucket refuses what the policy does
not allow, and the report that follows is refused by the coordinator with nothing credited."""

from __future__ import annotations

import hashlib
import os
import time

import dramatiq
import pytest
import requests
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.test import Client
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from tessera_client.protocol import Report

from coordinator.core import objects
from coordinator.core.storage_url import default_storage_settings
from coordinator.core.warmup import WarmStorage
from coordinator.testing import SignedHost, assert_error, make_app, make_host, make_units, post_object
from coordinator.validation.services import validate_due_units
from coordinator.work.models import Replica
from coordinator.work.services import transition_due_units
from tests.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, Seaweed

pytestmark = pytest.mark.django_db
OUTPUT = b"an output too large to travel inline " * 200


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    try:
        server = Seaweed(tmp_path_factory.mktemp("seaweed")).start()
    except RuntimeError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no S3 server for these tests: {error}")
    yield server
    server.stop()


@pytest.fixture
def s3(seaweed, settings, monkeypatch):
    """The coordinator's default storage is the bucket for this test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    settings.STORAGES = {**settings.STORAGES, "default": default_storage_settings(seaweed.storage_url())}
    assert objects.on_s3()
    empty_bucket(seaweed)  # the test database starts over each test; so does the bucket
    return seaweed


def empty_bucket(seaweed: Seaweed) -> None:
    client = seaweed.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for found in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=found["Key"])


def two_replicas(**options) -> tuple[SignedHost, int, int]:
    make_units(make_app(), 2, min_quorum=1, target_nresults=1, **options)
    host = SignedHost(*make_host())
    first, second = (task["replica"] for task in host.rpc(tasks=2).json()["tasks"])
    return host, first, second


def report(host: SignedHost, replica: int, output: bytes = OUTPUT):
    return host.rpc(
        reports=[Report(replica=replica, status="success", cpu_time=1, output=output, inline=False)]
    )


def test_an_output_goes_straight_to_the_bucket_and_is_checked_once_at_report(s3):
    host, replica, _ = two_replicas()
    policy = host.upload_policy(replica).json()
    assert policy["url"] == f"{s3.endpoint}/{BUCKET}" and "x-amz-signature" in policy["fields"]

    stored = post_object(host.client, policy, OUTPUT)

    assert stored.status_code == 204, stored.text
    assert report(host, replica).json()["acks"] == [{"replica": replica, "status": "accepted"}]
    row = Replica.objects.get(pk=replica)
    digest = hashlib.sha256(OUTPUT).hexdigest()
    assert row.uploaded_sha256 == digest
    key = f"outputs/{row.workunit_id}/{replica}-{digest[:16]}"  # copied by the bucket, out of reach
    assert row.output_file.name == key
    # The policy still holds for an hour, but what the host writes now is not what was checked.
    assert post_object(host.client, policy, b"swapped after the report").status_code == 204
    assert s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == OUTPUT
    transition_due_units(now=timezone.now())
    assert validate_due_units(now=timezone.now()) == 1  # the validator reads it from the bucket
    assert Replica.objects.get(pk=replica).granted_credit > 0


def test_the_bucket_refuses_another_key_and_the_report_of_that_replica_is_refused(s3):
    host, mine, other = two_replicas()
    policy = host.upload_policy(mine).json()
    other_key = f"uploads/{Replica.objects.get(pk=other).workunit_id}/{other}"

    refused = post_object(host.client, {**policy, "fields": {**policy["fields"], "key": other_key}}, OUTPUT)

    assert refused.status_code == 403 and "AccessDenied" in refused.text
    assert_error(report(host, other), 400, "output_missing")
    assert post_object(host.client, policy, OUTPUT).status_code == 204  # its own key, its own bytes…
    assert_error(report(host, other), 400, "output_missing")  # …are not the other replica's
    assert Replica.objects.get(pk=other).outcome == "init"


def test_the_bucket_refuses_too_many_bytes_and_nothing_is_credited(s3):
    host, replica, _ = two_replicas()
    make_app()  # another app version must not change this one's limit
    policy = host.upload_policy(replica).json()

    refused = post_object(host.client, policy, b"x" * (policy["max_bytes"] + 1))

    assert refused.status_code == 400 and "EntityTooLarge" in refused.text
    assert_error(report(host, replica, b"x" * (policy["max_bytes"] + 1)), 400, "output_missing")
    assert Replica.objects.get(pk=replica).granted_credit is None


def test_the_bucket_refuses_an_expired_policy(s3, settings):
    settings.TESSERA = {**settings.TESSERA, "UPLOAD_POLICY_SECONDS": 1}
    host, replica, _ = two_replicas()
    policy = host.upload_policy(replica).json()
    time.sleep(2.5)

    refused = post_object(host.client, policy, OUTPUT)

    assert refused.status_code == 403 and "expired" in refused.text.lower()
    assert_error(report(host, replica), 400, "output_missing")


def test_a_policy_is_only_for_the_host_holding_the_replica(s3):
    _, replica, _ = two_replicas()
    stranger = SignedHost(*make_host())
    assert_error(stranger.upload_policy(replica), 403, "not_your_replica")


def test_an_object_that_differs_from_the_report_is_refused(s3):
    host, replica, _ = two_replicas()
    assert post_object(host.client, host.upload_policy(replica).json(), OUTPUT + b"!").status_code == 204
    assert_error(report(host, replica), 400, "output_mismatch")
    assert Replica.objects.get(pk=replica).outcome == "init"


def test_a_large_input_is_fetched_from_the_bucket_with_a_presigned_url_until_it_expires(s3):
    data = bytes(range(256)) * 64
    unit = make_units(make_app(), 1, input_data=data, delay_bound=2)[0]
    assert unit.input_file.name and default_storage.exists(unit.input_file.name)
    task = SignedHost(*make_host()).rpc(tasks=1).json()["tasks"][0]

    assert task["input_url"].startswith(f"{s3.endpoint}/{BUCKET}/")
    assert requests.get(task["input_url"], timeout=10).content == data
    time.sleep(3)
    assert requests.get(task["input_url"], timeout=10).status_code == 403


def test_readiness_checks_the_bucket(s3, settings):
    assert Client().get("/readyz").json()["storage"] == "ok"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": default_storage_settings(
            s3.storage_url().replace(f"s3://{BUCKET}", "s3://no-such-bucket")
        ),
    }
    answer = Client().get("/readyz")
    assert answer.status_code == 503 and answer.json()["storage"] != "ok"


def test_a_worker_thread_builds_its_s3_client_when_it_boots(s3):
    """Not inside its first task: a batch's assimilation waited 0.6 s for it (core.warmup)."""

    broker = StubBroker()
    broker.add_middleware(WarmStorage())
    built_before_the_task: list[bool] = []

    @dramatiq.actor(broker=broker)
    def store() -> None:
        storage = storages["default"]
        # django-storages keeps each thread's client here; the first use of .connection makes it.
        built_before_the_task.append(getattr(storage._connections, "connection", None) is not None)
        storage.save("warm.txt", ContentFile(b"x"))

    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        store.send()
        broker.join(store.queue_name, fail_fast=True)
        worker.join()
    finally:
        worker.stop()
    assert built_before_the_task == [True]
    assert default_storage.exists("warm.txt")
