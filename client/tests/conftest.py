"""Fixtures for the client's tests: a coordinator on a real socket (fake_coordinator.py) and a
daemon attached to it twice, as "p" and "q"."""

from __future__ import annotations

import io

import pytest
from fake_coordinator import FakeCoordinator
from rich.console import Console

from tessera_client.daemon import Daemon
from tessera_client.protocol import HostKey
from tessera_client.state import DataDir, Project


@pytest.fixture
def coordinator():
    fake = FakeCoordinator()
    yield fake
    fake.close()


@pytest.fixture
def daemon(tmp_path, coordinator):
    """A daemon attached to the fake coordinator as "p" (and to another project, "q")."""
    data = DataDir(tmp_path / "data").ensure()
    for name in ("p", "q"):
        data.save_project(Project(name, coordinator.url, 1, "a2V5", "SHA256:x"))
        HostKey.generate().save(data.key_file(name))
    daemon = Daemon(data, console=Console(file=io.StringIO(), width=200))
    daemon.refresh_projects()
    yield daemon
    daemon.shutdown()
