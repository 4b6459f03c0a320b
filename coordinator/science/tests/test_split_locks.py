"""A split holds its batch, not the batch's app: while a chunk is made, a validation pass
still writes the rows that refer to the app (a host's reputation for it)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from coordinator.core import keys
from coordinator.science.services import SplitCursor, split_next_chunk, submit_batch
from coordinator.standing.models import HostAppReputation
from coordinator.testing import make_host
from coordinator.work.lifecycle import Policy
from coordinator.work.models import WorkUnit
from coordinator.work.publishing import publish_app

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class PausedCursor(SplitCursor):
    """The app's splitter, paused inside the chunk's transaction until released."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def take(self, *args, **kwargs):
        self.inside.set()
        self.release.wait(30)
        return super().take(*args, **kwargs)


def test_a_pass_writes_a_hosts_reputation_for_the_app_while_its_batch_is_split():
    publish_app(name="montecarlo_pi", signing_key=keys.create_project_key(keys.project_key_path()))
    batch = submit_batch(
        owner=None,
        app_name="montecarlo_pi",
        name="pi",
        parameters={"seed": 1, "units": 5, "samples_per_unit": 10},
        policy=Policy(min_quorum=1, target_nresults=1),
    )
    host, _ = make_host()
    paused, made = PausedCursor(), []

    def split() -> None:
        try:
            made.append(split_next_chunk(batch_id=batch.pk, now=timezone.now(), cursor=paused))
        finally:
            connections.close_all()

    worker = threading.Thread(target=split)
    worker.start()
    try:
        assert paused.inside.wait(30)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")  # a lock on the app stops it here
            HostAppReputation.objects.create(host=host, app_id=batch.app_id)
    finally:
        paused.release.set()
        worker.join(30)

    assert made == [5] and WorkUnit.objects.filter(batch=batch).count() == 5
