"""The signing scheme and the host key file, without a coordinator."""

import hashlib
import stat

import pytest
from nacl.signing import SigningKey

from tessera_client.protocol import HostKey, Report
from tessera_client.signing import (
    HEADER_HOST,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    b64decode,
    body_digest,
    sign_request,
    signature_is_valid,
    signing_message,
)


def test_the_signed_message_binds_method_path_time_nonce_and_body():
    message = signing_message(
        method="post",
        path="/api/v1/scheduler?x=1",
        timestamp=1700000000,
        nonce="abc123",
        body_sha256=body_digest(b"{}"),
    )
    assert message == (
        b"tessera-ed25519-v1\nPOST\n/api/v1/scheduler?x=1\n1700000000\nabc123\n"
        + hashlib.sha256(b"{}").hexdigest().encode()
    )


def test_a_signature_verifies_only_for_the_exact_request():
    key = SigningKey.generate()
    headers = sign_request(key, method="POST", path="/p", body=b"body", host_id=7, timestamp=100, nonce="n1")
    public = bytes(key.verify_key)
    signature = b64decode(headers[HEADER_SIGNATURE])

    def message(**change):
        parts = dict(method="POST", path="/p", timestamp=100, nonce="n1", body_sha256=body_digest(b"body"))
        parts.update(change)
        return signing_message(**parts)

    assert (
        headers[HEADER_HOST] == "7" and headers[HEADER_TIMESTAMP] == "100" and headers[HEADER_NONCE] == "n1"
    )
    assert signature_is_valid(public, message(), signature)
    assert not signature_is_valid(public, message(body_sha256=body_digest(b"other")), signature)
    assert not signature_is_valid(public, message(path="/q"), signature)
    assert not signature_is_valid(public, message(timestamp=101), signature)
    assert not signature_is_valid(bytes(SigningKey.generate().verify_key), message(), signature)
    assert not signature_is_valid(public, message(), b"\x00" * 64)


def test_nonces_differ_between_requests():
    key = SigningKey.generate()
    first = sign_request(key, method="GET", path="/", body=b"")
    second = sign_request(key, method="GET", path="/", body=b"")
    assert first[HEADER_NONCE] != second[HEADER_NONCE]
    assert HEADER_HOST not in first


def test_the_host_key_is_saved_for_its_owner_only_and_loads_back(tmp_path):
    key = HostKey.generate()
    path = tmp_path / "host.key"
    key.save(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert HostKey.load(path).public_key_b64 == key.public_key_b64


def test_a_report_carries_the_hash_and_size_of_its_output():
    inline = Report(replica=3, status="success", cpu_time=2.0, output=b"abc").to_json()
    uploaded = Report(replica=3, status="success", cpu_time=2.0, output=b"abc", inline=False).to_json()
    error = Report(replica=4, status="client_error", cpu_time=0.1, exit_code=9, message="boom").to_json()

    assert inline["output_sha256"] == hashlib.sha256(b"abc").hexdigest() and inline["output_size"] == 3
    assert b64decode(inline["output_inline"]) == b"abc"
    assert "output_inline" not in uploaded and uploaded["output_size"] == 3
    assert error == {
        "replica": 4,
        "status": "client_error",
        "cpu_time": 0.1,
        "exit_code": 9,
        "message": "boom",
    }


@pytest.mark.parametrize(
    ("elapsed", "sent"),
    [(12.5, 12.5), (0.0, 0.0), (-3.0, 0.0), (1e12, 1e8), (float("nan"), None), (None, None)],
)
def test_a_report_says_how_long_its_app_ran_within_the_coordinator_s_bounds(elapsed, sent):
    report = Report(replica=3, status="client_error", cpu_time=2.0, elapsed=elapsed).to_json()

    assert report.get("elapsed") == sent and ("elapsed" in report) == (sent is not None)
