"""The periodic sweeps, and the embedded runtime that runs them inside the web process.

Every sweep finds its work from the database alone (rule 1), so enqueuing one too often
or not at all only changes how soon work is seen.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from django.conf import settings
from django.utils.module_loading import import_string

from coordinator.core.hints import hint

logger = logging.getLogger(__name__)

SWEEPS = [
    "coordinator.work.tasks.transition_sweep",
    "coordinator.validation.tasks.validation_sweep",
    "coordinator.validation.tasks.correction_sweep",
    "coordinator.validation.tasks.seal_ledger",
    "coordinator.accounts.tasks.purge_nonces_sweep",
    "coordinator.science.tasks.split_sweep",
    "coordinator.science.tasks.assimilation_sweep",
    "coordinator.science.tasks.cleanup_sweep",
    "coordinator.shares.tasks.forget_use_sweep",
]


def enqueue_sweeps() -> None:
    for path in SWEEPS:
        hint(import_string(path))


class EmbeddedRuntime:
    """A dramatiq worker on the in-memory broker plus a timer that enqueues the sweeps."""

    def __init__(self, interval: float, worker_threads: int = 2) -> None:
        self.interval = interval
        self.worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=worker_threads)
        self.stopping = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="tessera-sweeps", daemon=True)

    def _tick(self) -> None:
        while not self.stopping.wait(self.interval):
            enqueue_sweeps()

    def start(self) -> EmbeddedRuntime:
        self.worker.start()
        enqueue_sweeps()
        self.ticker.start()
        logger.info("embedded worker started; sweeps every %.1f s", self.interval)
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.ticker.is_alive():
            self.ticker.join(timeout=self.interval + 5)  # no sweep is enqueued after this
        self.worker.stop()


def start_embedded_runtime() -> EmbeddedRuntime | None:
    """Start the embedded runtime when the broker is in memory; otherwise do nothing."""
    if not settings.EMBEDDED_WORKER:
        return None
    return EmbeddedRuntime(settings.SWEEP_INTERVAL_SECONDS).start()
