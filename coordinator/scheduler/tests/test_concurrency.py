"""Dispatch under concurrency, on PostgreSQL with real connections."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
import pytest
from django.db import connection
from django.test import Client

from coordinator.testing import SignedHost, make_app, make_host, make_units, make_volunteer
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import App, Replica

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def raw_connection() -> psycopg.Connection:
    """A second connection to the test database, outside Django."""
    params = connection.get_connection_params()
    return psycopg.connect(
        host=params.get("host") or "127.0.0.1",
        port=params.get("port") or 5432,
        user=params.get("user") or "postgres",
        dbname=params["dbname"],
    )


def test_many_hosts_asking_at_once_never_share_a_replica_nor_a_unit_per_volunteer():
    app = make_app()
    make_units(app, 150, min_quorum=3, target_nresults=3)  # 450 replicas
    volunteers = [make_volunteer()[0] for _ in range(6)]
    hosts = [SignedHost(*make_host(volunteer=volunteers[i % 6]), client=Client()) for i in range(18)]
    start = threading.Barrier(len(hosts))
    results: dict[int, list[dict]] = {}
    failures: list[str] = []

    def ask(index: int, signed: SignedHost) -> None:
        try:
            start.wait()
            got: list[dict] = []
            for _ in range(4):
                reply = signed.rpc(tasks=10)
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code} {reply.content[:200]!r}")
                    return
                got.extend(reply.json()["tasks"])
            results[index] = got
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(i, h)) for i, h in enumerate(hosts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    handed_out = [task["replica"] for tasks in results.values() for task in tasks]
    assert len(handed_out) == len(set(handed_out)), "a replica went to two hosts"
    unsent = Replica.objects.filter(state=ReplicaState.UNSENT).count()
    assert len(handed_out) + unsent == 450 and len(handed_out) >= 400
    per_volunteer_unit = Counter()
    for index, tasks in results.items():
        for task in tasks:
            per_volunteer_unit[(hosts[index].host.volunteer_id, task["workunit"])] += 1
    assert max(per_volunteer_unit.values()) == 1, "a volunteer got two replicas of one unit"
    in_db = Replica.objects.filter(state=ReplicaState.IN_PROGRESS)
    assert sorted(in_db.values_list("id", flat=True)) == sorted(handed_out)


def test_dispatch_skips_rows_another_transaction_holds_instead_of_waiting():
    app = make_app()
    make_units(app, 6, min_quorum=1, target_nresults=1)
    order = list(Replica.objects.order_by("-priority", "dispatch_key").values_list("id", flat=True))
    held = order[:3]
    signed = SignedHost(*make_host())

    with raw_connection() as other:
        other.execute("SELECT id FROM work_replica WHERE id = ANY(%s) FOR UPDATE", [held])
        outcome: dict[str, object] = {}

        def ask() -> None:
            try:
                outcome["reply"] = signed.rpc(tasks=3)
            finally:
                connection.close()

        thread = threading.Thread(target=ask)
        thread.start()
        thread.join(timeout=10)
        blocked = thread.is_alive()
        other.rollback()
        thread.join(timeout=10)

    assert not blocked, "dispatch waited on locked rows instead of skipping them"
    got = [task["replica"] for task in outcome["reply"].json()["tasks"]]
    assert got == order[3:6]


def test_hosts_of_two_hr_classes_asking_at_once_never_share_a_unit():
    app = make_app()
    App.objects.filter(pk=app.pk).update(hr_level=1)
    make_units(app, 120, min_quorum=2, target_nresults=2)  # 240 replicas, each unit one class
    vendors = ["GenuineIntel", "AuthenticAMD"]
    hosts = [
        SignedHost(*make_host(os_name="Linux", cpu_vendor=vendors[i % 2]), client=Client()) for i in range(12)
    ]
    start = threading.Barrier(len(hosts))
    failures: list[str] = []

    def ask(signed: SignedHost) -> None:
        try:
            start.wait()
            for _ in range(3):
                reply = signed.rpc(tasks=10)
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code} {reply.content[:200]!r}")
                    return
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(h,)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    classes: dict[int, set[str]] = {}
    for unit_id, vendor in Replica.objects.filter(host__isnull=False).values_list(
        "workunit_id", "host__cpu_vendor"
    ):
        classes.setdefault(unit_id, set()).add(vendor)
    assert len(classes) >= 60 and all(len(seen) == 1 for seen in classes.values()), "a unit crossed classes"
