"""Rows are held without their keys: while a validation pass holds a host's figures the host's
own signed requests (each burns a nonce that refers to the host) go on, and while a claim
holds a volunteer a pass's rows that refer to the volunteer are written, instead of queueing."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from coordinator.accounts.services import _burn_nonce
from coordinator.scheduler.claim_writes import lock_volunteer
from coordinator.standing.models import CreditDay
from coordinator.standing.reputation import Event
from coordinator.standing.services import Grant, HostEvent, add_credit, record_events
from coordinator.testing import make_app, make_host

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def while_held(hold, write) -> None:
    """Run ``hold`` in a transaction on another connection and, while it is open, ``write``
    here with a short lock timeout: a key lock on what ``write`` refers to stops it."""
    held, release, failed = threading.Event(), threading.Event(), []

    def holder() -> None:
        try:
            with transaction.atomic():
                hold()
                held.set()
                release.wait(30)
        except Exception as error:
            failed.append(error)
            held.set()
        finally:
            connections.close_all()

    worker = threading.Thread(target=holder)
    worker.start()
    try:
        assert held.wait(30) and not failed, failed
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            write()
    finally:
        release.set()
        worker.join(30)
    assert not failed, failed


def test_a_request_burns_its_nonce_while_a_validation_pass_holds_its_host():
    host, _ = make_host()
    app = make_app()

    def validation_pass() -> None:
        now = timezone.now()
        add_credit([Grant(host.volunteer_id, host.pk, 1, 1, Decimal("2.5"))], now=now)
        record_events([HostEvent(host.pk, app.pk, None, Event.VALID_INDEPENDENT)], now=now)

    while_held(validation_pass, lambda: _burn_nonce(host, "nonce-during-a-pass", timezone.now()))
    host.refresh_from_db()
    assert host.total_credit == Decimal("2.5") and host.valid_count == 1


def test_a_pass_writes_rows_that_refer_to_a_volunteer_a_claim_holds():
    host, _ = make_host()

    while_held(
        lambda: lock_volunteer(host.volunteer_id),
        lambda: CreditDay.objects.create(volunteer_id=host.volunteer_id, day=timezone.now().date(), credit=1),
    )
    assert CreditDay.objects.filter(volunteer_id=host.volunteer_id).count() == 1
