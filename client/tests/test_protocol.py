"""What the protocol module will and will not do with addresses and sizes from a reply."""

from __future__ import annotations

import http.server
import threading
from typing import ClassVar

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


class _RecordingServer(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 and keeps the request line: as a proxy it sees the absolute
    URL a client sends through it, as the server the plain path."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_server():
    _RecordingServer.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _RecordingServer.seen
    server.shutdown()
    server.server_close()


def test_the_environments_proxy_carries_requests_unless_no_proxy_names_the_server(
    recording_server, monkeypatch
):
    """The environment is read once per server, not per request, and still obeyed."""
    proxy, seen = recording_server
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy)
    project = "http://project.invalid:8000"
    with ProjectSession(project, HostKey.generate(), host_id=1) as session:
        session.request("GET", "/api/v1/x", sign=False)
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # read already: not looked at again
        session.request("GET", "/api/v1/y", sign=False)
    assert seen == [f"{project}/api/v1/x", f"{project}/api/v1/y"]  # both through the proxy
    monkeypatch.setenv("http_proxy", proxy)

    seen.clear()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with ProjectSession(proxy, HostKey.generate(), host_id=1) as session:
        session.request("GET", "/api/v1/z", sign=False)
    assert seen == ["/api/v1/z"]  # straight to the server: NO_PROXY names it
