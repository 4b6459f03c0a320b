"""A project's notices on the volunteer's computer: fetched hourly, checked and cleaned,
shown once as unread by `tessera status`, all of them by `tessera notices`."""

from __future__ import annotations

import io
import json
import threading
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tessera_client import notices
from tessera_client.cli import main
from tessera_client.protocol import HostKey, ProjectSession
from tessera_client.state import DataDir, Project, Runtime


class NewsServer:
    """``GET /api/v1/notices`` answering ``self.reply``, keeping the paths asked for."""

    def __init__(self) -> None:
        self.reply: object = {"notices": []}
        self.asked: list[str] = []
        news = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                news.asked.append(self.path)
                body = json.dumps(news.reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def news():
    server = NewsServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def notice(number: int, title: str = "t", body: str = "b") -> dict:
    return {"id": number, "title": title, "body": body, "created_at": "2026-12-06T10:00:00Z"}


@pytest.mark.parametrize(
    "item",
    [
        None,
        [1],
        {"id": True, "title": "t", "body": "b", "created_at": "c"},
        {"id": 0, "title": "t", "body": "b", "created_at": "c"},
        {"id": 2**63, "title": "t", "body": "b", "created_at": "c"},
        {"id": "1", "title": "t", "body": "b", "created_at": "c"},
        {"id": 1, "title": None, "body": "b", "created_at": "c"},
        {"id": 1, "title": "t", "created_at": "c"},
    ],
)
def test_anything_but_a_notice_is_left_out(item):
    assert notices.parse(item) is None


def test_a_notice_s_text_loses_terminal_escapes_and_is_cut():
    parsed = notices.parse(notice(3, "red\x1b[31m alert\u202e", "x" * 5000))
    assert parsed == {
        "id": 3,
        "title": "red [31m alert",
        "body": "x" * 2000,
        "created_at": "2026-12-06T10:00:00Z",
    }


def test_the_daemon_keeps_the_newest_and_asks_only_for_newer_ones_hourly(news):
    runtime = Runtime()
    session = ProjectSession(news.url, HostKey.generate())
    news.reply = {"notices": [notice(n) for n in range(30, 0, -1)] + ["junk"]}

    assert notices.refresh(session, runtime, now=1000.0) == 30
    assert [n["id"] for n in runtime.notices] == list(range(11, 31))
    assert news.asked[-1] == "/api/v1/notices?after=0"
    assert not notices.due(runtime, 1000.0 + 3599) and notices.due(runtime, 1000.0 + 3600)
    news.reply = {"notices": [notice(31), notice(5)]}  # an id at or below those kept is not news
    assert notices.refresh(session, runtime, now=5000.0) == 1
    assert news.asked[-1] == "/api/v1/notices?after=30" and runtime.notices[-1]["id"] == 31
    news.reply = ["not", "an", "object"]
    assert notices.refresh(session, runtime, now=9000.0) == 0 and len(runtime.notices) == 20


def tessera(data: DataDir, *args: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--data-dir", str(data.root), *args]) == 0
    return out.getvalue()


def test_status_shows_unread_notices_once_and_notices_shows_them_all(tmp_path):
    data = DataDir(tmp_path / "data").ensure()
    data.save_project(Project("p", "http://127.0.0.1:9", 1, "a2V5", "SHA256:x"))
    runtime = Runtime(notices=[notice(1, "Welcome", "hello"), notice(2, "[red]Down[/red] tonight", "sorry")])
    data.save_runtime("p", runtime)

    first = tessera(data, "status")
    assert "Unread notices" in first and "Welcome: hello" in first and "[red]Down[/red] tonight" in first
    assert "Unread notices" not in tessera(data, "status"), "shown once"
    everything = tessera(data, "notices")
    assert "Welcome: hello" in everything and "[red]Down[/red] tonight: sorry" in everything
    runtime.notices.append(notice(3, "New app"))
    data.save_runtime("p", runtime)
    again = tessera(data, "status")
    assert "New app" in again and "Welcome" not in again
