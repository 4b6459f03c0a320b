"""A production-shaped Tessera on one machine, for the cluster test and the throughput benchmark.

PostgreSQL (a fresh database), RabbitMQ (a fresh virtual host), SeaweedFS as S3, two
coordinator processes (gunicorn, each on its own address), two dramatiq worker processes
and the one scheduler: every process is started here and stopped here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests

from tests.coordinator_process import PYTHON, REPO, CoordinatorProcess, free_port
from tests.seaweed import Seaweed

POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"
REDIS = "redis://127.0.0.1:6379"


def services_available() -> str | None:
    """Why the cluster cannot run here, or None when PostgreSQL, RabbitMQ and Redis answer."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed"
    import psycopg
    import redis

    try:
        psycopg.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=3).close()
    except psycopg.Error as error:
        return f"PostgreSQL is not reachable: {error}"
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis is not reachable: {error}"
    return None


def require_services(what: str) -> None:
    """In a test: skip, saying why, when a service is missing; under CI, fail instead."""
    import pytest

    missing = services_available()
    if missing:
        message = f"{what} needs its services: {missing}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def restart_postgres(timeout: float = 60.0) -> None:
    """Restart the machine's PostgreSQL server (every connection drops) and wait until it answers."""
    import psycopg

    (version,) = sorted(os.listdir("/etc/postgresql"))[-1:]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=3).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr[-500:]}")
    return done.stdout


class Service:
    """One long-running process in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, url: str = "") -> None:
        self.name, self.argv, self.env, self.log, self.url = name, argv, env, log, url
        self.process: subprocess.Popen | None = None

    def start(self) -> Service:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, how: int = signal.SIGKILL) -> None:
        """Signal the whole group (gunicorn's and dramatiq's children too) and reap it."""
        if not self.running():
            return
        assert self.process is not None
        try:
            os.killpg(self.process.pid, how)
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


class Supervisor:
    """Starts again any service that exits, as systemd's ``Restart=always`` or Kubernetes would
    (the scheduler exits on purpose when it loses its lock, for one)."""

    def __init__(self, services: list[Service]) -> None:
        self.services = services
        self.stopping = threading.Event()
        self.restarts: list[str] = []
        self.thread = threading.Thread(target=self._watch, name="cluster-supervisor", daemon=True)

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            for service in self.services:
                if service.process is not None and not service.running() and not self.stopping.is_set():
                    self.restarts.append(service.name)
                    service.start()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(5)


class Cluster:
    """Everything a production deployment runs, on 127.0.0.1."""

    def __init__(self, root: Path, *, web_workers: int = 2, worker_threads: int = 2, **settings: str) -> None:
        self.root = Path(root)
        self.settings = settings
        self.root.mkdir(parents=True, exist_ok=True)
        self.vhost = f"tessera_cluster_{uuid.uuid4().hex[:10]}"
        self.seaweed = Seaweed(self.root / "seaweed")
        self.web_workers, self.worker_threads = web_workers, worker_threads
        self.coordinator: CoordinatorProcess | None = None
        self.webs: list[Service] = []
        self.workers: list[Service] = []
        self.scheduler: Service | None = None
        self.supervisor: Supervisor | None = None

    # -- life ------------------------------------------------------------------------
    def start(self) -> Cluster:
        rabbitmqctl("add_vhost", self.vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        self.seaweed.start()
        self.coordinator = CoordinatorProcess(
            self.root / "coordinator",
            postgres_server=POSTGRES_SERVER,
            BROKER_URL=f"{RABBITMQ}/{self.vhost}",
            SECRET_KEY="tessera-cluster-test-" + uuid.uuid4().hex,
            SWEEP_INTERVAL_SECONDS="1",
            LOG_LEVEL="WARNING",
            # Rate limits shared by every web process, as in production.
            CACHE_URL=f"{REDIS}/0?key_prefix={self.vhost}",
            **self.seaweed.environment(),
            **self.settings,
        ).create()
        env = self.coordinator.env
        for index in range(2):
            port = free_port()
            self.webs.append(
                Service(
                    f"web{index}",
                    [
                        PYTHON,
                        "-m",
                        "gunicorn",
                        "coordinator.wsgi:application",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--workers",
                        str(self.web_workers),
                        "--timeout",
                        "60",
                        "--graceful-timeout",
                        "5",
                    ],
                    env,
                    self.root / f"web{index}.log",
                    url=f"http://127.0.0.1:{port}",
                )
            )
        for index in range(2):
            self.workers.append(
                Service(
                    f"worker{index}",
                    [
                        PYTHON,
                        "manage.py",
                        "rundramatiq",
                        "--processes",
                        "1",
                        "--threads",
                        str(self.worker_threads),
                    ],
                    env,
                    self.root / f"worker{index}.log",
                )
            )
        self.scheduler = Service(
            "scheduler", [PYTHON, "manage.py", "run_scheduler"], env, self.root / "scheduler.log"
        )
        services = [*self.webs, *self.workers, self.scheduler]
        for service in services:
            service.start()
        self.supervisor = Supervisor(services)
        self.supervisor.start()
        for web in self.webs:
            self.wait_ready(web)
        return self

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        for service in [*self.webs, *self.workers, *([self.scheduler] if self.scheduler else [])]:
            service.stop()
        if self.coordinator is not None:
            self.coordinator.destroy()
        self.seaweed.stop()
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # its name is unique anyway
            rabbitmqctl("delete_vhost", self.vhost)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def open_project(self, *, volunteers: int, prefix: str, scientist: str) -> tuple[list[str], str]:
        """Publish the Monte Carlo app and make volunteers and a scientist, as the benchmarks
        on this stack need: the volunteers' account tokens and the scientist's API token."""
        from tests.coordinator_process import MAKE_SCIENTIST, MAKE_VOLUNTEERS

        assert self.coordinator is not None
        self.coordinator.manage("publish_app", "montecarlo_pi")
        tokens = self.coordinator.django(MAKE_VOLUNTEERS, count=volunteers, prefix=prefix)
        return tokens, self.coordinator.django(MAKE_SCIENTIST, username=scientist)

    # -- faults ----------------------------------------------------------------------
    def wait_ready(self, web: Service, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not web.running():
                raise RuntimeError(f"{web.name} exited: {web.log.read_text()[-2000:]}")
            try:
                # A generous timeout: a web just restarted under load answers the probe late.
                if requests.get(f"{web.url}/readyz", timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{web.name} was not ready in {timeout} s: {web.log.read_text()[-2000:]}")

    def crash(self, service: Service, timeout: float = 30.0) -> None:
        """SIGKILL a process and its children; the supervisor starts it again."""
        old = service.process
        service.kill(signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while service.process is old or not service.running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} was not started again")
            time.sleep(0.1)
        if service in self.webs:
            self.wait_ready(service)

    def restart_rabbitmq(self) -> None:
        rabbitmqctl("stop_app")
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")

    def restart_seaweed(self) -> None:
        self.seaweed.restart()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.root.glob("*.log"))
        )
