"""Installing the client from the project, as a new volunteer does: the command on /client, run
in a fresh virtual environment, installs the wheel the project built (pip checks its SHA-256)
and the client attaches; a changed wheel is refused by pip; a client older than the project's
minimum is told how to upgrade and registers nothing."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from tessera_client import __version__

from coordinator.accounts.models import Host
from coordinator.core import client_wheel, keys
from coordinator.testing import make_volunteer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.sqlite_pass(
        "installing the client sees the coordinator through HTTP only, whatever its database, and"
        " its fresh virtual environments in both passes would take CI past its 30 minutes"
    ),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The wheel, built from client/ once for the module, as `manage.py build_client` does."""
    folder = tmp_path_factory.mktemp("client-wheel")
    client_wheel.build(folder)
    return folder


@pytest.fixture
def project(live_server, built, settings, tmp_path, project_key_file) -> str:
    settings.CLIENT_WHEEL_DIR = tmp_path / "served"
    shutil.copytree(built, settings.CLIENT_WHEEL_DIR)
    keys.create_project_key(keys.project_key_path())
    return live_server.url


def page_command(url: str, key: str) -> str:
    page = requests.get(f"{url}/client", timeout=30)
    assert page.status_code == 200
    found = re.search(rf'<code data-install="{key}">(.*?)</code>', page.text, re.S)
    assert found, f"no {key} command on /client"
    return html.unescape(found.group(1))


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=300)


def tessera(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESSERA_DATA_DIR": str(cwd / "data"), "COLUMNS": "200"}
    return subprocess.run(
        [str(cwd / "tessera" / "bin" / "tessera"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_the_command_on_the_project_page_installs_the_client_and_it_attaches(project, settings, tmp_path):
    release = client_wheel.current()
    assert release is not None and release.version == __version__
    command = page_command(project, "venv")
    assert command == (
        f'python3 -m venv tessera && tessera/bin/pip install "tessera-client @ {project}/client/'
        f'{release.wheel}#sha256={release.sha256}"'
    )
    for page in ("/", "/status"):  # the front and status pages show the same install, by pipx
        assert html.escape(release.requirement(project)) in requests.get(f"{project}{page}", timeout=30).text

    installed = shell(command, tmp_path)

    assert installed.returncode == 0, installed.stderr[-3000:]
    assert tessera(tmp_path, "--version").stdout.strip() == f"tessera {__version__}"
    volunteer, token = make_volunteer()
    attached = tessera(tmp_path, "attach", project, "--token", token)
    assert attached.returncode == 0, attached.stdout + attached.stderr
    assert Host.objects.filter(volunteer=volunteer).count() == 1
    assert f"tessera {__version__}" in tessera(tmp_path, "status").stdout
    installed_package = next((tmp_path / "tessera").glob("lib/python*/site-packages/tessera_client"))
    assert {p.name for p in (installed_package / "dashboard").iterdir()} >= {
        "index.html",
        "dashboard.js",
        "dashboard.css",
    }, "the wheel carries the dashboard's page"


def test_pip_refuses_a_wheel_changed_after_the_build(project, settings, tmp_path):
    command = page_command(project, "venv")
    wheel = next(Path(settings.CLIENT_WHEEL_DIR).glob("*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF  # what an attacker who changed the file on the server left
    wheel.write_bytes(bytes(data))

    installed = shell(command, tmp_path)

    assert installed.returncode != 0
    assert "DO NOT MATCH THE HASHES" in installed.stderr
    assert not (tmp_path / "tessera" / "bin" / "tessera").exists()


def test_a_client_older_than_the_minimum_is_told_how_to_upgrade_and_registers_nothing(
    project, settings, tmp_path
):
    assert shell(page_command(project, "venv"), tmp_path).returncode == 0
    settings.TESSERA = {**settings.TESSERA, "MIN_CLIENT_VERSION": "99.0"}
    volunteer, token = make_volunteer()

    attached = tessera(tmp_path, "attach", project, "--token", token)

    assert attached.returncode == 2
    said = " ".join(attached.stdout.split())
    assert f"needs tessera-client 99.0 or later (this one is {__version__})" in said
    assert f"{project}/client" in said and "426 client_too_old" in said
    assert not Host.objects.filter(volunteer=volunteer).exists()


def test_only_the_built_wheel_is_served(project, settings):
    release = client_wheel.current()
    assert release is not None
    served = requests.get(f"{project}/client/{release.wheel}", timeout=30)
    assert (
        served.status_code == 200
        and served.content == (Path(settings.CLIENT_WHEEL_DIR) / release.wheel).read_bytes()
    )
    (Path(settings.CLIENT_WHEEL_DIR) / "other.whl").write_bytes(b"not ours")
    for name in ("other.whl", "release.json", "..%2Fsettings.py", "tessera_client-0.0.1-py3-none-any.whl"):
        assert requests.get(f"{project}/client/{name}", timeout=30).status_code == 404, name
