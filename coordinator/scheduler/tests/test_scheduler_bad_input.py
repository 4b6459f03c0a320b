"""Bad input to the scheduler RPC and the output upload: a clear 4xx, and nothing changes.

ARCHITECTURE rules 5 and 8: every byte from a host is validated, size-limited and bound
to the host that sent it, and a refused request leaves the database as it was. The RPC is
atomic, so a request with one good and one bad report records neither. Every refusal has a
positive control: the same request without the bad part succeeds.

The one row a refused request does leave is its nonce (``HostNonce``): the signature was
good, so the nonce is burned and the same bytes cannot be replayed later. The snapshots
below therefore leave nonces out, and ``test_a_refused_request_cannot_be_replayed`` checks
that on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from coordinator.accounts.models import Host, HostNonce
from coordinator.testing import SignedHost, assert_error, make_app, make_host, make_units
from coordinator.work.lifecycle import Outcome, ReplicaState
from coordinator.work.models import Replica, WorkUnit

pytestmark = pytest.mark.django_db

SCHEDULER = "/api/v1/scheduler"
INLINE_MAX = settings.TESSERA["INLINE_BYTES_MAX"]


# --- helpers -------------------------------------------------------------------------------


def snapshot() -> dict[str, Any]:
    """Every row the RPC or an upload could write, nonces aside (see the module docstring)."""
    return {
        "hosts": list(Host.objects.order_by("pk").values()),
        "units": list(WorkUnit.objects.order_by("pk").values()),
        "replicas": [
            {**row, "output_inline": None if row["output_inline"] is None else bytes(row["output_inline"])}
            for row in Replica.objects.order_by("pk").values()
        ],
    }


def stored_outputs(media_root) -> list[str]:
    """Every output file: hosts' uploads and the coordinator's checked copies."""
    return sorted(
        str(path.relative_to(media_root))
        for folder in (media_root / "uploads", media_root / "outputs")
        if folder.exists()
        for path in folder.rglob("*")
        if path.is_file()
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def success(
    replica_id: int, output: bytes = b"result", /, *, inline: bool = True, **changes: Any
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "replica": replica_id,
        "status": "success",
        "cpu_time": 12.5,
        "exit_code": 0,
        "output_sha256": sha(output),
        "output_size": len(output),
    }
    if inline:
        report["output_inline"] = base64.b64encode(output).decode()
    report.update(changes)
    return {k: v for k, v in report.items() if v is not DROP}


def failure(replica_id: int, /, **changes: Any) -> dict[str, Any]:
    report = {
        "replica": replica_id,
        "status": "client_error",
        "cpu_time": 1.0,
        "exit_code": 3,
        "message": "boom",
    }
    report.update(changes)
    return {k: v for k, v in report.items() if v is not DROP}


DROP = object()  # a field value meaning "leave this field out"


class Scene:
    """Host A holds replicas ``good`` and ``bad`` (and a spare); host B holds ``other``."""

    def __init__(self, *, max_output_bytes: int = 1024 * 1024) -> None:
        self.app = make_app(max_output_bytes=max_output_bytes)
        make_units(self.app, 6, min_quorum=1, target_nresults=1)
        self.a = SignedHost(*make_host(), client=Client(raise_request_exception=False))
        self.b = SignedHost(*make_host(), client=Client(raise_request_exception=False))
        reply = self.a.rpc(tasks=3)
        assert reply.status_code == 200
        self.good, self.bad, self.spare = (task["replica"] for task in reply.json()["tasks"])
        reply = self.b.rpc(tasks=1)
        assert reply.status_code == 200
        self.other = reply.json()["tasks"][0]["replica"]

    def post(self, payload: Any):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.a.send("POST", SCHEDULER, body)

    @staticmethod
    def unit_of(replica_id: int) -> int:
        return Replica.objects.get(pk=replica_id).workunit_id

    def report(self, *reports: dict[str, Any], tasks: int = 0):
        payload: dict[str, Any] = {"reports": list(reports)}
        if tasks:
            payload["work_request"] = {"tasks": tasks}
        return self.post(payload)

    def assert_recorded(self, response, *replicas: int) -> None:
        assert response.status_code == 200, response.content[:600]
        acks = response.json()["acks"]
        assert acks == [{"replica": r, "status": "accepted"} for r in replicas]
        for replica in Replica.objects.filter(pk__in=replicas):
            assert replica.state == ReplicaState.OVER

    def assert_untouched(self, *replicas: int) -> None:
        for replica in Replica.objects.filter(pk__in=replicas):
            assert (replica.state, replica.outcome) == (ReplicaState.IN_PROGRESS, Outcome.INIT)
            assert replica.received_at is None and replica.output_inline is None


@pytest.fixture
def scene() -> Scene:
    return Scene()


def refused(scene: Scene, response, status: int, code: str | None, before: dict[str, Any]) -> dict[str, Any]:
    body = assert_error(response, status, code)
    assert snapshot() == before, "a refused request must change nothing"
    return body


# --- the body as a whole --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"reports": [}',
        b"{'reports': []}",
        b'{"reports": []} trailing',
        b"\xff\xfe\x00",
        b'{"reports": [{"replica": 1, "status": "client_error", "cpu_time": NaN}]}',
        b'{"reports": [{"replica": 1, "status": "client_error", "cpu_time": Infinity}]}',
        b'{"reports": [{"replica": 1, "status": "client_error", "cpu_time": 1' + b"0" * 5000 + b"}]}",
    ],
    ids=[
        "truncated",
        "broken-list",
        "single-quotes",
        "trailing-text",
        "not-utf8",
        "nan",
        "infinity",
        "int-over-4300-digits",
    ],
)
def test_malformed_json_is_400(scene, raw):
    before = snapshot()

    body = refused(scene, scene.post(raw), 400, "parse_error", before)

    assert "JSON" in body["detail"]
    assert scene.report(failure(scene.good)).status_code == 200  # control


@pytest.mark.parametrize(
    "payload",
    [
        [failure(0)],
        [],
        "reports",
        42,
        None,
        {"reports": {"replica": 1}},
        {"reports": "all of them"},
        {"reports": [1, 2]},
        {"reports": [None]},
        {"reports": [[]]},
        {"work_request": [1]},
        {"work_request": "please"},
        {"host_info": "fast", "reports": [failure(0)]},
        {"host_info": {"flops": -1.0}, "reports": [failure(0)]},
        {"host_info": {"flops": 1e16}, "reports": [failure(0)]},
        {"host_info": {"n_cpus": 0}, "reports": [failure(0)]},
        {"host_info": {"memory_bytes": 2**60}, "reports": [failure(0)]},
    ],
    ids=[
        "top-level-list",
        "empty-list",
        "string",
        "number",
        "null",
        "reports-object",
        "reports-string",
        "reports-of-numbers",
        "reports-of-null",
        "reports-of-lists",
        "work-request-list",
        "work-request-string",
        "host-info-string",
        "host-info-negative-flops",
        "host-info-absurd-flops",
        "host-info-no-cpu",
        "host-info-absurd-memory",
    ],
)
def test_a_body_of_the_wrong_shape_is_400(scene, payload):
    if isinstance(payload, list) and payload:
        payload = [failure(scene.good)]
    if isinstance(payload, dict) and "host_info" in payload:  # a good report beside bad host info
        payload = {**payload, "reports": [failure(scene.good)]}
    before = snapshot()

    refused(scene, scene.post(payload), 400, "invalid_input", before)

    scene.assert_untouched(scene.good)
    scene.assert_recorded(scene.report(failure(scene.good)), scene.good)


def test_a_body_over_the_request_limit_is_413(scene):
    limit = settings.TESSERA["REQUEST_BODY_MAX"]
    payload = json.dumps({"reports": [failure(scene.good)]}).encode()
    too_big = payload + b" " * (limit + 1 - len(payload))
    just_fits = payload + b" " * (limit - len(payload))
    assert len(too_big) == limit + 1 and len(just_fits) == limit
    before = snapshot()

    refused(scene, scene.post(too_big), 413, "too_large", before)

    scene.assert_recorded(scene.post(just_fits), scene.good)


def test_too_many_reports_in_one_request_is_400(scene):
    most = settings.TESSERA["MAX_REPORTS_PER_RPC"]
    before = snapshot()

    body = refused(scene, scene.report(*[failure(scene.good)] * (most + 1)), 400, "invalid_input", before)

    assert "reports" in body["detail"]


def test_a_float_literal_past_the_double_range_is_400(scene):
    raw = json.dumps({"reports": [failure(scene.good, cpu_time=0)]}).replace(
        '"cpu_time": 0', '"cpu_time": 1e400'
    )
    before = snapshot()

    body = refused(scene, scene.post(raw.encode()), 400, "invalid_input", before)

    assert "reports" in body["detail"]


@pytest.mark.parametrize("depth", [2000, 100_000])
def test_deeply_nested_json_is_400_not_500(scene, depth):
    raw = b'{"reports": ' + b"[" * depth + b"]" * depth + b"}"
    before = snapshot()

    refused(scene, scene.post(raw), 400, "parse_error", before)


# --- one report at a time: each bad one, beside a good one ---------------------------------


BAD_REPORTS = {
    # missing fields
    "no-replica": lambda s: failure(s.bad, replica=DROP),
    "no-status": lambda s: failure(s.bad, status=DROP),
    "no-cpu-time": lambda s: failure(s.bad, cpu_time=DROP),
    "success-without-sha256": lambda s: success(s.bad, output_sha256=DROP),
    "success-without-size": lambda s: success(s.bad, output_size=DROP),
    "success-without-any-output": lambda s: success(
        s.bad, output_sha256=DROP, output_size=DROP, output_inline=DROP
    ),
    # wrong types and values
    "replica-string": lambda s: failure(s.bad, replica="first"),
    "replica-zero": lambda s: failure(s.bad, replica=0),
    "replica-negative": lambda s: failure(s.bad, replica=-s.bad),
    "replica-fraction": lambda s: failure(s.bad, replica=s.bad + 0.5),
    "replica-list": lambda s: failure(s.bad, replica=[s.bad]),
    "cpu-time-string": lambda s: failure(s.bad, cpu_time="a long while"),
    "cpu-time-negative": lambda s: failure(s.bad, cpu_time=-1.0),
    "cpu-time-huge": lambda s: failure(s.bad, cpu_time=1e300),
    "cpu-time-null": lambda s: failure(s.bad, cpu_time=None),
    "cpu-time-integer-past-float": lambda s: failure(s.bad, cpu_time=10**400),
    "exit-code-huge": lambda s: failure(s.bad, exit_code=2**31),
    "exit-code-very-huge": lambda s: failure(s.bad, exit_code=10**30),
    "exit-code-string": lambda s: failure(s.bad, exit_code="segfault"),
    "status-not-a-choice": lambda s: failure(s.bad, status="no_reply"),
    "status-validated": lambda s: failure(s.bad, status="valid"),
    "status-upper-case": lambda s: success(s.bad, status="SUCCESS"),
    "status-null": lambda s: failure(s.bad, status=None),
    "output-size-negative": lambda s: success(s.bad, output_size=-1),
    "output-size-huge": lambda s: success(s.bad, output_size=2**64),
    "message-too-long": lambda s: failure(s.bad, message="m" * 1001),
    "message-nul-byte": lambda s: failure(s.bad, message="nul\x00byte"),
    "message-lone-surrogate": lambda s: failure(s.bad, message="\ud800"),
    # outputs that do not fit the status
    "error-with-sha256": lambda s: failure(s.bad, output_sha256=sha(b"x"), output_size=1),
    "error-with-inline-output": lambda s: failure(s.bad, output_inline=base64.b64encode(b"x").decode()),
    # malformed outputs
    "sha256-upper-case": lambda s: success(s.bad, output_sha256=sha(b"result").upper()),
    "sha256-too-short": lambda s: success(s.bad, output_sha256=sha(b"result")[:63]),
    "sha256-not-hex": lambda s: success(s.bad, output_sha256="g" * 64),
    "sha256-number": lambda s: success(s.bad, output_sha256=12345),
    "inline-not-base64": lambda s: success(s.bad, output_inline="this is not base64!"),
    "inline-unpadded": lambda s: success(s.bad, output_inline="cmVzdWx0"[:-1]),
    "inline-number": lambda s: success(s.bad, output_inline=12345),
    "inline-over-the-limit": lambda s: success(s.bad, b"o" * (INLINE_MAX + 1)),
}


@pytest.mark.parametrize("case", list(BAD_REPORTS))
def test_a_malformed_report_is_400_and_the_good_one_beside_it_is_not_recorded(scene, case):
    bad = BAD_REPORTS[case](scene)
    before = snapshot()

    body = refused(scene, scene.report(success(scene.good), bad, tasks=1), 400, "invalid_input", before)

    assert "reports" in body["detail"], body
    scene.assert_untouched(scene.good, scene.bad)
    # Control: without the bad report, the good one is recorded and work goes out.
    response = scene.report(success(scene.good), tasks=1)
    scene.assert_recorded(response, scene.good)
    assert len(response.json()["tasks"]) == 1


def test_the_inline_limit_itself_is_accepted(scene):
    output = b"o" * INLINE_MAX

    scene.assert_recorded(scene.report(success(scene.bad, output)), scene.bad)

    assert bytes(Replica.objects.get(pk=scene.bad).output_inline) == output


# --- reports that are well formed but break a rule -----------------------------------------


RULE_BREAKING = {
    "inline-hash-mismatch": (
        lambda s: success(s.bad, b"result", output_sha256=sha(b"other")),
        400,
        "output_mismatch",
    ),
    "inline-size-mismatch": (lambda s: success(s.bad, b"result", output_size=7), 400, "output_mismatch"),
    "inline-empty-but-sized": (lambda s: success(s.bad, b"", output_size=6), 400, "output_mismatch"),
    "not-uploaded-yet": (lambda s: success(s.bad, inline=False), 400, "output_missing"),
    "another-hosts-replica": (lambda s: failure(s.other), 403, "not_your_replica"),
    "unknown-replica": (
        lambda s: failure(Replica.objects.order_by("-pk").first().pk + 1000),
        404,
        "unknown_replica",
    ),
}


@pytest.mark.parametrize("case", list(RULE_BREAKING))
def test_a_report_breaking_a_rule_is_refused_and_the_good_one_beside_it_is_not_recorded(scene, case):
    build, status, code = RULE_BREAKING[case]
    before = snapshot()

    refused(scene, scene.report(success(scene.good), build(scene), tasks=1), status, code, before)

    scene.assert_untouched(scene.good, scene.bad)
    scene.assert_recorded(scene.report(success(scene.good), tasks=1), scene.good)


def test_a_bad_report_before_a_good_one_is_refused_too(scene):
    before = snapshot()

    refused(scene, scene.report(failure(scene.other), success(scene.good)), 403, "not_your_replica", before)

    scene.assert_untouched(scene.good)


@pytest.mark.parametrize("replica", [2**63, 10**30])
def test_a_replica_id_past_the_database_range_is_refused_not_500(scene, replica):
    before = snapshot()

    response = scene.report(success(scene.good), failure(replica))

    assert response.status_code in (400, 404), response.content[:300]
    refused(scene, response, response.status_code, None, before)


def test_a_replica_reported_twice_in_one_request_is_400(scene):
    before = snapshot()

    refused(scene, scene.report(success(scene.good), failure(scene.good)), 400, "duplicate_report", before)
    refused(scene, scene.report(failure(scene.good), failure(scene.good)), 400, "duplicate_report", before)

    scene.assert_untouched(scene.good)
    scene.assert_recorded(scene.report(failure(scene.good)), scene.good)


def test_a_replica_already_reported_differently_is_409(scene):
    scene.assert_recorded(scene.report(failure(scene.bad)), scene.bad)
    before = snapshot()

    refused(scene, scene.report(success(scene.good), success(scene.bad)), 409, "already_reported", before)

    scene.assert_untouched(scene.good)
    # Control: the same report again is a duplicate, acknowledged, and the good one goes in.
    response = scene.report(success(scene.good), failure(scene.bad))
    assert response.status_code == 200, response.content
    acks = sorted(response.json()["acks"], key=lambda ack: ack["replica"] != scene.good)
    assert acks == [
        {"replica": scene.good, "status": "accepted"},
        {"replica": scene.bad, "status": "duplicate"},
    ]


def test_a_success_reported_twice_with_another_output_is_409(scene):
    scene.assert_recorded(scene.report(success(scene.bad, b"first")), scene.bad)
    before = snapshot()

    refused(scene, scene.report(success(scene.bad, b"second")), 409, "already_reported", before)

    refused(scene, scene.report(failure(scene.bad)), 409, "already_reported", before)
    assert bytes(Replica.objects.get(pk=scene.bad).output_inline) == b"first"
    assert scene.report(success(scene.bad, b"first")).json()["acks"] == [
        {"replica": scene.bad, "status": "duplicate"}
    ]


def test_a_refused_request_cannot_be_replayed(scene):
    """The nonce of a refused but well-signed request is burned: the same bytes are refused."""
    body = json.dumps({"reports": [success(scene.good), success(scene.bad, inline=False)]}).encode()
    headers = scene.a.headers("POST", SCHEDULER, body)
    nonces = HostNonce.objects.count()

    first = scene.a.client.generic("POST", SCHEDULER, body, content_type="application/json", **headers)
    assert_error(first, 400, "output_missing")
    assert HostNonce.objects.count() == nonces + 1
    assert scene.a.upload(scene.bad, b"result").status_code == 204
    before = snapshot()

    replay = scene.a.client.generic("POST", SCHEDULER, body, content_type="application/json", **headers)

    assert_error(replay, 401, "replayed")
    assert snapshot() == before


# --- reports against uploaded outputs -------------------------------------------------------


def test_a_success_whose_hash_differs_from_the_upload_is_400(scene):
    assert scene.a.upload(scene.bad, b"uploaded output").status_code == 204
    before = snapshot()

    claimed = success(scene.bad, b"something else", inline=False)
    refused(scene, scene.report(success(scene.good), claimed), 400, "output_mismatch", before)
    sized = success(scene.bad, b"uploaded output", inline=False, output_size=3)
    refused(scene, scene.report(success(scene.good), sized), 400, "output_mismatch", before)

    scene.assert_untouched(scene.good)
    scene.assert_recorded(
        scene.report(success(scene.good), success(scene.bad, b"uploaded output", inline=False)),
        scene.good,
        scene.bad,
    )
    assert Replica.objects.get(pk=scene.bad).output_sha256 == sha(b"uploaded output")


# --- work requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "work_request",
    [
        {"tasks": -1},
        {"tasks": "two"},
        {"tasks": 1.5},
        {"tasks": 10**6},
        {"seconds": -1},
        {"seconds": 1e300},
        {"seconds": "long"},
        {"tasks": None},
    ],
    ids=[
        "tasks-negative",
        "tasks-string",
        "tasks-fraction",
        "tasks-huge",
        "seconds-negative",
        "seconds-huge",
        "seconds-string",
        "tasks-null",
    ],
)
def test_a_bad_work_request_is_400_and_hands_out_nothing(scene, work_request):
    unsent = Replica.objects.filter(state=ReplicaState.UNSENT).count()
    assert unsent > 0
    before = snapshot()

    body = refused(
        scene,
        scene.post({"reports": [failure(scene.good)], "work_request": work_request}),
        400,
        "invalid_input",
        before,
    )

    assert "work_request" in body["detail"]
    assert Replica.objects.filter(state=ReplicaState.UNSENT).count() == unsent
    response = scene.post({"reports": [failure(scene.good)], "work_request": {"tasks": 1}})
    scene.assert_recorded(response, scene.good)
    assert len(response.json()["tasks"]) == 1


# --- output uploads: a policy from the coordinator, the bytes straight to storage ------------


def stored(response) -> None:
    assert response.status_code == 204, response.content


def test_an_upload_over_the_apps_output_limit_is_refused_by_the_storage_and_stores_nothing(media_root):
    scene = Scene(max_output_bytes=16)
    policy = scene.a.upload_policy(scene.good).json()
    assert (
        policy["max_bytes"] == 16
        and policy["fields"]["key"] == f"uploads/{scene.unit_of(scene.good)}/{scene.good}"
    )
    before = snapshot()

    refused(scene, scene.a.upload(scene.good, b"x" * 17, policy=policy), 413, "too_large", before)

    assert stored_outputs(media_root) == []
    refused(scene, scene.report(success(scene.good, b"x" * 17, inline=False)), 400, "output_missing", before)
    stored(scene.a.upload(scene.good, b"x" * 16, policy=policy))  # control: exactly the limit
    assert len(stored_outputs(media_root)) == 1


def test_no_policy_for_another_hosts_replica_an_unknown_one_or_a_reported_one(scene, media_root):
    before = snapshot()
    refused(scene, scene.a.upload_policy(scene.other), 403, "not_your_replica", before)
    unknown = Replica.objects.order_by("-pk").first().pk + 1000
    refused(scene, scene.a.upload_policy(unknown), 404, "unknown_replica", before)
    refused(scene, scene.a.upload_policy(2**63), 404, "unknown_replica", before)
    assert scene.b.upload_policy(scene.other).status_code == 200  # control: its own host may

    stored(scene.a.upload(scene.good, b"result"))
    scene.assert_recorded(
        scene.report(success(scene.good, inline=False), failure(scene.bad)), scene.good, scene.bad
    )
    files, before = stored_outputs(media_root), snapshot()
    refused(scene, scene.a.upload_policy(scene.good), 409, "already_reported", before)
    refused(scene, scene.a.upload_policy(scene.bad), 409, "already_reported", before)
    assert stored_outputs(media_root) == files
    assert Replica.objects.get(pk=scene.good).uploaded_sha256 == sha(b"result")


def test_a_policy_is_for_its_own_key_only_and_the_report_of_another_replica_is_refused(scene, media_root):
    policy = scene.a.upload_policy(scene.good).json()
    forged = {
        **policy,
        "fields": {**policy["fields"], "key": f"uploads/{scene.unit_of(scene.bad)}/{scene.bad}"},
    }
    before = snapshot()

    refused(scene, scene.a.upload(scene.bad, b"result", policy=forged), 401, "authentication_failed", before)
    assert stored_outputs(media_root) == []
    # Its own key takes the bytes, but they are the good replica's: reporting them for bad fails.
    stored(scene.a.upload(scene.good, b"result", policy=policy))
    before = snapshot()
    refused(scene, scene.report(success(scene.bad, inline=False)), 400, "output_missing", before)
    assert Replica.objects.get(pk=scene.bad).granted_credit is None


def test_an_expired_or_forged_policy_is_refused_and_nothing_is_credited(scene, media_root, monkeypatch):
    policy = scene.a.upload_policy(scene.good).json()
    bad_token = {**policy, "fields": {**policy["fields"], "token": policy["fields"]["token"][:-2] + "xx"}}
    before = snapshot()
    refused(
        scene, scene.a.upload(scene.good, b"result", policy=bad_token), 401, "authentication_failed", before
    )
    later = time.time() + settings.TESSERA["UPLOAD_POLICY_SECONDS"] + 1
    monkeypatch.setattr(time, "time", lambda: later)

    refused(scene, scene.a.upload(scene.good, b"result", policy=policy), 401, "authentication_failed", before)

    assert stored_outputs(media_root) == []
    monkeypatch.undo()  # the host's clock again, for its signed report
    refused(scene, scene.report(success(scene.good, inline=False)), 400, "output_missing", before)


def test_an_upload_policy_is_bound_to_its_path_by_the_signature(scene):
    """Signing one replica's policy request does not get a policy for another replica."""
    headers = scene.a.headers("POST", f"/api/v1/replicas/{scene.good}/upload", b"{}")
    before = snapshot()

    response = scene.a.client.generic(
        "POST", f"/api/v1/replicas/{scene.bad}/upload", b"{}", content_type="application/json", **headers
    )

    refused(scene, response, 401, "bad_signature", before)
