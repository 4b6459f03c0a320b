"""``tessera dashboard``: the running client's page answers only its own page, at the secret
address, and does what its buttons say through the same files as the commands.

Each test runs a real ``tessera run`` in its own process against a coordinator on a real
socket, and talks HTTP to the dashboard it serves, as a browser (or an attacker's page) would.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_coordinator import FakeCoordinator

from tessera_client.journal import Journal
from tessera_client.protocol import HostKey
from tessera_client.state import DataDir, Project

PYTHON = sys.executable


class RunningClient:
    """``tessera run`` on its own data folder, with the dashboard it serves."""

    def __init__(self, root: Path, coordinator_url: str, prepare: Any = None) -> None:
        self.data = DataDir(root).ensure()
        self.data.save_project(Project("p", coordinator_url, 1, "a2V5", "SHA256:x", project_name="Fake"))
        HostKey.generate().save(self.data.key_file("p"))
        if prepare is not None:
            prepare(self.data)
        self.log = root.parent / "client.log"
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tessera_client", "--data-dir", str(root), "run", "--backoff-base", "0.5"],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.url = self._wait_for_address()
        self.port = int(self.url.split(":")[2].split("/")[0])
        self.origin = f"http://127.0.0.1:{self.port}"

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.data.dashboard_file.exists():
                return json.loads(self.data.dashboard_file.read_text())["url"]
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"no dashboard address after 30 s:\n{self.log.read_text()}")

    def get(self, path: str = "", **headers: str) -> requests.Response:
        return requests.get(self.url + path, headers=headers, timeout=30)

    def state(self) -> dict[str, Any]:
        reply = self.get("api/state")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def post(self, action: str, body: Any, **headers: str) -> requests.Response:
        sent = {"Origin": self.origin, "Content-Type": "application/json", **headers}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return requests.post(self.url + "api/" + action, data=data, headers=sent, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def client(tmp_path, coordinator):
    running = RunningClient(tmp_path / "data", coordinator.url)
    yield running
    running.stop()


def untouched(client: RunningClient) -> None:
    """Nothing the dashboard may change has changed."""
    assert not client.data.suspend_file.exists()
    assert not client.data.prefs_file.exists()
    assert [p.name for p in client.data.projects()] == ["p"]
    assert not client.data.project("p").suspended
    assert client.state()["suspended"]["all"] is False


# -- who may ask ---------------------------------------------------------------------------------


def test_the_dashboard_answers_only_at_its_secret_address(client):
    root = f"http://127.0.0.1:{client.port}/"
    secret = client.url.rstrip("/").rsplit("/", 1)[1]
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    for address in (root, root + "api/state", root + wrong + "/", root + wrong + "/api/state"):
        assert requests.get(address, timeout=30).status_code == 403, address
    page = client.get()
    assert page.status_code == 200 and "<title>Tessera dashboard</title>" in page.text
    moved = requests.get(client.url.rstrip("/"), allow_redirects=False, timeout=30)
    assert moved.status_code == 301 and moved.headers["Location"] == f"/{secret}/"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert client.get("api/nothing").status_code == 404
    refused = requests.post(
        root + wrong + "/api/suspend", json={}, headers={"Origin": client.origin}, timeout=30
    )
    assert refused.status_code == 403
    untouched(client)


def test_a_page_whose_name_points_at_127_0_0_1_is_refused(client):
    """DNS rebinding: a page at evil.example, resolved to 127.0.0.1, sends its own Host."""
    evil = f"evil.example:{client.port}"

    assert client.get("api/state", Host=evil).status_code == 403
    assert client.post("suspend", {}, Host=evil, Origin=f"http://{evil}").status_code == 403
    untouched(client)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:9"},  # another page on this computer
        {"Origin": "null"},  # a sandboxed frame or a file
        {"Origin": ""},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # 127.0.0.1 on another port is the same site
        {"Content-Type": "text/plain"},  # what a cross-site form may send without asking
        {"Content-Type": "application/x-www-form-urlencoded"},
    ],
)
def test_no_other_page_can_change_anything(client, headers):
    reply = client.post("suspend", {}, **headers)

    assert reply.status_code in (403, 415), reply.text
    assert "error" in reply.json()
    untouched(client)


def test_a_post_without_an_origin_is_refused(client):
    reply = requests.post(client.url + "api/suspend", json={}, timeout=30)  # no Origin header at all

    assert reply.status_code == 403
    untouched(client)


def test_bad_requests_are_refused_and_change_nothing(client):
    assert client.post("suspend", b"x" * (64 * 1024 + 1)).status_code == 413
    assert client.post("suspend", "{not json").status_code == 400
    assert client.post("suspend", [1, 2]).status_code == 400
    assert client.post("suspend", {"project": "nope"}).status_code == 400
    assert client.post("suspend", {"project": ["p"]}).status_code == 400
    assert client.post("nothing", {}).status_code == 404
    bad_prefs = client.post("prefs", {"set": {"work_buf_hours": 3, "cpu_percent": 150}})
    assert bad_prefs.status_code == 400 and "cpu_percent must be" in bad_prefs.json()["error"]
    assert client.post("prefs", {"set": {"no_such": 1}}).status_code == 400
    assert client.post("prefs", {"unset": ["no_such"]}).status_code == 400
    assert client.post("prefs", {"set": [1]}).status_code == 400
    for share in (-1, 0, True, "100", 1e9, None):
        assert client.post("share", {"project": "p", "share": share}).status_code == 400, share
    assert client.post("attach", {"url": "ftp://x", "token": "t"}).status_code == 400
    assert client.post("attach", {"url": "http://127.0.0.1:9"}).status_code == 400  # no token
    untouched(client)
    assert client.data.project("p").resource_share == 100.0


def test_connections_that_say_nothing_do_not_hold_up_the_dashboard(client):
    """Browsers open sockets ahead of need; each waits on its own thread, not on the client."""
    idle = [socket.create_connection(("127.0.0.1", client.port)) for _ in range(3)]
    try:
        started = time.monotonic()
        assert client.state()["projects"][0]["name"] == "p"
        assert time.monotonic() - started < 5
    finally:
        for connection in idle:
            connection.close()


# -- what its buttons do -------------------------------------------------------------------------


def test_suspend_and_resume_all_work_and_one_project(client):
    assert client.post("suspend", {}).json() == {"message": "All work is suspended."}
    assert client.data.suspend_file.exists()
    state = client.state()
    assert state["suspended"] == {"all": True, "reason": "suspended by the volunteer"}
    assert any("dashboard: All work is suspended." in text for _, text in state["events"])

    assert client.post("resume", {}).status_code == 200
    assert not client.data.suspend_file.exists()
    assert client.post("suspend", {"project": "p"}).json()["message"] == "p is suspended."
    assert client.data.project("p").suspended
    assert client.state()["projects"][0]["suspended"] is True
    client.post("resume", {"project": "p"})
    assert not client.data.project("p").suspended


def test_preferences_and_share_are_saved_as_the_commands_save_them(client):
    reply = client.post("prefs", {"set": {"cpu_percent": "50", "run_on_batteries": True}})

    assert reply.status_code == 200, reply.text
    assert json.loads(client.data.prefs_file.read_text()) == {"cpu_percent": 50, "run_on_batteries": True}
    shown = {pref["key"]: pref for pref in client.state()["prefs"]}
    assert shown["cpu_percent"]["value"] == 50 and shown["cpu_percent"]["source"] == "local"
    assert shown["end_hour"]["kind"] == "str" and shown["use_gpus"]["kind"] == "bool"
    client.post("prefs", {"unset": ["cpu_percent"]})
    assert json.loads(client.data.prefs_file.read_text()) == {"run_on_batteries": True}
    assert client.post("share", {"project": "p", "share": 250}).status_code == 200
    assert client.data.project("p").resource_share == 250.0


def test_notices_show_unread_and_are_marked_read(tmp_path, coordinator):
    coordinator.notices = [
        {"id": 3, "title": "<b>New app</b>", "body": "<script>x()</script>", "created_at": "2026-12-01T10:00"}
    ]
    client = RunningClient(tmp_path / "data", coordinator.url)
    try:
        found = wait_for(lambda: client.state()["notices"], "the notice")
        assert found[0]["title"] == "<b>New app</b>" and found[0]["unread"] is True  # text, shown as text
        assert client.state()["projects"][0]["unread"] == 1
        client.post("read-notices", {})
        assert client.state()["notices"][0]["unread"] is False
        assert client.state()["projects"][0]["unread"] == 0
    finally:
        client.stop()


def test_attach_and_detach_from_the_dashboard(client, coordinator):
    other = FakeCoordinator()
    try:
        reply = client.post("attach", {"url": other.url, "token": "tsr_other", "name": "other"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["fingerprint"].startswith("SHA256:")
        assert other.requests, "the new project heard from us"
        wait_for(lambda: {p["name"] for p in client.state()["projects"]} == {"p", "other"}, "the new project")
        again = client.post("attach", {"url": other.url, "token": "tsr_other"})
        assert again.status_code == 400 and "already attached" in again.json()["error"]

        assert client.post("detach", {"project": "other"}).status_code == 200
        assert [p["name"] for p in client.state()["projects"]] == ["p"]
        assert not client.data.key_file("other").exists()
    finally:
        other.close()


def test_detaching_a_project_with_unreported_tasks_asks_first(tmp_path, coordinator):
    def a_task_waits(data: DataDir) -> None:
        task = {"replica": 4, "deadline": "2030-01-01T00:00:00Z", "workunit": "wu", "upload_url": "/up"}
        Journal(data.tasks).receive("p", task, b"in", now=0.0)
        data.save_project(Project("p", coordinator.url, 1, "a2V5", "SHA256:x", suspended=True))  # it waits

    client = RunningClient(tmp_path / "data", coordinator.url, prepare=a_task_waits)
    try:
        assert client.state()["tasks"][0]["state"] == "project suspended"
        refused = client.post("detach", {"project": "p"})
        assert refused.status_code == 400 and "1 task(s) not yet reported" in refused.json()["error"]
        assert [p.name for p in client.data.projects()] == ["p"]
        assert client.post("detach", {"project": "p", "abandon": True}).status_code == 200
        assert client.data.projects() == [] and Journal(client.data.tasks).records() == []
    finally:
        client.stop()


# -- the address -----------------------------------------------------------------------------------


def tessera(client: RunningClient, *args: str) -> subprocess.CompletedProcess:
    command = [PYTHON, "-m", "tessera_client", "--data-dir", str(client.data.root), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_tessera_dashboard_gives_the_address_only_while_the_client_runs(client):
    shown = tessera(client, "dashboard", "--no-browser")

    assert shown.returncode == 0 and client.url in shown.stdout
    assert stat.S_IMODE(os.stat(client.data.dashboard_file).st_mode) == 0o600
    client.stop()
    assert not client.data.dashboard_file.exists()
    stopped = tessera(client, "dashboard", "--no-browser")
    assert stopped.returncode == 2 and "the client is not running here" in stopped.stdout


def test_a_stale_address_left_by_a_crash_is_not_opened(client):
    client.process.kill()  # no chance to remove its address
    client.process.wait(30)
    assert client.data.dashboard_file.exists()

    stale = tessera(client, "dashboard", "--no-browser")

    assert stale.returncode == 2 and "the client is not running here" in stale.stdout


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
