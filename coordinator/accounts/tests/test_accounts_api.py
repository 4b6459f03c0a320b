"""Volunteer sign-up, account tokens, host registration and the host signature checks.

Every refusal must be a clear 4xx with ``{"error": code, "detail": text}`` and must leave
the database exactly as it was (ARCHITECTURE rules 5, 7 and 8). Each refusal has a
positive control beside it: the same request done right succeeds, so the test can fail.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from tessera_client.protocol import HostKey
from tessera_client.signing import sign_request

from coordinator.accounts.models import Host, HostNonce, Volunteer
from coordinator.accounts.services import hash_token
from coordinator.testing import PASSWORD, SignedHost, assert_error, make_app, make_host, make_units
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica, WorkUnit

pytestmark = pytest.mark.django_db

SIGNUP = "/api/v1/volunteers"
TOKEN = "/api/v1/volunteers/token"
HOSTS = "/api/v1/hosts"
SCHEDULER = "/api/v1/scheduler"
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def client() -> Client:
    # A refused request must be a response, not an exception escaping the view: a 500 shows
    # up as a status code the test can assert on.
    return Client(raise_request_exception=False)


def snapshot() -> dict[str, Any]:
    """Every row a request could touch, in a comparable form."""
    User = get_user_model()
    return {
        "users": list(User.objects.order_by("pk").values("pk", "username", "password", "is_active")),
        "volunteers": list(Volunteer.objects.order_by("pk").values()),
        "hosts": list(Host.objects.order_by("pk").values()),
        "nonces": list(HostNonce.objects.order_by("pk").values("host_id", "nonce")),
        "units": list(WorkUnit.objects.order_by("pk").values()),
        "replicas": list(Replica.objects.order_by("pk").values()),
    }


def post_json(client: Client, path: str, payload: Any, **meta: str):
    return client.post(path, json.dumps(payload), content_type="application/json", **meta)


def assert_unauthorized(response, code: str | None = None) -> dict[str, Any]:
    body = assert_error(response, 401, code)
    assert response.has_header("WWW-Authenticate"), "a 401 must say how to authenticate"
    assert response["WWW-Authenticate"].strip()
    return body


def signup(client: Client, username: str, password: str = PASSWORD, **extra: Any):
    return post_json(client, SIGNUP, {"username": username, "password": password, **extra})


def host_fields(key: HostKey, **overrides: Any) -> dict[str, Any]:
    fields = {
        "public_key": key.public_key_b64,
        "name": "laptop",
        "platform": "linux-x86_64",
        "n_cpus": 4,
        "memory_bytes": 8 << 30,
        "flops": 2.5e9,
    }
    fields.update(overrides)
    return fields


def meta_of(headers: dict[str, str]) -> dict[str, str]:
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def register(
    client: Client,
    token: str | None,
    key: HostKey,
    payload: Any = None,
    *,
    signer: HostKey | None = None,
    signed: bool = True,
    raw_body: bytes | None = None,
):
    """POST /api/v1/hosts as a real client does: account token, and signed by the new key."""
    body = (
        raw_body
        if raw_body is not None
        else json.dumps(host_fields(key) if payload is None else payload).encode()
    )
    meta: dict[str, str] = {}
    if token is not None:
        meta["HTTP_AUTHORIZATION"] = f"Token {token}"
    if signed:
        meta.update(meta_of(sign_request((signer or key).signing_key, method="POST", path=HOSTS, body=body)))
    return client.generic("POST", HOSTS, body, content_type="application/json", **meta)


def non_canonical(b64: str) -> str:
    """The same bytes spelled differently: flip a bit base64 discards before the padding."""
    assert b64.endswith("=") and not b64.endswith("==")
    last = B64_ALPHABET.index(b64[-2])
    return b64[:-2] + B64_ALPHABET[last ^ 1] + "="


# --- sign-up -------------------------------------------------------------------------------


def test_signup_creates_a_volunteer_and_shows_the_token_once(client):
    response = signup(client, "ada", email="ada@example.org")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"volunteer_id", "username", "account_token"}
    assert body["username"] == "ada"
    token = body["account_token"]
    assert token.startswith("tsr_") and len(token) > 30
    volunteer = Volunteer.objects.select_related("user").get(pk=body["volunteer_id"])
    assert volunteer.user.username == "ada"
    assert volunteer.user.email == "ada@example.org"
    assert volunteer.user.check_password(PASSWORD)
    assert PASSWORD not in response.content.decode()
    # Only the token's hash is kept: the coordinator cannot show it again.
    assert volunteer.token_hash == hash_token(token) != token
    # And the token works at once.
    assert register(client, token, HostKey.generate()).status_code == 201


def test_signup_with_a_taken_name_is_409_whatever_the_case(client):
    assert signup(client, "grace").status_code == 201
    before = snapshot()

    assert_error(signup(client, "grace"), 409, "username_taken")
    assert_error(signup(client, "GRACE"), 409, "username_taken")

    assert snapshot() == before
    assert signup(client, "grace2").status_code == 201  # control: a free name is fine


@pytest.mark.parametrize(
    "password",
    ["short", "password", "12345678901234", "grace-hopper", ""],
    ids=["too-short", "common", "numeric", "like-the-name", "empty"],
)
def test_signup_with_a_weak_password_is_400(client, password):
    before = snapshot()

    response = signup(client, "grace-hopper", password)

    assert_error(response, 400)
    assert snapshot() == before
    assert signup(client, "grace-hopper", PASSWORD).status_code == 201


@pytest.mark.parametrize(
    "username",
    ["", "has space", "semi;colon", "slash/name", "x" * 151, "new\nline", ["list"], {"a": 1}, True, None],
)
def test_signup_with_a_bad_username_is_400(client, username):
    before = snapshot()

    body = assert_error(post_json(client, SIGNUP, {"username": username, "password": PASSWORD}), 400)

    assert body["error"] == "invalid_input"
    assert "username" in body["detail"]
    assert snapshot() == before


@pytest.mark.parametrize(
    "payload",
    [
        {"password": PASSWORD},
        {"username": "ada"},
        {"username": "ada", "password": PASSWORD, "email": "not an email"},
        {"username": "ada", "password": ["x"]},
    ],
    ids=["no-username", "no-password", "bad-email", "password-list"],
)
def test_signup_with_missing_or_wrong_fields_is_400(client, payload):
    before = snapshot()

    assert_error(post_json(client, SIGNUP, payload), 400, "invalid_input")

    assert snapshot() == before


@pytest.mark.parametrize("raw", [b"{", b'{"username": "ada",}', b"\xff\xfe", b'["ada"]', b"null", b'"ada"'])
def test_signup_with_malformed_or_non_object_json_is_400(client, raw):
    before = snapshot()

    response = client.generic("POST", SIGNUP, raw, content_type="application/json")

    assert_error(response, 400)
    assert snapshot() == before


@pytest.mark.parametrize("path", [SIGNUP, TOKEN])
def test_deeply_nested_json_is_400_not_500(client, path):
    before = snapshot()

    response = client.generic("POST", path, b"[" * 2000 + b"]" * 2000, content_type="application/json")

    assert_error(response, 400, "parse_error")
    assert snapshot() == before


def test_signup_is_throttled_with_a_json_429(client):
    for number in range(20):
        assert signup(client, f"bulk{number}").status_code == 201
    before = snapshot()

    response = signup(client, "bulk20")

    assert_error(response, 429, "throttled")
    assert snapshot() == before


# --- account tokens ------------------------------------------------------------------------


def test_a_new_token_works_and_the_old_one_stops_working(client):
    old = signup(client, "linus").json()["account_token"]

    response = post_json(client, TOKEN, {"username": "linus", "password": PASSWORD})

    assert response.status_code == 200, response.content
    new = response.json()["account_token"]
    assert new.startswith("tsr_") and new != old
    assert Volunteer.objects.get(user__username="linus").token_hash == hash_token(new)
    before = snapshot()
    assert_unauthorized(register(client, old, HostKey.generate()), "authentication_failed")
    assert snapshot() == before
    assert register(client, new, HostKey.generate()).status_code == 201


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "linus", "password": "not the password at all"},
        {"username": "nobody-by-this-name", "password": PASSWORD},
        {"username": "LINUS", "password": PASSWORD},
    ],
    ids=["wrong-password", "unknown-user", "other-case"],
)
def test_a_token_request_with_wrong_credentials_is_401_and_keeps_the_old_token(client, payload):
    token = signup(client, "linus").json()["account_token"]
    before = snapshot()

    assert_unauthorized(post_json(client, TOKEN, payload))

    assert snapshot() == before
    assert register(client, token, HostKey.generate()).status_code == 201


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"username": "linus"}', b'{"password": "x"}'])
def test_a_malformed_token_request_is_400(client, raw):
    signup(client, "linus")
    before = snapshot()

    assert_error(client.generic("POST", TOKEN, raw, content_type="application/json"), 400)

    assert snapshot() == before


# --- host registration ---------------------------------------------------------------------


@pytest.fixture
def volunteer_token(client) -> str:
    return signup(client, "margaret").json()["account_token"]


def test_registering_a_host_key_makes_a_host_that_can_sign(client, volunteer_token):
    key = HostKey.generate()

    response = register(client, volunteer_token, key)

    assert response.status_code == 201, response.content
    host = Host.objects.get(pk=response.json()["host_id"])
    assert host.volunteer.user.username == "margaret"
    assert host.public_key == key.public_key_b64
    assert (host.name, host.platform, host.n_cpus, host.memory_bytes) == (
        "laptop",
        "linux-x86_64",
        4,
        8 << 30,
    )
    assert host.flops == 2.5e9
    # The registered key now signs scheduler requests for that host.
    assert SignedHost(host, key).rpc().status_code == 200


def test_registering_the_same_key_again_returns_the_same_host(client, volunteer_token):
    key = HostKey.generate()
    first = register(client, volunteer_token, key)
    assert first.status_code == 201
    before = snapshot()

    again = register(client, volunteer_token, key, host_fields(key, name="renamed"))

    assert again.status_code == 200, again.content
    assert again.json() == {"host_id": first.json()["host_id"]}
    after = snapshot()
    # Only the second request's nonce is new: registration burns nonces like every signed request.
    assert len(after.pop("nonces")) == len(before.pop("nonces")) + 1
    assert after == before


def test_a_registration_sent_twice_byte_for_byte_is_a_replay(volunteer_token):
    key = HostKey.generate()
    body = json.dumps(host_fields(key)).encode()
    headers = {"HTTP_AUTHORIZATION": f"Token {volunteer_token}"}
    headers.update(meta_of(sign_request(key.signing_key, method="POST", path=HOSTS, body=body)))

    first = Client().generic("POST", HOSTS, body, content_type="application/json", **headers)
    replay = Client().generic("POST", HOSTS, body, content_type="application/json", **headers)

    assert first.status_code == 201
    assert_error(replay, 401, "replayed")
    assert Host.objects.filter(public_key=key.public_key_b64).count() == 1


def test_a_key_registered_by_another_volunteer_is_409(client, volunteer_token):
    key = HostKey.generate()
    host_id = register(client, volunteer_token, key).json()["host_id"]
    other_token = signup(client, "mallory").json()["account_token"]
    before = snapshot()

    assert_error(register(client, other_token, key), 409, "key_taken")

    assert snapshot() == before
    assert Host.objects.get(pk=host_id).volunteer.user.username == "margaret"


def test_the_same_key_spelled_non_canonically_is_still_the_same_key(client, volunteer_token):
    key = HostKey.generate()
    assert register(client, volunteer_token, key).status_code == 201
    other_token = signup(client, "mallory").json()["account_token"]
    alias = non_canonical(key.public_key_b64)
    assert alias != key.public_key_b64
    assert base64.b64decode(alias) == base64.b64decode(key.public_key_b64)
    before = snapshot()

    response = register(client, other_token, key, host_fields(key, public_key=alias))

    assert response.status_code in (400, 409), response.content
    assert snapshot() == before


@pytest.mark.parametrize(
    "authorization",
    [None, "Token tsr_not-a-real-token", "Token not-even-prefixed", "Token ", "Bearer tsr_x", "tsr_x"],
    ids=["missing", "unknown", "no-prefix", "empty", "bearer", "no-keyword"],
)
def test_registration_without_a_valid_account_token_is_401(client, volunteer_token, authorization):
    key = HostKey.generate()
    body = json.dumps(host_fields(key)).encode()
    meta = meta_of(sign_request(key.signing_key, method="POST", path=HOSTS, body=body))
    if authorization is not None:
        meta["HTTP_AUTHORIZATION"] = authorization
    before = snapshot()

    response = client.generic("POST", HOSTS, body, content_type="application/json", **meta)

    assert_unauthorized(response)
    assert snapshot() == before
    assert register(client, volunteer_token, key).status_code == 201  # control


def test_registration_signed_by_another_key_is_401(client, volunteer_token):
    key, impostor = HostKey.generate(), HostKey.generate()
    before = snapshot()

    assert_unauthorized(register(client, volunteer_token, key, signer=impostor), "bad_signature")

    assert snapshot() == before
    assert register(client, volunteer_token, key).status_code == 201


def test_registration_that_is_not_signed_is_401(client, volunteer_token):
    key = HostKey.generate()
    before = snapshot()

    assert_unauthorized(register(client, volunteer_token, key, signed=False), "not_signed")

    assert snapshot() == before


def test_registration_signed_over_another_body_is_401(client, volunteer_token):
    key = HostKey.generate()
    signed_body = json.dumps(host_fields(key)).encode()
    sent_body = json.dumps(host_fields(key, n_cpus=64)).encode()
    meta = meta_of(sign_request(key.signing_key, method="POST", path=HOSTS, body=signed_body))
    before = snapshot()

    response = client.generic(
        "POST",
        HOSTS,
        sent_body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {volunteer_token}",
        **meta,
    )

    assert_unauthorized(response, "bad_signature")
    assert snapshot() == before


@pytest.mark.parametrize(
    "public_key",
    [
        "not base64 at all!",
        base64.b64encode(b"k" * 31).decode(),
        base64.b64encode(b"k" * 33).decode(),
        base64.b64encode(b"k" * 16).decode(),
        "",
        "A" * 65,
        12345,
        None,
    ],
    ids=["not-base64", "31-bytes", "33-bytes", "16-bytes", "empty", "too-long", "number", "null"],
)
def test_registration_with_a_bad_public_key_is_400(client, volunteer_token, public_key):
    key = HostKey.generate()
    before = snapshot()

    response = register(client, volunteer_token, key, host_fields(key, public_key=public_key))

    body = assert_error(response, 400)
    assert body["error"] in ("bad_public_key", "invalid_input")
    assert snapshot() == before


@pytest.mark.parametrize(
    "change",
    [
        {"n_cpus": "four"},
        {"n_cpus": 0},
        {"n_cpus": 10**6},
        {"n_cpus": 2.5},
        {"memory_bytes": -1},
        {"memory_bytes": 2**63},
        {"memory_bytes": "lots"},
        {"flops": -1.0},
        {"flops": 1e300},
        {"flops": "fast"},
        {"platform": "linux x86"},
        {"platform": ""},
        {"name": ""},
        {"name": "n" * 65},
        {"name": "nul\x00byte"},
        {"name": ["laptop"]},
    ],
    ids=lambda change: "-".join(f"{k}={v!r}"[:30] for k, v in change.items()),
)
def test_registration_with_wrong_types_or_values_is_400(client, volunteer_token, change):
    key = HostKey.generate()
    before = snapshot()

    response = register(client, volunteer_token, key, host_fields(key, **change))

    body = assert_error(response, 400, "invalid_input")
    assert set(change) <= set(body["detail"]), body
    assert snapshot() == before


@pytest.mark.parametrize("missing", ["public_key", "name", "platform", "n_cpus", "memory_bytes"])
def test_registration_with_a_missing_field_is_400(client, volunteer_token, missing):
    key = HostKey.generate()
    fields = host_fields(key)
    del fields[missing]
    before = snapshot()

    body = assert_error(register(client, volunteer_token, key, fields), 400, "invalid_input")

    assert missing in body["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"host"', b"\xff"])
def test_registration_with_malformed_json_is_400(client, volunteer_token, raw):
    before = snapshot()

    assert_error(register(client, volunteer_token, HostKey.generate(), raw_body=raw), 400)

    assert snapshot() == before


def test_registration_with_deeply_nested_json_is_400_not_500(client, volunteer_token):
    before = snapshot()

    raw = b"[" * 5000 + b"]" * 5000
    assert_error(register(client, volunteer_token, HostKey.generate(), raw_body=raw), 400, "parse_error")

    assert snapshot() == before


# --- host signatures on the scheduler endpoint ---------------------------------------------


class World:
    """A host holding one replica, about to report it and ask for more work."""

    def __init__(self) -> None:
        app = make_app()
        make_units(app, 3, min_quorum=1, target_nresults=1)
        self.host, self.key = make_host()
        self.signed = SignedHost(self.host, self.key, Client(raise_request_exception=False))
        claimed = self.signed.rpc(tasks=1)
        assert claimed.status_code == 200
        self.replica_id = claimed.json()["tasks"][0]["replica"]
        self.body = json.dumps(
            {
                "reports": [{"replica": self.replica_id, "status": "client_error", "cpu_time": 3.0}],
                "work_request": {"tasks": 1},
            }
        ).encode()

    def headers(
        self,
        *,
        key: HostKey | None = None,
        method: str = "POST",
        path: str = SCHEDULER,
        body: bytes | None = None,
        host_id: Any = None,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """Signature headers made by a signer that does everything right unless told otherwise."""
        return sign_request(
            (key or self.key).signing_key,
            method=method,
            path=path,
            body=self.body if body is None else body,
            host_id=self.host.pk if host_id is None else host_id,
            timestamp=timestamp,
            nonce=nonce,
        )

    def send(self, headers: dict[str, str], body: bytes | None = None):
        return self.signed.client.generic(
            "POST",
            SCHEDULER,
            self.body if body is None else body,
            content_type="application/json",
            **meta_of(headers),
        )

    def assert_accepted(self, response) -> None:
        """The positive control: the report is recorded and new work goes out."""
        assert response.status_code == 200, response.content
        reply = response.json()
        assert reply["acks"] == [{"replica": self.replica_id, "status": "accepted"}]
        assert len(reply["tasks"]) == 1
        replica = Replica.objects.get(pk=self.replica_id)
        assert (replica.state, replica.outcome) == (ReplicaState.OVER, Outcome.CLIENT_ERROR)


@pytest.fixture
def world() -> World:
    return World()


def skew() -> int:
    return settings.TESSERA["SIGNATURE_MAX_SKEW_SECONDS"]


def test_a_correctly_signed_request_is_accepted(world):
    nonces = HostNonce.objects.count()

    world.assert_accepted(world.send(world.headers()))

    assert HostNonce.objects.count() == nonces + 1


def test_timestamps_just_inside_the_window_are_accepted(world):
    assert (
        world.send(world.headers(timestamp=int(time.time()) - skew() + 30, body=b"{}"), b"{}").status_code
        == 200
    )
    world.assert_accepted(world.send(world.headers(timestamp=int(time.time()) + skew() - 30)))


def _forged(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(key=HostKey.generate()), None


def _body_changed(world: World) -> tuple[dict[str, str], bytes | None]:
    headers = world.headers()
    return headers, world.body.replace(b'"tasks": 1', b'"tasks": 2')


def _body_appended(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(), world.body + b" "


def _path_changed(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(path=f"/api/v1/replicas/{world.replica_id}/upload"), None


def _query_added(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(path=SCHEDULER + "?x=1"), None


def _method_changed(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(method="PUT"), None


def _stale(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(timestamp=int(time.time()) - skew() - 30), None


def _future(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(timestamp=int(time.time()) + skew() + 30), None


def _ancient(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(timestamp=0), None


def _unknown_host(world: World) -> tuple[dict[str, str], bytes | None]:
    return world.headers(host_id=Host.objects.order_by("-pk").first().pk + 1000), None


def _other_hosts_id(world: World) -> tuple[dict[str, str], bytes | None]:
    other, _ = make_host()
    return world.headers(host_id=other.pk), None


def _with(**replace: str | None):
    def build(world: World) -> tuple[dict[str, str], bytes | None]:
        headers = world.headers()
        for name, value in replace.items():
            header = "X-Tessera-" + name.capitalize()
            if value is None:
                del headers[header]
            else:
                headers[header] = value
        return headers, None

    return build


TAMPERED = {
    "forged-by-another-key": (_forged, "bad_signature"),
    "signed-by-the-other-hosts-id": (_other_hosts_id, "bad_signature"),
    "body-changed": (_body_changed, "bad_signature"),
    "body-appended": (_body_appended, "bad_signature"),
    "path-changed": (_path_changed, "bad_signature"),
    "query-added-when-signing": (_query_added, "bad_signature"),
    "method-changed": (_method_changed, "bad_signature"),
    "stale-timestamp": (_stale, "stale_timestamp"),
    "future-timestamp": (_future, "stale_timestamp"),
    "epoch-timestamp": (_ancient, "stale_timestamp"),
    "unknown-host": (_unknown_host, "unknown_host"),
    "host-id-letters": (_with(host="abc"), "unknown_host"),
    "host-id-empty": (_with(host=""), "unknown_host"),
    "host-id-negative": (_with(host="-1"), "unknown_host"),
    "host-id-decimal": (_with(host="1.0"), "unknown_host"),
    "host-id-zero": (_with(host="0"), "unknown_host"),
    "host-id-huge": (_with(host="9" * 40), "unknown_host"),
    "no-host-header": (_with(host=None), "unknown_host"),
    "no-timestamp": (_with(timestamp=None), "not_signed"),
    "no-nonce": (_with(nonce=None), "not_signed"),
    "no-signature": (_with(signature=None), "not_signed"),
    "timestamp-not-a-number": (_with(timestamp="yesterday"), "bad_signature"),
    "timestamp-float": (_with(timestamp="1700000000.5"), "bad_signature"),
    "signature-not-base64": (_with(signature="!!! not base64 !!!"), "bad_signature"),
    "signature-unpadded": (_with(signature="A" * 85), "bad_signature"),
    "signature-too-short": (_with(signature=base64.b64encode(b"s" * 63).decode()), "bad_signature"),
    "signature-too-long": (_with(signature=base64.b64encode(b"s" * 65).decode()), "bad_signature"),
    "signature-zeros": (_with(signature=base64.b64encode(b"\0" * 64).decode()), "bad_signature"),
    "nonce-too-short": (_with(nonce="abc"), "bad_signature"),
    "nonce-not-alphanumeric": (_with(nonce="abcdef-0123456789"), "bad_signature"),
    "nonce-too-long": (_with(nonce="a" * 65), "bad_signature"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_request_failing_the_signature_checks_is_401_and_changes_nothing(world, case):
    build, code = TAMPERED[case]
    headers, body = build(world)
    before = snapshot()

    response = world.send(headers, body)

    assert_unauthorized(response, code)
    assert response["WWW-Authenticate"].startswith("Tessera-Ed25519")
    assert snapshot() == before
    # Control: the same request, signed as it should be, goes through.
    world.assert_accepted(world.send(world.headers()))


@pytest.mark.parametrize("host_id", ["²", "¹³"])
def test_a_host_id_of_superscript_digits_is_401_not_500(world, host_id):
    before = snapshot()

    response = world.send(world.headers(host_id=host_id))

    assert_unauthorized(response, "unknown_host")
    assert snapshot() == before


def test_a_replayed_request_is_401_and_changes_nothing(world):
    headers = world.headers()
    world.assert_accepted(world.send(headers))
    before = snapshot()

    replay = world.send(headers)

    assert_unauthorized(replay, "replayed")
    assert snapshot() == before


def test_a_nonce_cannot_be_reused_even_with_a_fresh_signature(world):
    nonce = "0123456789abcdef0123456789abcdef"
    world.assert_accepted(world.send(world.headers(nonce=nonce)))
    body = b"{}"
    before = snapshot()

    response = world.send(world.headers(nonce=nonce, body=body, timestamp=int(time.time()) + 1), body)

    assert_unauthorized(response, "replayed")
    assert snapshot() == before
    assert world.send(world.headers(body=body), body).status_code == 200  # control: a new nonce


def test_the_same_nonce_is_fine_for_another_host(world):
    nonce = "0123456789abcdef0123456789abcdef"
    world.assert_accepted(world.send(world.headers(nonce=nonce)))
    other = SignedHost(*make_host())

    response = other.client.generic(
        "POST",
        SCHEDULER,
        b"{}",
        content_type="application/json",
        **meta_of(
            sign_request(
                other.key.signing_key,
                method="POST",
                path=SCHEDULER,
                body=b"{}",
                host_id=other.host.pk,
                nonce=nonce,
            )
        ),
    )
    assert response.status_code == 200, response.content
