"""The client's side of docs/security.md: what a coordinator that was taken over can and cannot
make a volunteer's computer do. Real sockets, real processes, the client's own code; no Django.

Tests named for a residual risk assert what such a coordinator *can* do today, so that closing
the risk makes them fail and the document is updated with the code.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from rich.console import Console

from tessera_client import sandbox
from tessera_client.bundles import AppCache
from tessera_client.daemon import Daemon
from tessera_client.protocol import HostKey, ProjectSession, ProtocolError
from tessera_client.sandbox import AppProcess, Limits
from tessera_client.signing import b64encode, bundle_message, key_fingerprint
from tessera_client.state import DataDir, Project
from tessera_client.task_record import DONE

PROJECT_KEY = SigningKey.generate()  # the key the volunteer pinned at attach
INTRUDER_KEY = SigningKey.generate()  # a key the intruder made after taking the coordinator over
MAIN = b"import os\nopen(os.environ['TESSERA_OUTPUT'], 'w').write('ran')\n"


def bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tessera-app.json", json.dumps({"api": 1, "entrypoint": "main.py"}))
        archive.writestr("main.py", MAIN)
    return buffer.getvalue()


def app_version(data: bytes, key: SigningKey, url: str, version: int = 3) -> dict:
    sha = hashlib.sha256(data).hexdigest()
    message = bundle_message(app="demo", version=version, platform="any", sha256=sha)
    return {
        "id": version,
        "app": "demo",
        "version": version,
        "platform": "any",
        "url": url,
        "sha256": sha,
        "signature": b64encode(key.sign(message).signature),
        "size": len(data),
    }


class Server:
    """A coordinator taken over: it serves whatever bytes it likes at any path (GET only)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.files.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                # The client may stop reading, as it should past the declared size.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


@pytest.fixture
def daemon(tmp_path, server):
    """A client attached to ``server`` as "p", with PROJECT_KEY pinned."""
    data = DataDir(tmp_path / "data").ensure()
    public = bytes(PROJECT_KEY.verify_key)
    data.save_project(Project("p", server.url, 1, b64encode(public), key_fingerprint(public)))
    HostKey.generate().save(data.key_file("p"))
    daemon = Daemon(data, console=Console(file=io.StringIO(), width=200))
    daemon.refresh_projects()
    yield daemon
    daemon.shutdown()


def task(replica: int, version: dict) -> dict:
    return {
        "replica": replica,
        "workunit": f"wu{replica}",
        "deadline": "2030-01-01T00:00:00Z",
        "upload_url": f"/api/v1/replicas/{replica}/upload",
        "app_version": version,
    }


def test_the_daemon_runs_only_what_the_key_pinned_at_attach_signed(daemon, server):
    data = bundle()
    server.files["/bundles/intruder"] = data
    server.files["/bundles/project"] = data
    # The intruder also publishes its own key: the client never asks for it again after attaching.
    server.files["/api/v1/project"] = json.dumps(
        {"code_signing_key": b64encode(bytes(INTRUDER_KEY.verify_key))}
    ).encode()
    forged = daemon.journal.receive(
        "p", task(1, app_version(data, INTRUDER_KEY, "/bundles/intruder")), b"", 0.0
    )
    genuine = daemon.journal.receive(
        "p", task(2, app_version(data, PROJECT_KEY, "/bundles/project")), b"", 0.0
    )

    assert daemon.supply.app_for(forged, daemon.links["p"]) is None
    refused = daemon.journal.get("p", 1)
    assert refused.state == DONE and refused.outcome["status"] == "client_error"
    assert "not signed by the project's pinned key" in refused.outcome["message"]
    assert not any(daemon.apps.root.iterdir()), "nothing of the forged bundle was unpacked"
    # Control: the same bytes, signed by the pinned key, install and are what runs.
    entrypoint = daemon.supply.app_for(genuine, daemon.links["p"])
    assert entrypoint is not None and entrypoint.read_bytes() == MAIN


def test_an_input_that_does_not_match_its_hash_is_refused(server):
    server.files["/inputs/1"] = b"the input the intruder sent"
    session = ProjectSession(server.url, HostKey.generate(), host_id=1)
    right = hashlib.sha256(b"the input the project made").hexdigest()
    inline = {"input_inline": b64encode(b"the input the intruder sent"), "input_sha256": right}
    downloaded = {
        "input_inline": None,
        "input_url": f"{server.url}/inputs/1",
        "input_size": 27,
        "input_sha256": right,
    }

    with session:
        for sent in (inline, downloaded):
            with pytest.raises(ProtocolError) as refused:
                session.fetch_input(sent)
            assert refused.value.code == "bad_input_hash"
        # Control: the hash of what was sent passes.
        honest = dict(downloaded, input_sha256=hashlib.sha256(b"the input the intruder sent").hexdigest())
        assert session.fetch_input(honest) == b"the input the intruder sent"


def test_a_download_longer_than_its_declared_size_is_not_read_to_the_end(server):
    server.files["/inputs/big"] = b"x" * (4 * 1024 * 1024)
    session = ProjectSession(server.url, HostKey.generate(), host_id=1)
    claimed = {"input_inline": None, "input_url": f"{server.url}/inputs/big", "input_size": 100}

    with session, pytest.raises(ProtocolError) as refused:
        session.fetch_input({**claimed, "input_sha256": "0" * 64})

    assert refused.value.code == "too_large"


def test_any_version_the_pinned_key_ever_signed_is_accepted(tmp_path):
    """Residual risk: no minimum version. Whoever runs the coordinator may hand out an older app
    version the project once signed (a buggy one, say) as what a task runs."""
    data = bundle()
    cache = AppCache(tmp_path / "apps")
    pinned = bytes(PROJECT_KEY.verify_key)

    cache.install(app_version(data, PROJECT_KEY, "/b", version=7), data, pinned)
    old = cache.install(app_version(data, PROJECT_KEY, "/b", version=1), data, pinned)

    assert old.read_bytes() == MAIN


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file permissions")
def test_an_app_can_read_the_volunteers_files_outside_its_slot(tmp_path):
    """Residual risk: the sandbox limits resources and cuts the network, but the app runs as the
    volunteer's user and can read what they can read. Only signed code runs, so this trusts
    whoever holds the project's key."""
    private = tmp_path / "home" / "diary.txt"
    private.parent.mkdir()
    private.write_text("the volunteer's own words")
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "input").write_text(str(private))
    entrypoint = tmp_path / "app" / "main.py"
    entrypoint.parent.mkdir()
    entrypoint.write_text(
        "import os\n"
        "path = open(os.environ['TESSERA_INPUT']).read()\n"
        "open(os.environ['TESSERA_OUTPUT'], 'w').write(open(path).read())\n"
    )
    limits = Limits(
        cpu_seconds=20, memory_bytes=1 << 30, file_bytes=1 << 20, processes=32, wall_deadline=time.time() + 20
    )

    app = AppProcess.start(entrypoint=entrypoint, slot=slot, limits=limits)
    outcome = app.wait(15)

    assert outcome is not None and outcome.status == "success", outcome
    assert (slot / "output").read_text() == "the volunteer's own words"


# A launcher for a computer where the kernel refuses unprivileged user namespaces (Debian's
# kernel.unprivileged_userns_clone=0, Ubuntu's AppArmor restriction): the real one, but its
# unshare() fails as it would there.
NO_NAMESPACES_LAUNCHER = """
import sys
sys.path.insert(0, {folder!r})
import _launch
_launch._cut_network = lambda libc: "unshare() failed: Operation not permitted"
sys.exit(_launch.main(sys.argv))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the network is cut on Linux only")
def test_the_volunteer_is_told_when_a_task_could_not_be_cut_off_the_network(daemon, tmp_path, monkeypatch):
    launcher = tmp_path / "launch_without_namespaces.py"
    launcher.write_text(NO_NAMESPACES_LAUNCHER.format(folder=str(Path(sandbox.__file__).parent)))
    monkeypatch.setattr(sandbox, "LAUNCHER", launcher)
    (tmp_path / "app").mkdir()
    entrypoint = tmp_path / "app" / "main.py"
    entrypoint.write_text("import time\ntime.sleep(5)\n")
    record = daemon.journal.receive("p", task(3, {"app": "demo", "version": 1}), b"", 0.0)

    daemon.launch(record, entrypoint, now=1.0)

    process = daemon.running[("p", 3)].process
    assert process.network_isolated is False  # the situation is as described
    said = daemon.console.file.getvalue()
    assert "apps run with network access" in said and "Operation not permitted" in said, said
    # Said once per run, not at every task.
    again = daemon.journal.receive("p", task(4, {"app": "demo", "version": 1}), b"", 0.0)
    daemon.launch(again, entrypoint, now=2.0)
    assert daemon.console.file.getvalue().count("apps run with network access") == 1
