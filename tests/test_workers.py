"""Two real dramatiq worker processes on Redis and PostgreSQL run the transitioner at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from coordinator.testing import make_app
from coordinator.work.models import Replica, WorkUnit

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/15"

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_broker():
    broker = RedisBroker(url=REDIS_URL)
    try:
        broker.client.ping()
    except Exception as error:  # the service is part of the machine; say so loudly if absent
        if os.environ.get("CI"):
            raise
        pytest.skip(f"needs Redis at {REDIS_URL}: {error}")
    broker.flush_all()
    yield broker
    broker.flush_all()
    broker.close()


def start_worker(database_url: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": REDIS_URL,
        "BROKER_NAMESPACE": "dramatiq",  # the namespace of the fixture's RedisBroker
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "2"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def sweep_message() -> Message:
    return Message(
        queue_name="default",
        actor_name="transition_sweep",
        args=(),
        kwargs={},
        options={},
        message_id=str(uuid.uuid4()),
    )


def test_two_worker_processes_sweeping_at_once_make_each_replica_once(redis_broker, tmp_path):
    app = make_app()
    now = timezone.now()
    WorkUnit.objects.bulk_create(
        WorkUnit(
            app=app,
            name=f"w{i}",
            input_inline=b"x",
            input_sha256="0" * 64,
            input_size=1,
            min_quorum=2,
            target_nresults=3,
            transition_time=now,
        )
        for i in range(600)
    )
    params = connection.settings_dict
    database_url = (
        f"postgres://{params['USER'] or 'postgres'}@{params['HOST'] or '127.0.0.1'}:"
        f"{params['PORT'] or 5432}/{params['NAME']}"
    )
    workers = [start_worker(database_url, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        for _ in range(6):  # several sweeps at once: both processes take some
            redis_broker.enqueue(sweep_message())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and Replica.objects.count() < 1800:
            time.sleep(0.5)
        time.sleep(2)  # let any late duplicate show itself
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        connection.close()

    logs = "\n".join(p.read_text() for p in tmp_path.glob("worker*.log"))
    assert "Traceback" not in logs, logs[-3000:]
    counts = Counter(Replica.objects.values_list("workunit_id", flat=True))
    assert len(counts) == 600 and set(counts.values()) == {3}
    assert not WorkUnit.objects.filter(transition_time__isnull=False).exists()
