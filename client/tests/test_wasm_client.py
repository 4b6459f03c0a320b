"""The client's side of WebAssembly apps: their bundles, their tasks through the daemon (fetched,
verified, run in the sandbox, paused, called off, reported with their fuel), and an idle client
that never loads wasmtime."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from rich.console import Console
from wasm_apps import HELLO, LOOP, MiB, bundle, chain, manifest, wasm

from tessera_client._wasm_state import RESERVED_BYTES, SETTINGS_NAME, STATE_NAME, RunState, Settings
from tessera_client.app_manifest import installed_manifest
from tessera_client.bundles import AppCache, BundleRefused, compiled_dir
from tessera_client.daemon import Daemon
from tessera_client.protocol import HostKey, Report
from tessera_client.sandbox import Limits
from tessera_client.signing import b64encode, bundle_message, key_fingerprint
from tessera_client.state import DataDir, Project
from tessera_client.task_record import DONE, REPORTED
from tessera_client.wasm_tasks import COMPILE_BYTES_PER_BYTE, RUNNER, RUNTIME_BYTES, WasmTaskRefused, prepare

CLIENT_DIR = Path(__file__).resolve().parents[1]
PROJECT_KEY = SigningKey.generate()
PINNED = bytes(PROJECT_KEY.verify_key)


def signed(data: bytes, key: SigningKey = PROJECT_KEY, url: str = "/bundles/wasm") -> dict:
    sha = hashlib.sha256(data).hexdigest()
    message = bundle_message(app="lj", version=1, platform="any", sha256=sha)
    return {
        "id": 1,
        "app": "lj",
        "version": 1,
        "platform": "any",
        "url": url,
        "sha256": sha,
        "signature": b64encode(key.sign(message).signature),
        "size": len(data),
    }


def archive(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in entries.items():
            handle.writestr(name, data)
    return buffer.getvalue()


# -- bundles ------------------------------------------------------------------------------------
def test_a_wasm_bundle_installs_and_its_manifest_is_read_back(tmp_path):
    data = bundle(HELLO, memory_bytes=64 * MiB)
    cache = AppCache(tmp_path / "apps")

    entrypoint = cache.install(signed(data), data, PINNED)

    assert entrypoint.name == "app.wasm" and entrypoint.read_bytes() == wasm(HELLO)
    found, folder = installed_manifest(entrypoint)
    assert (found.runtime, found.deterministic, found.memory_bytes) == ("wasm", True, 64 * MiB)
    assert folder == entrypoint.parent and compiled_dir(folder).name == f"{folder.name}.compiled"


BAD_MANIFESTS = {
    "unknown runtime": (manifest(runtime="java"), "the runtime 'java' is not one this client runs"),
    "python file": (manifest(entrypoint="main.py"), "is not a WebAssembly module (.wasm)"),
    "other wasi": (manifest(wasi="preview2"), "wasi 'preview2' is not one this client provides"),
    "no wasi": (manifest(wasi=None), "wasi None"),
    "deterministic text": (manifest(deterministic="yes"), "deterministic 'yes' is not true or false"),
    "memory text": (manifest(memory_bytes="64"), "memory_bytes '64' is not a whole number"),
    "memory bool": (manifest(memory_bytes=True), "memory_bytes True is not a whole number"),
    "memory zero": (manifest(memory_bytes=0), "memory_bytes 0 is outside"),
    "memory past 4 GiB": (manifest(memory_bytes=8 * 1024**3), "memory_bytes 8589934592 is outside"),
    "unsafe entrypoint": (manifest(entrypoint="../app.wasm"), "is not a safe path"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_wasm_manifest_with_a_bad_value_is_refused_naming_it(tmp_path, case):
    bad, words = BAD_MANIFESTS[case]
    data = archive({"tessera-app.json": json.dumps(bad).encode(), "app.wasm": wasm(HELLO), "main.py": b""})
    cache = AppCache(tmp_path / "apps")

    with pytest.raises(BundleRefused) as refused:
        cache.install(signed(data), data, PINNED)

    assert refused.value.code == "bad_manifest" and words in str(refused.value), str(refused.value)
    assert not any(p.name.endswith("app.wasm") for p in cache.root.rglob("*"))


def test_an_entrypoint_that_is_no_webassembly_module_is_refused(tmp_path):
    data = archive({"tessera-app.json": json.dumps(manifest()).encode(), "app.wasm": b"#!/bin/sh\necho hi\n"})

    with pytest.raises(BundleRefused) as refused:
        AppCache(tmp_path / "apps").install(signed(data), data, PINNED)

    assert refused.value.code == "bad_manifest" and "not a WebAssembly core module" in str(refused.value)


def test_a_tampered_wasm_bundle_is_refused_by_its_signature(tmp_path):
    data = bundle(HELLO)
    version = signed(data)
    tampered = bundle(LOOP)  # another module in the same wrapping
    cache = AppCache(tmp_path / "apps")

    with pytest.raises(BundleRefused) as wrong_bytes:
        cache.install(dict(version, size=len(tampered)), tampered, PINNED)
    rehashed = dict(version, size=len(tampered), sha256=hashlib.sha256(tampered).hexdigest())
    with pytest.raises(BundleRefused) as wrong_signature:
        cache.install(rehashed, tampered, PINNED)
    with pytest.raises(BundleRefused) as other_key:
        cache.install(signed(tampered, SigningKey.generate()), tampered, PINNED)

    assert wrong_bytes.value.code == "hash_mismatch"
    assert wrong_signature.value.code == other_key.value.code == "bad_signature"
    assert not cache.root.exists() or list(cache.root.iterdir()) == []
    assert cache.install(version, data, PINNED).read_bytes() == wasm(HELLO)  # control


def test_pruning_an_app_removes_its_compiled_modules_too(tmp_path):
    data = bundle(HELLO)
    cache = AppCache(tmp_path / "apps")
    folder = cache.install(signed(data), data, PINNED).parent
    compiled_dir(folder).mkdir()
    (compiled_dir(folder) / "x.cwasm").write_bytes(b"compiled")

    assert cache.prune({folder.name}) == 0 and compiled_dir(folder).exists()
    assert cache.prune(set()) == 1
    assert list(cache.root.iterdir()) == []


# -- launching --------------------------------------------------------------------------------
def test_the_runner_gets_its_settings_and_room_for_the_module_in_its_address_space(tmp_path):
    data = bundle(HELLO, memory_bytes=1024 * MiB)
    version = signed(data)
    entrypoint = AppCache(tmp_path / "apps").install(version, data, PINNED)
    slot, input_path = tmp_path / "slot", tmp_path / "input"
    slot.mkdir()
    input_path.write_bytes(b"in")
    usual = Limits(
        cpu_seconds=300, memory_bytes=512 * MiB, file_bytes=64 * MiB, processes=16, wall_deadline=9.0
    )
    task = wasm_task(1, version, b"in")

    launch = prepare(task, entrypoint, slot, input_path, usual)

    assert launch.runner == RUNNER and RUNNER.is_file()
    room = 1024 * MiB + RUNTIME_BYTES + COMPILE_BYTES_PER_BYTE * entrypoint.stat().st_size
    # Only the memory grows, and the address space by the linear memory's reservation too.
    assert launch.limits == replace(usual, memory_bytes=room, reserved_bytes=RESERVED_BYTES)
    settings = Settings.from_json(json.loads((slot / SETTINGS_NAME).read_text()))
    assert (settings.module, settings.cache_dir) == (
        entrypoint.resolve(),
        compiled_dir(entrypoint.parent).resolve(),
    )
    assert (settings.fuel_bound, settings.memory_bytes) == (10**10, 1024 * MiB)
    assert settings.input_sha256 == hashlib.sha256(b"in").hexdigest()
    # Without the project's hash of the input, the input's own.
    input_path.write_bytes(b"other")
    prepare(dict(task, input_sha256=None), entrypoint, slot, input_path, usual)
    assert (
        json.loads((slot / SETTINGS_NAME).read_text())["input_sha256"] == hashlib.sha256(b"other").hexdigest()
    )


@pytest.mark.parametrize("bound", [None, 0, -5, True, "1000", 1.5e9, 2**63])
def test_a_wasm_task_without_a_usable_fuel_bound_is_refused(tmp_path, bound):
    data = bundle(HELLO)
    entrypoint = AppCache(tmp_path / "apps").install(signed(data), data, PINNED)
    task = wasm_task(1, signed(data), b"", fuel_bound=bound)
    usual = Limits(
        cpu_seconds=300, memory_bytes=512 * MiB, file_bytes=64 * MiB, processes=16, wall_deadline=9.0
    )

    with pytest.raises(WasmTaskRefused, match="fuel_bound"):
        prepare(task, entrypoint, tmp_path, tmp_path / "input", usual)


# -- the idle client ------------------------------------------------------------------------------
def test_the_daemon_and_the_cli_never_load_wasmtime():
    probe = (
        "import sys, tessera_client.cli, tessera_client.daemon, tessera_client.wasm_tasks\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'wasmtime' or '_wasm_run' in m))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=CLIENT_DIR, capture_output=True, text=True)
    control = subprocess.run(
        [sys.executable, "-c", probe.replace("tessera_client.cli", "tessera_client._wasm_run")],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
    )

    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stderr
    assert "'wasmtime'" in control.stdout, control.stderr  # the probe sees it when it is there


def test_a_report_carries_fuel_only_when_there_is_some():
    assert "fuel" not in Report(replica=1, status="success").to_json()
    assert Report(replica=1, status="success", fuel=0).to_json()["fuel"] == 0
    assert Report(replica=1, status="success", fuel=123).to_json()["fuel"] == 123


# -- through the daemon --------------------------------------------------------------------------
class Coordinator:
    """A project on a real socket: serves bundles (GET) and the scheduler (POST), whose replies
    hand out ``tasks`` once; every request's JSON is kept."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.tasks: list[dict] = []
        self.requests: list[dict] = []
        coordinator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.answer(coordinator.files.get(self.path), "application/zip")

            def do_POST(self) -> None:
                coordinator.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                tasks, coordinator.tasks = coordinator.tasks, []
                self.answer(json.dumps({"acks": [], "tasks": tasks, "next_rpc_seconds": 60}).encode())

            def answer(self, body: bytes | None, kind: str = "application/json") -> None:
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def reports(self) -> dict[int, dict]:
        return {r["replica"]: r for request in self.requests for r in request.get("reports", [])}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def coordinator():
    running = Coordinator()
    yield running
    running.close()


@pytest.fixture
def daemon(tmp_path, coordinator):
    data = DataDir(tmp_path / "data").ensure()
    data.save_project(Project("p", coordinator.url, 1, b64encode(PINNED), key_fingerprint(PINNED)))
    HostKey.generate().save(data.key_file("p"))
    daemon = Daemon(data, console=Console(file=io.StringIO(), width=200), exit_when_idle=True)
    daemon.refresh_projects()
    yield daemon
    daemon.shutdown()


def wasm_task(replica: int, version: dict, input: bytes, **change: object) -> dict:
    task = {
        "replica": replica,
        "workunit": f"wu{replica}",
        "deadline": "2030-01-01T00:00:00Z",
        "upload_url": f"/api/v1/replicas/{replica}/upload",
        "app_version": version,
        "input_inline": base64.b64encode(input).decode(),
        "input_sha256": hashlib.sha256(input).hexdigest(),
        "input_size": len(input),
        "fpops_estimate": 1e9,
        "memory_bytes": 16 * MiB,
        "max_output_bytes": 4096,
        "fuel_bound": 10**10,
    }
    task.update(change)
    return task


def test_a_wasm_task_runs_through_the_daemon_and_is_reported_with_its_fuel(daemon, coordinator, tmp_path):
    data = bundle(chain(3, 1000))
    coordinator.files["/bundles/wasm"] = data
    version = signed(data)
    coordinator.tasks = [
        wasm_task(1, version, b"unit one"),
        wasm_task(2, version, b"unit two", fuel_bound=None),
    ]

    assert daemon.run() == 0, daemon.console.file.getvalue()

    reports = coordinator.reports()
    done = reports[1]
    assert done["status"] == "success", done
    output = base64.b64decode(done["output_inline"])
    assert struct.unpack("<q", output[:8]) == (3,)
    # The fuel the runner recorded, as the journal kept it.
    assert isinstance(done["fuel"], int) and done["fuel"] > 0
    assert daemon.journal.get("p", 1).outcome["fuel"] == done["fuel"]
    refused = reports[2]
    assert refused["status"] == "client_error" and "fuel" not in refused
    assert "fuel_bound is None" in refused["message"]
    assert {r.state for r in daemon.journal.records()} == {REPORTED}
    # A second replica of the same unit gives the same bytes and the same fuel.
    again = Daemon(DataDir(tmp_path / "other").ensure(), console=Console(file=io.StringIO()))
    slot = tmp_path / "other-slot"
    slot.mkdir()
    (slot / "input").write_bytes(b"unit one")
    entrypoint = again.apps.install(version, data, PINNED)
    record = again.journal.receive("p", wasm_task(1, version, b"unit one"), b"unit one", now=0.0)
    again.launch(record, entrypoint, now=1.0)
    assert again.running[("p", 1)].process.wait(30) is not None
    again.reap(time.time())
    assert again.journal.get("p", 1).state == DONE
    assert again.journal.get("p", 1).outcome["fuel"] == done["fuel"]
    assert again.journal.output_path(record).read_bytes() == output


def start_wasm(daemon: Daemon, wat: str, replica: int = 1, **change: object):
    """Install the app and start its task as the daemon does once the bundle is verified."""
    data = bundle(wat)
    version = signed(data)
    entrypoint = daemon.apps.install(version, data, PINNED)
    record = daemon.journal.receive("p", wasm_task(replica, version, b"in", **change), b"in", now=0.0)
    daemon.launch(record, entrypoint, now=time.time())
    return daemon.running[("p", replica)]


def wait_for(condition, timeout: float = 10.0) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_wasm_task_is_suspended_resumed_and_called_off_like_any_app(daemon):
    running = start_wasm(daemon, LOOP, fuel_bound=10**15)
    process = running.process
    assert wait_for(lambda: process.cpu_time() >= 0.2), "the module never got the CPU"

    daemon.apps_running.hold(False)  # the throttle's pause, or the volunteer's
    assert process.suspended
    time.sleep(0.1)
    before = process.cpu_time()
    time.sleep(0.4)
    assert process.cpu_time() - before < 0.05
    daemon.apps_running.hold(True)
    assert wait_for(lambda: process.cpu_time() >= before + 0.2), "it did not run again"

    daemon.abort_task(running.record)

    assert daemon.running == {} and daemon.journal.get("p", 1) is None
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def test_a_wasm_task_stopped_with_the_client_resumes_from_its_recorded_checkpoint(daemon):
    running = start_wasm(daemon, chain(40, 30_000_000), fuel_bound=10**12)
    slot = running.process.slot
    assert wait_for(lambda: (slot / STATE_NAME).exists(), 30)
    daemon.shutdown()  # Ctrl-C: the app stops, its slot stays
    recorded = RunState.decode((slot / STATE_NAME).read_bytes()).runs
    assert 0 < recorded < 40

    record = daemon.journal.get("p", 1)
    entrypoint = next(daemon.apps.root.glob("*/app.wasm"))
    daemon.launch(record, entrypoint, now=time.time())
    assert daemon.running[("p", 1)].process.wait(60) is not None
    daemon.reap(time.time())

    outcome = daemon.journal.get("p", 1).outcome
    assert outcome["status"] == "success", outcome
    assert RunState.decode((slot / STATE_NAME).read_bytes()).runs == 40
    assert "wu1: resumed (pid" in daemon.console.file.getvalue()
