"""Worker threads build the file storage's client when they start, not in their first task.

With S3 the first file a worker thread stores pays for importing boto3 and building its
client: 0.6 s that a batch's assimilation, the last step before the scientist sees the
result, spent on it in ``bench.throughput`` (docs/benchmarks.md). Building it at boot moves
that cost out of the batch's path. Nothing goes over the network here.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.core.files.storage import storages

logger = logging.getLogger(__name__)


class WarmStorage(dramatiq.Middleware):
    def after_worker_thread_boot(self, broker: Any, thread: Any) -> None:
        try:
            storage = storages["default"]
            getattr(storage, "connection", None)  # S3: this thread's own client; local files have none
        except Exception:  # a misconfigured storage fails its first real use with its own error
            logger.warning("could not build the file storage's client at boot", exc_info=True)
