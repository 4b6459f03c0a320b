"""The project's figures on ``/metrics``, read from the apps' selectors at each scrape.

Core serves ``/metrics`` and knows no domain model; this module, at the top of the layers,
tells it what to count (:func:`register`, called from ``WebConfig.ready()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from coordinator.accounts.selectors import active_host_count
from coordinator.core.metrics import register_figures
from coordinator.validation.selectors import credit_grants
from coordinator.work.selectors import unit_counts

ACTIVE_HOST_WINDOW = timedelta(hours=1)


def unit_figures() -> Iterator[GaugeMetricFamily]:
    units = GaugeMetricFamily("tessera_units", "work units by state", labels=["state"])
    for state, count in unit_counts().items():
        if count:  # as before the selector: a state with no unit has no series
            units.add_metric([state], count)
    yield units


def host_figures() -> Iterator[GaugeMetricFamily]:
    since = timezone.now() - ACTIVE_HOST_WINDOW
    yield GaugeMetricFamily(
        "tessera_hosts_active", "hosts that called in the last hour", value=active_host_count(since=since)
    )


def credit_figures() -> Iterator[CounterMetricFamily]:
    # One ledger entry per credited (validated) replica: rate() of this is the validation rate.
    yield CounterMetricFamily(
        "tessera_credit_grants", "replicas validated and credited, all workers", value=credit_grants()
    )


def register() -> None:
    """Hand core the figure sources, in the order ``/metrics`` has always shown them."""
    for source in (unit_figures, host_figures, credit_figures):
        register_figures(source)
