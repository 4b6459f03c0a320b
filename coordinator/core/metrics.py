"""Prometheus metrics: django-prometheus's request metrics plus Tessera's own.

Counters a web process can keep itself (replicas dispatched, reports by status) live in
prometheus_client's registry; with several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR``
and django-prometheus merges them. Figures that belong to the whole project (units by
state, hosts active, credit grants, queue depths) are read from the database and the broker
at scrape time, so every process answers the same and no worker has to serve them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from coordinator.core.brokers import queue_depths

logger = logging.getLogger(__name__)

ACTIVE_HOST_WINDOW = timedelta(hours=1)

DISPATCHED = Counter("tessera_replicas_dispatched", "replicas handed to hosts by this process")
REPORTED = Counter("tessera_reports", "reports recorded by this process", ["status"])


class ProjectCollector(Collector):
    """Whole-project figures, a few cheap queries at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        from coordinator.accounts.models import Host
        from coordinator.validation.models import LedgerHead
        from coordinator.work.models import WorkUnit

        units = GaugeMetricFamily("tessera_units", "work units by state", labels=["state"])
        for state, count in WorkUnit.objects.values_list("state").annotate(n=Count("id")).order_by():
            units.add_metric([state], count)
        yield units
        since = timezone.now() - ACTIVE_HOST_WINDOW
        yield GaugeMetricFamily(
            "tessera_hosts_active",
            "hosts that called in the last hour",
            value=Host.objects.filter(last_contact__gte=since).count(),
        )
        head = LedgerHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
        # One ledger entry per credited (validated) replica: rate() of this is the validation rate.
        yield CounterMetricFamily(
            "tessera_credit_grants", "replicas validated and credited, all workers", value=head
        )
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
