"""Tail acceleration through the real scheduler RPC, transitioner and validator (docs/batches.md):
a nearly finished batch's overdue replica is backed up early, the backup goes to a reliable host
first with a shorter deadline, the first valid result wins, and the late one is never credited.
Also who is reliable, and when a replica is due and overdue (``scheduler.acceleration``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.scheduler.acceleration import Rules, is_reliable, timing
from coordinator.standing.models import HostAppVersion
from coordinator.testing import SignedHost, make_app, make_host
from coordinator.validation.models import LedgerEntry
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Outcome, Policy, ReplicaState
from coordinator.work.models import Batch, Replica
from coordinator.work.services import UnitSpec, create_work_units, transition_due_units

RULES = Rules()
T = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_reliable_host_is_valid_of_late_and_quick_on_every_version_it_ran():
    assert is_reliable(consecutive_valid=5, turnarounds=[600.0, 3600.0], rules=RULES)
    assert not is_reliable(consecutive_valid=4, turnarounds=[600.0], rules=RULES), "one error lately"
    assert not is_reliable(consecutive_valid=50, turnarounds=[600.0, 2 * 86400.0], rules=RULES), "slow once"
    assert not is_reliable(consecutive_valid=50, turnarounds=[0.0], rules=RULES), "never measured"


def test_a_reliable_host_is_no_slower_than_the_apps_usual_and_mostly_on():
    quick = {"consecutive_valid": 9, "turnarounds": [600.0], "rules": RULES}

    assert is_reliable(**quick, typical=900.0, availability=0.95)
    assert not is_reliable(**quick, typical=500.0, availability=0.95), "slower than the usual host"
    assert not is_reliable(**quick, typical=900.0, availability=0.5), "off half the time, holding its tasks"
    assert is_reliable(**quick), "the app's usual turnaround not known yet"


def test_an_accelerated_replica_has_a_shorter_deadline_only_on_a_reliable_host():
    fast = timing(now=T, delay_bound=1000, accelerated=True, reliable=True, turnaround=100.0, rules=RULES)
    other = timing(now=T, delay_bound=1000, accelerated=True, reliable=False, turnaround=100.0, rules=RULES)

    assert fast.deadline == T + timedelta(seconds=500) and other.deadline == T + timedelta(seconds=1000)
    assert fast.overdue_at == other.overdue_at == T + timedelta(seconds=200), "twice its usual turnaround"


def test_a_host_never_measured_is_overdue_halfway_to_its_deadline_and_never_after_it():
    plain = {"now": T, "delay_bound": 1000, "accelerated": False, "reliable": False, "rules": RULES}
    unmeasured, slow = timing(**plain, turnaround=0.0), timing(**plain, turnaround=900.0)

    assert unmeasured.overdue_at == T + timedelta(seconds=500)
    assert slow.overdue_at == slow.deadline == T + timedelta(seconds=1000)


def test_a_host_never_measured_is_overdue_by_its_own_figures_when_they_say_less():
    plain = {"now": T, "delay_bound": 1000, "accelerated": False, "reliable": False, "rules": RULES}

    assert timing(**plain, turnaround=0.0, expected=100.0).overdue_at == T + timedelta(seconds=200)
    assert timing(**plain, turnaround=0.0, expected=400.0).overdue_at == T + timedelta(seconds=500), (
        "at most half"
    )
    assert timing(**plain, turnaround=50.0, expected=400.0).overdue_at == T + timedelta(seconds=100), (
        "measured"
    )


@pytest.mark.django_db
def test_a_backup_of_a_lone_replica_goes_out_though_the_unit_is_out_alone():
    """Found by bench.simulate: a trusted host's lone replica kept every other replica of its
    unit from going out, the backup the lifecycle made for it included, until its deadline."""
    app = make_app()
    [unit] = create_work_units(
        app=app, specs=[UnitSpec("alone", b"x")], now=timezone.now(), fpops_estimate=1e9
    )
    lone, spare = unit.replicas.order_by("pk")
    trusted = SignedHost(*make_host())
    Replica.objects.filter(pk=spare.pk).update(state=ReplicaState.OVER, outcome=Outcome.DIDNT_NEED)
    assert [t["replica"] for t in trusted.rpc(tasks=1).json()["tasks"]] == [lone.pk]
    Replica.objects.filter(pk=lone.pk).update(trusted_single=True)
    plain = Replica.objects.create(workunit=unit, dispatch_key=1)
    other = SignedHost(*make_host())
    assert other.rpc(tasks=1).json()["tasks"] == [], "a plain replica is surplus while the unit is out alone"

    Replica.objects.filter(pk=plain.pk).update(reliable_until=timezone.now() - timedelta(seconds=1))

    assert [t["replica"] for t in other.rpc(tasks=1).json()["tasks"]] == [plain.pk], "a backup goes out"


# --- end to end through the RPC -------------------------------------------------------------

OUTPUT = b"the answer"
DELAY = 120  # seconds: a replica never measured is overdue after 60


def success(replica_id: int) -> Report:
    return Report(replica=replica_id, status="success", cpu_time=1.0, output=OUTPUT, elapsed=1.0)


def reliable_host(app) -> SignedHost:
    """A host whose last results were valid and came back within minutes on the app's version."""
    host = SignedHost(*make_host())
    host.host.__class__.objects.filter(pk=host.host.pk).update(consecutive_valid=10)
    HostAppVersion.objects.create(
        host=host.host, app_version=app.versions.get(), daily_quota=100, turnaround=30.0, speed_samples=5
    )
    return host


def five_unit_batch(app, *, delay_bound: int) -> tuple[Batch, list]:
    """A batch of five units of quorum 2, all its replicas waiting to be sent."""
    batch = Batch.objects.create(name="tail", app=app, units_planned=5, units_created=5)
    units = create_work_units(
        app=app,
        specs=[UnitSpec(f"tail-{i}", b"x", i) for i in range(5)],
        now=timezone.now(),
        policy=Policy(min_quorum=2, target_nresults=2, delay_bound=delay_bound),
        batch=batch,
        fpops_estimate=1e9,
    )
    return batch, units


@pytest.mark.django_db
def test_a_nearly_done_batchs_overdue_replica_is_sent_again_early_and_the_first_valid_result_wins(settings):
    settings.TESSERA = {**settings.TESSERA, "TAIL_FRACTION": 0.8}
    app = make_app()
    batch, units = five_unit_batch(app, delay_bound=DELAY)
    slow, first, second = (SignedHost(*make_host()) for _ in range(3))
    [held] = [task["replica"] for task in slow.rpc(tasks=1).json()["tasks"]]
    stuck = Replica.objects.get(pk=held).workunit
    for host in (first, second):
        tasks = [task["replica"] for task in host.rpc(tasks=5).json()["tasks"]]
        assert host.rpc(reports=[success(r) for r in tasks]).status_code == 200
        assert HostAppVersion.objects.get(host=host.host).turnaround > 0, "measured at the report"
    later = timezone.now() + timedelta(seconds=DELAY // 2 + 1)  # the slow host's replica is overdue
    transition_due_units(now=later)
    validate_due_units(now=later)
    transition_due_units(now=later)

    batch.refresh_from_db()
    assert batch.tail_since is not None, "four of five units are done: the batch is in its tail"
    [backup] = stuck.replicas.filter(state=ReplicaState.UNSENT)
    assert backup.reliable_until == later + timedelta(seconds=DELAY // 10), "a tenth of the delay bound"
    assert SignedHost(*make_host()).rpc(tasks=1).json()["tasks"] == [], "it waits for a reliable host"
    fast = reliable_host(app)
    [task] = fast.rpc(tasks=1).json()["tasks"]
    assert task["replica"] == backup.pk
    backup.refresh_from_db()
    assert (backup.deadline - backup.sent_at).total_seconds() == DELAY // 2, "a shorter deadline"

    assert fast.rpc(reports=[success(backup.pk)]).status_code == 200
    transition_due_units(now=later)
    validate_due_units(now=later)
    transition_due_units(now=later)
    late = slow.rpc(reports=[success(held)])

    stuck.refresh_from_db()
    assert stuck.state == "done" and stuck.canonical_replica_id in {r.pk for r in stuck.replicas.all()}
    overtaken = Replica.objects.get(pk=held)
    assert late.status_code == 200 and overtaken.outcome == Outcome.DIDNT_NEED, "called off, then only acked"
    assert not LedgerEntry.objects.filter(replica=overtaken).exists(), "the late result is never credited"
    credited = LedgerEntry.objects.filter(replica__workunit=stuck)
    assert credited.count() == 2 and credited.values("replica").distinct().count() == 2
    assert {u.pk for u in units} == set(batch.units.values_list("pk", flat=True))
