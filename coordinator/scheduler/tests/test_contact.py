"""A host's last contact, kept to the minute: the first request after a minute writes it, the
requests within that minute leave the row alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from coordinator.accounts.models import Host
from coordinator.scheduler.claim_writes import CONTACT_RESOLUTION
from coordinator.testing import SignedHost, make_host

pytestmark = pytest.mark.django_db


def last_contact(host: SignedHost):
    return Host.objects.get(pk=host.host.pk).last_contact


@pytest.mark.parametrize("tasks", [0, 1])
def test_contact_is_written_once_a_minute_whether_or_not_the_host_asks_for_work(tasks):
    host = SignedHost(*make_host())
    long_ago = timezone.now() - CONTACT_RESOLUTION - timedelta(seconds=1)
    Host.objects.filter(pk=host.host.pk).update(last_contact=long_ago)

    before = timezone.now()
    assert host.rpc(tasks=tasks).status_code == 200
    written = last_contact(host)
    assert written >= before

    assert host.rpc(tasks=tasks).status_code == 200
    assert last_contact(host) == written  # within the minute: not written again

    Host.objects.filter(pk=host.host.pk).update(last_contact=timezone.now() + timedelta(hours=1))
    assert host.rpc(tasks=tasks).status_code == 200
    assert last_contact(host) <= timezone.now()  # a contact time ahead of the clock is corrected
