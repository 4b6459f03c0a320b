"""Run the one scheduler process that enqueues the periodic sweeps on a real broker."""

import logging
import signal
import threading
from typing import Any

import dramatiq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from coordinator.core.periodic import SWEEPS
from coordinator.core.scheduling import run_scheduler


class Command(BaseCommand):
    help = (
        "Enqueue the periodic sweeps every SWEEP_INTERVAL_SECONDS on RabbitMQ or Redis. Run one; "
        "a second one waits on a lock held in the broker and takes over when the first stops."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.EMBEDDED_WORKER:
            raise CommandError(
                "BROKER_URL is memory://: runserver's embedded runtime already enqueues the sweeps. "
                "run_scheduler is for a real broker (BROKER_URL=amqp://… or redis://…)."
            )
        # APScheduler logs every run at INFO: every few seconds, for each sweep.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        kept_lock = run_scheduler(
            broker=dramatiq.get_broker(),
            sweeps=SWEEPS,
            interval=settings.SWEEP_INTERVAL_SECONDS,
            stop=stop,
        )
        if not kept_lock:
            raise CommandError("lost the scheduler lock; exiting so that a supervisor starts a fresh one")
