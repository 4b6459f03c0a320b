"""Dead letters, the scheduler process and a worker, on the real RabbitMQ and Redis.

Each test works in a place of its own and removes it afterwards: RabbitMQ queues named
with a random suffix (and, for the processes that use the `default` queue, a virtual host
made for this module), a Redis namespace per test in database 15.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import dramatiq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules, import_string
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Retries, TimeLimit

from coordinator.core.brokers import dead_letters, purge_dead, queue_depths, requeue_dead
from coordinator.core.periodic import SWEEPS
from coordinator.testing import make_app
from coordinator.work.models import Replica, WorkUnit

ROOT = Path(__file__).resolve().parent.parent
RABBIT = "amqp://guest:guest@127.0.0.1:5672"
REDIS = "redis://127.0.0.1:6379/15"
SWEEP_ACTORS = {path.rsplit(".", 1)[1] for path in SWEEPS}


def service_missing(what: str, error: object) -> None:
    """Skip loudly on a laptop without the service; in CI a missing service is a failure."""
    message = f"needs {what}: {error!r}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


def middleware() -> list[dramatiq.Middleware]:
    return [AgeLimit(), TimeLimit(), Callbacks(), Retries()]


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def rabbitmq(suffix) -> Iterator[RabbitmqBroker]:
    broker = RabbitmqBroker(url=RABBIT, confirm_delivery=True, middleware=middleware())
    try:
        broker.connection  # noqa: B018 (connects)
    except Exception as error:
        service_missing(f"RabbitMQ at {RABBIT}", error)
    yield broker
    channel = broker.connection.channel()
    for queue in broker.get_declared_queues():
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            channel.queue_delete(name)
    broker.close()


@pytest.fixture
def redis_broker(suffix) -> Iterator[RedisBroker]:
    broker = RedisBroker(url=REDIS, namespace=f"tessera-test-{suffix}", middleware=middleware())
    try:
        broker.client.ping()
    except Exception as error:
        service_missing(f"Redis at {REDIS}", error)
    yield broker
    keys = list(broker.client.scan_iter(match=f"{broker.namespace}:*"))
    if keys:
        broker.client.delete(*keys)
    broker.client.close()


@pytest.fixture(params=["rabbitmq", "redis"])
def broker(request) -> dramatiq.Broker:
    return request.getfixturevalue("rabbitmq" if request.param == "rabbitmq" else "redis_broker")


@contextmanager
def as_global_broker(broker: dramatiq.Broker) -> Iterator[None]:
    """Let the management commands see ``broker``, for this block only."""
    autodiscover_modules("tasks")  # the project's actors stay bound to the project's broker
    previous = dramatiq.get_broker()
    dramatiq.set_broker(broker)
    try:
        yield
    finally:
        dramatiq.set_broker(previous)


@contextmanager
def running_worker(broker: dramatiq.Broker) -> Iterator[None]:
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        yield
    finally:
        worker.stop(timeout=10_000)


def dead_letters_command(*args: str) -> str:
    out = StringIO()
    call_command("dead_letters", *args, stdout=out)
    return out.getvalue()


def test_failed_messages_are_dead_lettered_shown_requeued_and_purged(broker, suffix):
    queue = f"tessera-test-{suffix}"

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"fails_{suffix}", max_retries=0)
    def fails(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    @dramatiq.actor(
        broker=broker,
        queue_name=queue,
        actor_name=f"fails_twice_{suffix}",
        max_retries=1,
        min_backoff=10,
        max_backoff=20,
    )
    def fails_twice(n: int) -> None:
        raise ValueError(f"bad {n}")

    sent = {
        fails.send(1).message_id: fails.actor_name,
        fails_twice.send(2).message_id: fails_twice.actor_name,
    }
    with running_worker(broker):
        wait_for(lambda: queue_depths(broker=broker)[queue]["dead"] == 2, 20, "two dead letters")

    letters = {entry["message_id"]: entry for entry in dead_letters(queue, 10, broker=broker)}
    assert {mid: entry["actor"] for mid, entry in letters.items()} == sent
    never_retried, retried = (letters[mid] for mid in sent)
    assert never_retried["args"] == [1] and never_retried["retries"] == 0 and never_retried["error"] is None
    # The retried one carries the error of its first attempt, recorded by dramatiq.
    assert retried["args"] == [2] and retried["retries"] == 1 and retried["error"] == "ValueError: bad 2"
    for entry in letters.values():
        # RabbitMQ stamps the death to the second.
        assert entry["dead_at"] >= entry["enqueued_at"].replace(microsecond=0)
    for _ in range(10):  # read back to back, each finds them where the last one left them
        assert len(dead_letters(queue, 1, broker=broker)) == 1
    assert queue_depths(broker=broker)[queue] == {"ready": 0, "delayed": 0, "dead": 2}  # reading kept them

    with as_global_broker(broker):
        shown = dead_letters_command("--queue", queue)
        assert f"Dead letters on {queue}, oldest first (2 of 2)" in shown and "ValueError: bad 2" in shown
        for message_id, actor in sent.items():
            assert message_id in shown and actor in shown
        assert "Requeued 2 dead letter(s)" in dead_letters_command("--queue", queue, "--requeue")
        assert queue_depths()[queue] == {"ready": 2, "delayed": 0, "dead": 0}
        assert "No dead letters" in dead_letters_command("--queue", queue)

    # Requeued, they run again (and fail again, with their retries counted afresh).
    with running_worker(broker):
        wait_for(
            lambda: queue_depths(broker=broker)[queue]["dead"] == 2, 20, "the requeued messages to die again"
        )
    assert {e["message_id"]: e["retries"] for e in dead_letters(queue, 10, broker=broker)} == dict(
        zip(sent, [0, 1], strict=True)
    )

    with as_global_broker(broker):
        assert "Purged 2 dead letter(s)" in dead_letters_command("--queue", queue, "--purge")
    assert queue_depths(broker=broker)[queue] == {"ready": 0, "delayed": 0, "dead": 0}
    assert dead_letters(queue, 10, broker=broker) == []
    assert requeue_dead(queue, broker=broker) == 0 and purge_dead(queue, broker=broker) == 0


def test_a_queue_never_used_counts_zero_and_has_no_dead_letters(broker, suffix):
    queue = f"tessera-test-{suffix}"
    broker.declare_queue(queue)
    assert queue_depths(broker=broker) == {queue: {"ready": 0, "delayed": 0, "dead": 0}}
    assert dead_letters(queue, 5, broker=broker) == []
    assert purge_dead(queue, broker=broker) == 0


def test_the_stub_broker_shows_its_dead_letters_too():
    broker = StubBroker(middleware=middleware())

    @dramatiq.actor(broker=broker, max_retries=0)
    def fails() -> None:
        raise RuntimeError("stub boom")

    fails.send()
    with running_worker(broker):
        broker.join("default", fail_fast=False)
    [entry] = dead_letters(broker=broker)
    assert entry["actor"] == "fails" and entry["error"] == "RuntimeError: stub boom"
    assert queue_depths(broker=broker)["default"]["dead"] == 1
    assert requeue_dead(broker=broker) == 1
    assert queue_depths(broker=broker)["default"] == {"ready": 1, "delayed": 0, "dead": 0}


# --- processes: the scheduler and a worker ------------------------------------------------


@pytest.fixture(scope="module")
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of this module's own, so the processes may use `default`."""
    name = f"tessera-test-{uuid.uuid4().hex[:10]}"
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        service_missing("rabbitmqctl (to make a test virtual host)", "not on PATH")
    for command in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        done = subprocess.run([ctl, *command], capture_output=True, text=True, timeout=60)
        if done.returncode:
            service_missing("rabbitmqctl (to make a test virtual host)", done.stderr.strip() or done.stdout)
    yield f"{RABBIT}/{name}"
    subprocess.run([ctl, "delete_vhost", name], capture_output=True, timeout=60)


def start_process(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "INFO", **env},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise


@pytest.fixture(params=["rabbitmq", "redis"])
def scheduler_broker(request, suffix) -> Iterator[tuple[dict[str, str], dramatiq.Broker]]:
    """The environment that points a process at a broker of its own, and that broker."""
    if request.param == "rabbitmq":
        url = request.getfixturevalue("rabbitmq_vhost")
        broker = RabbitmqBroker(url=url)
        broker.declare_queue("default")
        yield {"BROKER_URL": url}, broker
        broker.flush_all()
        broker.close()
    else:
        broker = request.getfixturevalue("redis_broker")
        broker.declare_queue("default")
        yield {"BROKER_URL": REDIS, "BROKER_NAMESPACE": broker.namespace}, broker


def ready_actors(broker: dramatiq.Broker, count: int) -> list[str]:
    """The actors of up to ``count`` messages waiting on `default`, which stay there."""
    if isinstance(broker, RedisBroker):
        bodies = broker.client.hvals(f"{broker.namespace}:default.msgs")
    else:
        channel = broker.connection.channel()
        bodies = []
        for _ in range(count):
            method, _properties, body = channel.basic_get("default", auto_ack=False)
            if method is None:
                break
            bodies.append(body)
        channel.close()
    return [dramatiq.Message.decode(body).actor_name for body in bodies[:count]]


def test_one_scheduler_enqueues_the_sweeps_a_second_stands_by_and_takes_over(scheduler_broker, tmp_path):
    env, broker = scheduler_broker
    ready = lambda: queue_depths(broker=broker)["default"]["ready"]  # noqa: E731
    first = start_process(["run_scheduler"], tmp_path / "first.log", SWEEP_INTERVAL_SECONDS="0.3", **env)
    second = None
    try:
        wait_for(lambda: ready() >= 2 * len(SWEEPS), 20, "two rounds of sweeps")
        assert set(ready_actors(broker, 4 * len(SWEEPS))) == SWEEP_ACTORS
        second = start_process(
            ["run_scheduler"], tmp_path / "second.log", SWEEP_INTERVAL_SECONDS="0.3", **env
        )
        wait_for(lambda: "standing by" in (tmp_path / "second.log").read_text(), 20, "the second to stand by")

        assert stop_process(first) == 0
        stopped_at = ready()
        wait_for(lambda: ready() >= stopped_at + 2 * len(SWEEPS), 20, "the second scheduler to take over")
        assert stop_process(second) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                stop_process(process)
    first_log = (tmp_path / "first.log").read_text()
    assert f"scheduler started: {len(SWEEPS)} sweeps every 0.3 s" in first_log
    assert "scheduler stopped" in first_log
    assert "Traceback" not in first_log + (tmp_path / "second.log").read_text()


def test_run_scheduler_refuses_the_in_memory_broker():
    with pytest.raises(CommandError, match="memory://"):
        call_command("run_scheduler")


@pytest.mark.django_db(transaction=True)
def test_a_rundramatiq_worker_runs_a_sweep_hinted_on_rabbitmq(rabbitmq_vhost, tmp_path):
    app = make_app()
    unit = WorkUnit.objects.create(
        app=app,
        name="due",
        input_inline=b"x",
        input_sha256="0" * 64,
        input_size=1,
        min_quorum=2,
        target_nresults=3,
        transition_time=timezone.now(),
    )
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        database_url = f"sqlite:///{params['NAME']}"
    else:
        database_url = (
            f"postgres://{params['USER'] or 'postgres'}@{params['HOST'] or '127.0.0.1'}:"
            f"{params['PORT'] or 5432}/{params['NAME']}"
        )
    broker = RabbitmqBroker(url=rabbitmq_vhost)
    worker = start_process(
        ["rundramatiq", "--processes", "1", "--threads", "1"],
        tmp_path / "worker.log",
        BROKER_URL=rabbitmq_vhost,
        DATABASE_URL=database_url,
    )
    try:
        # What hint(transition_sweep) sends, on the module's own virtual host.
        sweep = import_string("coordinator.work.tasks.transition_sweep")
        broker.enqueue(sweep.message())
        wait_for(
            lambda: Replica.objects.filter(workunit=unit).count() == 3, 45, "the worker to run the sweep"
        )
        assert queue_depths(broker=broker)["default"] == {"ready": 0, "delayed": 0, "dead": 0}
    finally:
        stop_process(worker)
        broker.flush_all()
        broker.close()
        connection.close()
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]
