"""The scheduler process: enqueue the periodic sweeps on RabbitMQ or Redis.

APScheduler fires one interval job per sweep; a job only sends a hint, so a late or missed
tick delays work and loses none (ARCHITECTURE rule 1). Exactly one scheduler should run:
two would only enqueue every sweep twice, harmless but wasteful. APScheduler 3 has no lock
of its own, so the process holds one on the broker it already talks to, and a second
scheduler waits as a standby until the first stops or dies.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import dramatiq
import pika
import pika.exceptions
import redis
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from django.utils.module_loading import import_string
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from coordinator.core.hints import hint

logger = logging.getLogger(__name__)

LOCK_NAME = "tessera.scheduler.lock"
# The lock is renewed this often, and a standby asks for it this often.
LOCK_KEEP_SECONDS = 5.0
# A Redis lock whose holder stopped renewing it (frozen or killed) expires after this.
REDIS_LOCK_TTL_SECONDS = 30


class LockLost(Exception):
    """The scheduler no longer holds its lock: it must stop, or two might run."""


class SchedulerLock(Protocol):
    def try_acquire(self) -> bool: ...
    def keep(self) -> None: ...
    def release(self) -> None: ...


class RedisLock:
    """A Redis key with a time-to-live, renewed while the scheduler runs."""

    def __init__(self, broker: RedisBroker) -> None:
        self.lock = broker.client.lock(
            f"{broker.namespace}:{LOCK_NAME}", timeout=REDIS_LOCK_TTL_SECONDS, thread_local=False
        )

    def try_acquire(self) -> bool:
        return bool(self.lock.acquire(blocking=False))

    def keep(self) -> None:
        try:
            self.lock.reacquire()
        except (redis.exceptions.LockError, redis.exceptions.ConnectionError) as error:
            raise LockLost(str(error)) from error

    def release(self) -> None:
        # Expired or unreachable: nothing left to give back.
        with contextlib.suppress(redis.exceptions.LockError, redis.exceptions.ConnectionError):
            self.lock.release()


class RabbitmqLock:
    """An exclusive queue: RabbitMQ lets one connection own it and drops it with that
    connection, so a killed scheduler frees the lock at once."""

    def __init__(self, broker: RabbitmqBroker) -> None:
        self.parameters = broker.parameters
        self.connection: pika.BlockingConnection | None = None

    def try_acquire(self) -> bool:
        connection = pika.BlockingConnection(self.parameters)
        try:
            connection.channel().queue_declare(LOCK_NAME, exclusive=True, auto_delete=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            connection.close()
            if error.reply_code == 405:  # RESOURCE_LOCKED: another connection owns it
                return False
            raise
        self.connection = connection
        return True

    def keep(self) -> None:
        # Also answers RabbitMQ's heartbeats on this otherwise idle connection.
        if self.connection is None or not self.connection.is_open:
            raise LockLost("the connection that owned the lock queue is closed")
        try:
            self.connection.process_data_events(time_limit=0)
        except pika.exceptions.AMQPError as error:
            raise LockLost(repr(error)) from error

    def release(self) -> None:
        if self.connection is not None and self.connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                self.connection.close()


def lock_for(broker: dramatiq.Broker) -> SchedulerLock:
    """The lock that fits the broker; the in-memory broker has no scheduler process."""
    if isinstance(broker, RedisBroker):
        return RedisLock(broker)
    if isinstance(broker, RabbitmqBroker):
        return RabbitmqLock(broker)
    raise TypeError(f"no scheduler lock for {type(broker).__name__}")


def build_scheduler(
    *, sweeps: list[str], interval: float, lock: SchedulerLock, on_lock_lost: Callable[[], None]
) -> BackgroundScheduler:
    """One interval job per sweep (the first at once), and one that keeps the lock.

    Sends and the lock have a thread each, so a slow broker cannot starve the lock.
    """
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(1), "lock": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )
    now = datetime.now(UTC)
    for path in sweeps:
        actor = import_string(path)
        scheduler.add_job(
            hint,
            IntervalTrigger(seconds=interval),
            args=[actor],
            id=path,
            name=f"enqueue {actor.actor_name}",
            next_run_time=now,
        )

    def keep_lock() -> None:
        try:
            lock.keep()
        except LockLost as error:
            logger.error("scheduler lock lost (%s); stopping so that no second scheduler runs", error)
            on_lock_lost()

    scheduler.add_job(
        keep_lock,
        IntervalTrigger(seconds=LOCK_KEEP_SECONDS),
        id="lock",
        name="keep the lock",
        executor="lock",
    )
    return scheduler


def run_scheduler(
    *, broker: dramatiq.Broker, sweeps: list[str], interval: float, stop: threading.Event
) -> bool:
    """Wait for the lock, then enqueue the sweeps until ``stop`` is set.

    Returns False when the lock was lost (the caller should exit with an error, and its
    supervisor start it again), True after a requested stop.
    """
    lock = lock_for(broker)
    waiting_said = False
    while not lock.try_acquire():
        if not waiting_said:
            logger.info("another scheduler holds the lock %r; standing by", LOCK_NAME)
            waiting_said = True
        if stop.wait(LOCK_KEEP_SECONDS):
            return True
    lost = threading.Event()

    def lock_lost() -> None:
        lost.set()
        stop.set()

    scheduler = build_scheduler(sweeps=sweeps, interval=interval, lock=lock, on_lock_lost=lock_lost)
    scheduler.start()
    logger.info("scheduler started: %d sweeps every %.1f s", len(sweeps), interval)
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        lock.release()
        logger.info("scheduler stopped")
    return not lost.is_set()
