"""Volunteer computers for end-to-end tests: the `tessera` command on its own data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.coordinator_process import MAKE_VOLUNTEER, CoordinatorProcess

PYTHON = sys.executable


class Tessera:
    """One volunteer computer: a data folder and the `tessera` command run against it."""

    def __init__(self, root: Path) -> None:
        self.data = root
        self.log = root.parent / f"{root.name}.log"
        self.process: subprocess.Popen | None = None
        self.command = [PYTHON, "-m", "tessera_client", "--data-dir", str(root)]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
        )

    def start(self, *args: str) -> subprocess.Popen:
        handle = self.log.open("a")
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "tessera_client",
                "--data-dir",
                str(self.data),
                "run",
                "--backoff-base",
                "0.5",
                *args,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        return self.process

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"tessera run did not finish in {timeout} s:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def records(self, prefix: str = "") -> list[dict]:
        """The journal's records, of the work units whose names start with ``prefix``."""
        found = [json.loads(p.read_text()) for p in sorted(self.data.glob("tasks/*/*/task.json"))]
        return [r for r in found if r["task"]["workunit"].startswith(prefix)]


def attach(coordinator: CoordinatorProcess, tmp_path: Path, username: str) -> Tessera:
    token = coordinator.django(MAKE_VOLUNTEER, username=username)
    client = Tessera(tmp_path / username)
    attached = client("attach", coordinator.url, "--token", token)
    assert attached.returncode == 0, attached.stdout + attached.stderr
    return client


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
