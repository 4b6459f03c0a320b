"""Prometheus metrics: django-prometheus's request metrics plus Tessera's own.

Counters a web process can keep itself (replicas dispatched, reports by status) live in
prometheus_client's registry; with several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR``
and django-prometheus merges them. Figures that belong to the whole project (units by
state, hosts active, credit grants, queue depths) are read from the database and the broker
at scrape time, so every process answers the same and no worker has to serve them.

Core knows no domain model: the apps hand it their figures with :func:`register_figures`
(``coordinator.web`` does it in ``ready()``, from the apps' selectors); core adds the broker's
queue depths itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from coordinator.core.brokers import queue_depths

logger = logging.getLogger(__name__)

DISPATCHED = Counter("tessera_replicas_dispatched", "replicas handed to hosts by this process")
REPORTED = Counter("tessera_reports", "reports recorded by this process", ["status"])

FigureSource = Callable[[], Iterable[Metric]]
"""A function that reads whole-project figures (a few cheap queries) and returns them as
metric families; called at every scrape."""

_SOURCES: list[FigureSource] = []


def register_figures(source: FigureSource) -> None:
    """Publish ``source``'s figures on ``/metrics``, in the order registered. Call it from an
    ``AppConfig.ready()``; registering the same function again changes nothing."""
    if source not in _SOURCES:
        _SOURCES.append(source)


class ProjectCollector(Collector):
    """Whole-project figures: the registered sources', then the broker's queue depths."""

    def collect(self) -> Iterator[Metric]:
        for source in _SOURCES:
            yield from source()
        yield from self.queues()

    @staticmethod
    def queues() -> Iterator[GaugeMetricFamily]:
        try:
            found = queue_depths()
        except Exception:  # the broker is down: the other figures still matter, and /readyz says so
            logger.warning("queue depths unavailable", exc_info=True)
            return
        depths = GaugeMetricFamily(
            "tessera_queue_messages", "broker messages by queue and kind", labels=["queue", "kind"]
        )
        for queue, kinds in found.items():
            for kind, count in kinds.items():
                depths.add_metric([queue, kind], count)
        yield depths


PROJECT = CollectorRegistry(auto_describe=False)
PROJECT.register(ProjectCollector())


def metrics(request: HttpRequest) -> HttpResponse:
    """django-prometheus's exposition (multiprocess-aware) followed by the project's figures."""
    own = ExportToDjangoView(request)
    return HttpResponse(own.content + generate_latest(PROJECT), content_type=CONTENT_TYPE_LATEST)
