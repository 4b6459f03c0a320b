"""Liveness and readiness, for load balancers, Docker and Kubernetes probes.

``/healthz`` says the process answers (restart it if not). ``/readyz`` says it can do its
work: the database, the broker and the storage all answer (send it no traffic if not).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

import dramatiq
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from coordinator.core import objects


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker() -> None:
    """Open (or reuse) the broker's connection; the in-memory broker is always there."""
    broker = dramatiq.get_broker()
    if hasattr(broker, "client"):  # Redis
        broker.client.ping()
    elif hasattr(broker, "connection") and not broker.connection.is_open:  # RabbitMQ (opens on use)
        raise ConnectionError("the RabbitMQ connection is closed")


def check_storage() -> None:
    if objects.on_s3():
        client, bucket, _ = objects.s3_bucket()
        client.head_bucket(Bucket=bucket)
    else:  # local files: the folder is there (or can be made) and takes writes
        location = Path(cast(FileSystemStorage, default_storage).location)
        location.mkdir(parents=True, exist_ok=True)
        if not os.access(location, os.W_OK):
            raise PermissionError(f"{location} is not writable")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as error:  # any failure means "not ready", said plainly
            results[name] = f"{type(error).__name__}: {error}"[:300]
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", **results}, status=200 if ready else 503
    )
