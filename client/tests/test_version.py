"""The client says which version it is: `tessera --version`, and every request's User-Agent,
by which a project refuses clients older than its minimum."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tessera_client import __version__
from tessera_client.protocol import USER_AGENT, HostKey, ProjectSession

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_package_and_its_metadata_name_the_same_version():
    declared = re.search(r'^version = "([^"]+)"$', PYPROJECT.read_text(), re.M)
    assert declared is not None and declared.group(1) == __version__


def test_tessera_version_prints_it():
    done = subprocess.run(
        [sys.executable, "-m", "tessera_client", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == f"tessera {__version__}"


def test_every_request_names_the_client_and_its_version():
    assert USER_AGENT.startswith(f"tessera-client/{__version__} Python/")
    with ProjectSession("http://127.0.0.1:9", HostKey.generate()) as session:
        assert session.http.headers["User-Agent"] == USER_AGENT
