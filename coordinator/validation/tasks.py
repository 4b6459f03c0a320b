"""The validator's actors: thin wrappers over the services, safe to run twice."""

import functools
import logging
from datetime import timedelta
from pathlib import Path

import dramatiq
from django.conf import settings
from django.utils import timezone

from coordinator.core import keys
from coordinator.validation import correction, credit_ratios, ledger, services

logger = logging.getLogger(__name__)


@dramatiq.actor(max_retries=0, time_limit=300_000)
def validation_sweep() -> None:
    """Every unit marked for validation, whatever message was lost; then each app's
    credit ratio from its latest vouched results, and its hosts' usual turnaround."""
    services.validate_due_units(now=timezone.now())
    credit_ratios.refresh_credit_ratios()
    credit_ratios.refresh_turnarounds()


@dramatiq.actor(max_retries=0, time_limit=300_000)
def correction_sweep() -> None:
    """Audit what caught hosts got accepted, and units no established host vouched for."""
    correction.correction_sweep(now=timezone.now())


@functools.cache
def _say_no_key(path: Path) -> None:
    # Once per process and path: the sweep runs every few seconds.
    logger.warning("not sealing the credit ledger: no project key file at %s (manage.py keys create)", path)


@dramatiq.actor(max_retries=0, time_limit=60_000)
def seal_ledger() -> None:
    """Sign the ledger's head with the project's key; a sealed head is left alone."""
    try:
        key = keys.load_project_key()
    except keys.ProjectKeyMissing:
        _say_no_key(keys.project_key_path())
        return
    ledger.seal(key=key, now=timezone.now(), min_interval=timedelta(seconds=settings.LEDGER_SEAL_SECONDS))
