"""What the protocol module will and will not do with addresses and sizes from a reply."""

from __future__ import annotations

import pytest

from tessera_client.contact import report_at_fault
from tessera_client.protocol import HostKey, ProjectSession, ProtocolError


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example/api/v1/replicas/1/output",
        "https://127.0.0.1:8000/api/v1/replicas/1/output",  # another scheme is another origin
        "http://127.0.0.1:8001/api/v1/replicas/1/output",
        "relative/path",
    ],
)
def test_urls_off_the_project_are_refused_before_any_request(url):
    session = ProjectSession("http://127.0.0.1:8000", HostKey.generate(), host_id=1)
    with session, pytest.raises(ProtocolError) as refused:
        session.request("PUT", url, body=b"output")

    assert refused.value.code == "foreign_url"


def test_paths_and_urls_on_the_project_are_kept():
    session = ProjectSession("http://127.0.0.1:8000/", HostKey.generate())

    assert session._url("/api/v1/x") == "http://127.0.0.1:8000/api/v1/x"
    assert session._url("http://127.0.0.1:8000/api/v1/x") == "http://127.0.0.1:8000/api/v1/x"


def test_only_busy_or_failing_answers_are_worth_retrying():
    assert ProtocolError(503, "unavailable", "").is_temporary
    assert ProtocolError(429, "throttled", "", retry_after=30).is_temporary
    assert not ProtocolError(409, "already_reported", "").is_temporary
    assert not ProtocolError(0, "foreign_url", "").is_temporary


def test_only_a_refusal_about_a_report_may_set_a_report_aside():
    assert report_at_fault(ProtocolError(403, "not_your_replica", "replica 5 was not sent to this host"))
    assert report_at_fault(ProtocolError(400, "invalid_input", {"reports": [{"cpu_time": ["too big"]}]}))
    assert not report_at_fault(ProtocolError(400, "invalid_input", {"host_info": {"n_cpus": ["too many"]}}))
    assert not report_at_fault(ProtocolError(401, "stale_timestamp", "check the clock"))
    assert not report_at_fault(ProtocolError(409, "retry", "work was claimed concurrently; ask again"))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x"])
def test_presigned_transfers_may_reach_the_storage_over_http_only(url):
    session = ProjectSession("http://127.0.0.1:8000", HostKey.generate(), host_id=1)
    bucket = "http://127.0.0.1:8333/tessera/outputs/1/2?X-Amz-Signature=abc"
    with session:
        assert session._url(bucket, presigned=True) == bucket  # an S3 bucket elsewhere is fine unsigned
        with pytest.raises(ProtocolError) as refused:
            session._url(url, presigned=True)
        assert refused.value.code == "foreign_url"
        with pytest.raises(ProtocolError):
            session.request("GET", bucket)  # but never a signed request
