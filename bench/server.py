"""The coordinator behind gunicorn, as production serves it, for benchmarks over HTTP.

Started on a free port of 127.0.0.1 in a process group of its own, awaited until every
sync worker has booted (so that no import lands in a timed window), and always stopped on
the way out: TERM for a graceful exit, then KILL for the group if it lingers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.cpu import children
from bench.database import REPO

VENV_BIN = REPO / ".venv" / "bin"
WSGI_APP = "coordinator.wsgi"
BOOT_SECONDS = 60


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on, for this run's gunicorn."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, log_path: Path) -> Iterator[tuple[str, int]]:
    """Serve the coordinator with gunicorn's sync workers; yields (base URL, master pid)."""
    port = free_port()
    gunicorn_bin = (
        VENV_BIN / "gunicorn"
        if (VENV_BIN / "gunicorn").exists()
        else Path(sys.executable).parent / "gunicorn"
    )
    command = [
        str(gunicorn_bin),
        WSGI_APP,
        "-b",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "60",
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(base_url, proc, workers, log_path)
        yield base_url, proc.pid
    finally:
        stop(proc)


def wait_until_serving(base_url: str, proc: subprocess.Popen, workers: int, log_path: Path) -> None:
    """Return once gunicorn answers and every worker has booted; raise if it dies or hangs."""
    import requests

    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            requests.get(base_url + "/api/v1/scheduler", timeout=2)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        # Every worker has booted (imported Django) once the master has that many children.
        while len(children(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        return
    raise RuntimeError(f"gunicorn did not answer within 60 s:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """TERM the master (graceful), then KILL its own process group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
