"""A project's minimum client version: an older client, or one that does not say, gets the
upgrade message and no work; the scheduler changes nothing for it (BOINC's
``min_core_client_version``)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from nacl.signing import SigningKey
from tessera_client.protocol import USER_AGENT, HostKey
from tessera_client.signing import sign_request

from coordinator.accounts.models import Host
from coordinator.core import keys
from coordinator.testing import SignedHost, assert_error, make_app, make_host, make_units, make_volunteer
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica

pytestmark = pytest.mark.django_db

OLD = "tessera-client/0.1.0 Python/3.9.18 linux requests/2.32.5"


@pytest.fixture
def minimum(settings):
    settings.TESSERA = {**settings.TESSERA, "MIN_CLIENT_VERSION": "0.2.0"}


def host_calling_as(user_agent: str) -> SignedHost:
    return SignedHost(*make_host(), client=Client(HTTP_USER_AGENT=user_agent))


def register_as(user_agent: str, token: str, key: HostKey):
    body = json.dumps(
        {
            "public_key": key.public_key_b64,
            "name": "laptop",
            "platform": "linux-x86_64",
            "n_cpus": 1,
            "memory_bytes": 8 << 30,
            "flops": 2.5e9,
        }
    ).encode()
    signed = sign_request(key.signing_key, method="POST", path="/api/v1/hosts", body=body)
    meta = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in signed.items()}
    return Client(HTTP_USER_AGENT=user_agent).generic(
        "POST",
        "/api/v1/hosts",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
        **meta,
    )


@pytest.mark.parametrize("user_agent", [OLD, "python-requests/2.32.5", ""])
def test_an_old_or_silent_client_gets_the_upgrade_message_and_no_work(minimum, user_agent):
    make_units(make_app(), 4)
    old = host_calling_as(user_agent)
    contact_before = Host.objects.get(pk=old.host.pk).last_contact

    reply = old.rpc(tasks=4)

    body = assert_error(reply, 426, "client_too_old")
    assert "needs tessera-client 0.2.0 or later" in body["detail"]
    assert "http://testserver/client" in body["detail"], "it says where the install command is"
    assert reply["Retry-After"] == "3600"
    assert not Replica.objects.exclude(state=ReplicaState.UNSENT).exists(), "no work went out"
    assert Host.objects.get(pk=old.host.pk).last_contact == contact_before

    current = host_calling_as(USER_AGENT).rpc(tasks=4)  # the positive control
    assert current.status_code == 200 and len(current.json()["tasks"]) == 4


def test_an_old_client_cannot_register_a_host(minimum):
    volunteer, token = make_volunteer()

    body = assert_error(register_as(OLD, token, HostKey.generate()), 426, "client_too_old")

    assert "this one is 0.1.0" in body["detail"] and not volunteer.hosts.exists()
    assert register_as(USER_AGENT, token, HostKey.generate()).status_code == 201


def test_without_a_minimum_any_client_may_call():
    make_units(make_app(), 2)
    assert host_calling_as("python-requests/2.32.5").rpc(tasks=2).status_code == 200


def test_the_project_api_names_the_minimum_and_the_client_it_serves(minimum, client, tmp_path, settings):
    settings.CLIENT_WHEEL_DIR = tmp_path  # nothing built here
    settings.PROJECT_PUBLIC_KEY = keys.public_key_b64(SigningKey.generate())
    offer = client.get("/api/v1/project").json()["client"]
    assert offer["min_version"] == "0.2.0" and offer["install_page"] == "http://testserver/client"
    assert offer["version"] is None and offer["requirement"] is None
