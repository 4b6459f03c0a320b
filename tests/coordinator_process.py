"""A real coordinator in its own process, on its own database, for client tests and benchmarks.

It is the embedded default (runserver with the in-process worker) on a fresh SQLite file, or
on a fresh PostgreSQL database when ``database`` names a server. Setup and checks go through
``manage.py shell`` in the same environment, so the test process never shares a connection
or a settings object with the coordinator: it can be stopped and started like a real one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CoordinatorProcess:
    """``manage.py runserver`` on 127.0.0.1 with a scratch database, media folder and key."""

    def __init__(self, root: Path, *, postgres_server: str | None = None, **settings: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.postgres_server = postgres_server
        self.database_name = f"tessera_e2e_{uuid.uuid4().hex[:12]}"
        if postgres_server:
            database_url = f"{postgres_server.rstrip('/')}/{self.database_name}"
        else:
            database_url = f"sqlite:///{self.root / 'coordinator.sqlite3'}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))},
            "DATABASE_URL": database_url,
            "BROKER_URL": "memory://",
            "MEDIA_ROOT": str(self.root / "media"),
            "PROJECT_KEY_FILE": str(self.root / "project-signing.key"),
            "SWEEP_INTERVAL_SECONDS": "0.5",
            "RPC_DELAY_WITH_WORK": "1",
            "RPC_DELAY_NO_WORK": "1",
            "LOG_LEVEL": "WARNING",
            "PYTHONDONTWRITEBYTECODE": "1",
            **settings,
        }
        self.process: subprocess.Popen | None = None
        self.log = self.root / "coordinator.log"

    # -- life --------------------------------------------------------------------------
    def create(self) -> CoordinatorProcess:
        """Make the database, migrate it and make the project's code-signing key."""
        if self.postgres_server:
            import psycopg

            with psycopg.connect(f"{self.postgres_server.rstrip('/')}/postgres", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.database_name}"')
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("keys", "create")
        return self

    def start(self, timeout: float = 30.0) -> CoordinatorProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [PYTHON, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload", "--nothreading"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the coordinator exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/api/v1/project", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the coordinator did not answer in {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        if self.postgres_server:
            import psycopg

            with psycopg.connect(f"{self.postgres_server.rstrip('/')}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')

    def __enter__(self) -> CoordinatorProcess:
        return self.create().start()

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    # -- talking to it as an operator -------------------------------------------------
    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-3000:]}")
        return done.stdout

    def django(self, code: str, **values: Any) -> Any:
        """Run ``code`` in the coordinator's Django; it sets ``result``, which comes back as JSON."""
        script = (
            "import json\n"
            f"values = json.loads({json.dumps(json.dumps(values))})\n"
            "result = None\n" + code + "\nprint('RESULT:' + json.dumps(result, default=str))\n"
        )
        # Through a file: the values may be longer than a command line may be.
        with tempfile.NamedTemporaryFile("w", suffix=".py", encoding="utf-8") as file:
            file.write(script)
            file.flush()
            out = self.manage("shell", "-c", f"exec(open({file.name!r}, encoding='utf-8').read())")
        line = [x for x in out.splitlines() if x.startswith("RESULT:")][-1]
        return json.loads(line[len("RESULT:") :])


# Snippets the tests and the client benchmark run inside the coordinator.
PUBLISH_APP = """
from pathlib import Path
from coordinator.core import keys
from coordinator.work.bundles import build_bundle
from coordinator.work.models import App
from coordinator.work.services import register_app_version
app, _ = App.objects.get_or_create(name=values["name"])
bundle = build_bundle(Path(values["folder"]))
version = register_app_version(app=app, version=1, bundle=bundle, signing_key=keys.load_project_key())
result = version.pk
"""

MAKE_UNITS = """
from django.utils import timezone
from coordinator.work.models import App
from coordinator.work.services import create_work_unit
from coordinator.work.lifecycle import Policy
app = App.objects.get(name=values["app"])
policy = Policy(**values.get("policy", {}))
result = [create_work_unit(app=app, name=f"{app.name}-{i}", input_data=text.encode(), policy=policy,
                           now=timezone.now(), fpops_estimate=values.get("fpops", 1e9),
                           memory_bytes=values.get("memory_bytes", 0),
                           fuel_bound=values.get("fuel_bound")).pk
          for i, text in enumerate(values["inputs"])]
"""

MAKE_VOLUNTEER = """
from django.utils import timezone
from coordinator.accounts.services import create_volunteer
volunteer, token = create_volunteer(username=values["username"], password="long-enough-password-1842",
                                    now=timezone.now())
result = token
"""

REPLICAS = """
from coordinator.work.models import Replica
result = list(Replica.objects.order_by("pk").values(
    "pk", "workunit__name", "state", "outcome", "validate_state", "host_id", "cpu_time", "message",
    "output_sha256", "granted_credit", "exit_code"))
"""

UNITS = """
from coordinator.work.models import WorkUnit
result = list(WorkUnit.objects.order_by("pk").values("pk", "name", "state", "canonical_replica_id"))
"""

VOLUNTEER_CREDIT = """
from coordinator.accounts.models import Volunteer
result = {v.user.username: float(v.total_credit) for v in Volunteer.objects.select_related("user")}
"""

MAKE_VOLUNTEERS = """
from django.utils import timezone
from coordinator.accounts.services import create_volunteer
result = [create_volunteer(username=f"{values['prefix']}{i}", password="long-enough-password-1842",
                           now=timezone.now())[1]
          for i in range(values["count"])]
"""
MAKE_SCIENTIST = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from coordinator.science.access import SCIENTISTS_GROUP
from coordinator.science.tokens import issue_scientist_token
user = get_user_model().objects.create_user(values["username"], password="long-enough-password-1842",
                                            is_staff=True)
user.groups.add(Group.objects.get(name=SCIENTISTS_GROUP))
result = issue_scientist_token(user=user, now=timezone.now())
"""
