"""A cluster on one machine: two coordinator processes, two dramatiq workers on RabbitMQ, the
scheduler, PostgreSQL and SeaweedFS as S3, and a dozen `tessera` clients crunching a
Mandelbrot batch whose tiles are uploaded straight to the bucket. RabbitMQ, SeaweedFS, one
coordinator and one worker are restarted on the way; the batch still completes with every
unit validated once and every credit granted once, and its picture is the app's own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import workunits
from tests.cluster import Cluster, require_services
from tests.coordinator_process import MAKE_SCIENTIST
from tests.volunteers import attach, wait_for
from workunits.interface import Checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from tessera_batches import Batches  # a script, not a package

# 32 tiles of 96 by 96 pixels: each output (9 KB) is over the inline limit, so it goes to S3.
PICTURE = {"width": 768, "height": 384, "tile": 96, "max_iterations": 200, "center": [-0.6, 0.0], "span": 3.0}
CLIENTS = 12  # a dozen volunteers' computers, half on each coordinator

CHECKS = """
from django.db.models import Count, Sum
from coordinator.accounts.models import Volunteer
from coordinator.validation.models import LedgerEntry
from coordinator.work.models import Replica, WorkUnit
units = WorkUnit.objects.all()
credited = Replica.objects.filter(granted_credit__isnull=False)
result = {
    "units": dict(units.values_list("state").annotate(n=Count("id")).order_by()),
    "without_canonical": units.filter(state="done", canonical_replica__isnull=True).count(),
    "canonical_not_valid": units.filter(state="done")
    .exclude(canonical_replica__validate_state="valid")
    .count(),
    "credited_replicas": credited.count(),
    "ledger_entries": LedgerEntry.objects.count(),
    "ledger_replicas": LedgerEntry.objects.values("replica").distinct().count(),
    "credit_in_ledger": str(LedgerEntry.objects.aggregate(s=Sum("credit"))["s"]),
    "credit_of_volunteers": str(Volunteer.objects.aggregate(s=Sum("total_credit"))["s"]),
    "outputs_in_storage": Replica.objects.exclude(output_file="").count(),
}
"""


@pytest.fixture
def cluster(tmp_path):
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql")):
        pytest.skip(
            "runs in the PostgreSQL pass only: the cluster has a PostgreSQL database of its own"
            " whichever database the suite runs on, so a second run would test the same thing"
        )
    require_services("the cluster test")
    with Cluster(tmp_path / "cluster") as running:
        yield running


def test_a_batch_survives_restarts_of_the_broker_the_storage_a_coordinator_and_a_worker(cluster, tmp_path):
    first, second = cluster.webs
    coordinator = cluster.coordinator
    version = workunits.load("mandelbrot").MANIFEST.version
    assert f"mandelbrot v{version}: published" in coordinator.manage("publish_app", "mandelbrot")
    batches = Batches(first.url, coordinator.django(MAKE_SCIENTIST, username="curie"))
    batch = batches.submit("mandelbrot", "tiles", parameters=PICTURE, min_quorum=2, target_nresults=2)
    wait_for(lambda: batches.get(batch["id"])["state"] == "running", 60, "the workers to split the batch")

    clients = []
    for index in range(CLIENTS):
        coordinator.url = (first if index % 2 == 0 else second).url  # hosts alternate between the two
        clients.append(attach(coordinator, tmp_path, f"volunteer{index}"))
    for client in clients:
        client.start("--exit-when-idle")

    def validated() -> int:
        return batches.get(batch["id"])["units"]["validated"]

    try:
        wait_for(lambda: validated() >= 4, 120, "the first units to validate")
        cluster.restart_rabbitmq()
        cluster.restart_seaweed()
        cluster.crash(second)
        cluster.crash(cluster.workers[0])
        done = batches.wait(batch["id"], poll=1, timeout=180, progress=False)
        for client in clients:
            assert client.wait(180) == 0, client.output()
    except BaseException:
        print(cluster.logs())
        raise

    assert done["state"] == "done", done
    print(f"cluster: restarted by the supervisor: {cluster.supervisor.restarts}")
    facts = coordinator.django(CHECKS)
    planned = done["units"]["planned"]
    assert facts["units"] == {"done": planned} and planned == 32
    assert facts["without_canonical"] == facts["canonical_not_valid"] == 0
    assert facts["credited_replicas"] == facts["ledger_entries"] == facts["ledger_replicas"] >= 2 * planned
    assert facts["credit_in_ledger"] == facts["credit_of_volunteers"]
    module = workunits.load("mandelbrot")
    direct = module.assimilate(
        (i, module.compute(data, Checkpoint())) for i, data in enumerate(module.split(PICTURE))
    )
    assert batches.result(batch["id"]) == direct
    assert "verified" in coordinator.manage("ledger", "verify", str(export(coordinator, tmp_path))).lower()


def export(coordinator, tmp_path: Path) -> Path:
    target = tmp_path / "ledger.jsonl"
    coordinator.manage("ledger", "export", "--output", str(target))
    return target
