"""Fair share between scientists through the real dispatch (docs/batches.md): a small batch
submitted behind a huge one is sent within the documented bound, each share gets its
weight's part over a long run, and batch priority orders a scientist's own batches only."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.scheduler.dispatch import WorkRequest, claim_work
from coordinator.shares.models import Member, Share
from coordinator.shares.policy import share_error, small_batch_bound
from coordinator.shares.selectors import use_since
from coordinator.shares.services import share_of
from coordinator.testing import make_app, make_host, make_scientist
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Batch, BatchState, Replica
from coordinator.work.services import UnitSpec, create_work_units

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PER_CLAIM = 50
_names = itertools.count()


@pytest.fixture(autouse=True)
def roomy(settings):
    """Hosts that may hold all they are sent: the shares, not the limits, decide."""
    settings.TESSERA = {
        **settings.TESSERA,
        "MAX_IN_PROGRESS_PER_CPU": 100_000,
        "MAX_IN_PROGRESS_PER_HOST": 100_000,
        "MAX_IN_PROGRESS_PER_VOLUNTEER": 100_000,
        "WORK_BUFFER_SECONDS": float("inf"),
    }


def submit(app, share: Share, units: int, *, now: datetime, priority: int = 0) -> Batch:
    """A split batch of ``units`` units of two replicas each, charged to ``share``."""
    batch = Batch.objects.create(
        name=f"batch{next(_names)}",
        app=app,
        share=share,
        state=BatchState.RUNNING,
        units_planned=units,
        units_created=units,
        priority=priority,
    )
    specs = [UnitSpec(f"{batch.name}-{i}", b"x", i) for i in range(units)]
    create_work_units(app=app, specs=specs, now=now, batch=batch, priority=priority, fpops_estimate=1e9)
    return batch


def unsent(batch: Batch) -> int:
    return Replica.objects.filter(workunit__batch=batch, state=ReplicaState.UNSENT).count()


class Hosts:
    """Four hosts of four volunteers asking for work in turn, a second apart."""

    def __init__(self) -> None:
        self.hosts = itertools.cycle([make_host(daily_quota=1_000_000)[0] for _ in range(4)])
        self.now = T0

    def claim(self) -> list[int]:
        self.now += timedelta(seconds=1)
        sent = claim_work(host=next(self.hosts), request=WorkRequest(tasks=PER_CLAIM), now=self.now)
        assert sent, "the hosts always get work here"
        return [assignment.replica_id for assignment in sent]


def two_scientists(weights: tuple[int, int]) -> tuple[Share, Share]:
    first, second = share_of(make_scientist()[0]), share_of(make_scientist()[0])
    assert first and second and first != second
    Share.objects.filter(pk=first.pk).update(weight=weights[0])
    Share.objects.filter(pk=second.pk).update(weight=weights[1])
    return first, second


def test_a_small_batch_behind_a_huge_one_is_sent_within_the_bound():
    app = make_app()
    huge_share, small_share = two_scientists((100, 100))
    submit(app, huge_share, 10_000, now=T0)
    hosts = Hosts()
    for _ in range(20):  # the huge batch has had the project to itself for a while
        hosts.claim()

    small = submit(app, small_share, 100, now=hosts.now)
    sent = 0
    while unsent(small):
        sent += len(hosts.claim())

    bound = small_batch_bound(replicas=200, weight=100, active_weights=200)
    assert sent <= bound, f"{sent} replicas went out before the small batch's last; the bound is {bound}"


@pytest.mark.parametrize("weights", [(100, 100), (300, 100)])
def test_over_a_long_run_each_share_gets_its_weights_part_within_five_points(weights):
    app = make_app()
    big, steady = two_scientists(weights)
    submit(app, big, 2_000, now=T0)
    hosts = Hosts()
    small = submit(app, steady, 100, now=T0)
    for _ in range(60):
        if not unsent(small):  # the second scientist keeps work waiting, 100 units at a time
            small = submit(app, steady, 100, now=hosts.now)
        hosts.claim()

    used = {share_id: fpops for share_id, (_, fpops) in use_since(T0).items()}
    assert sum(used.values()) == 60 * PER_CLAIM * 1e9
    error = share_error(used, {big.pk: weights[0], steady.pk: weights[1]})
    assert error <= 0.05, f"{error:.1%} off the target"


def test_priority_orders_a_scientists_own_batches_but_not_anothers():
    app = make_app()
    first, second = two_scientists((100, 100))
    older = submit(app, first, 100, now=T0)
    urgent = submit(app, first, 10, now=T0, priority=50)
    others = submit(app, second, 100, now=T0)
    hosts = Hosts()

    # A claim takes one replica of a unit: the urgent batch's 20 go out in its owner's two turns.
    sent = Replica.objects.filter(pk__in=[pk for _ in range(4) for pk in hosts.claim()])
    by_batch = {b.pk: sent.filter(workunit__batch=b).count() for b in (older, urgent, others)}

    assert by_batch[urgent.pk] == 20, "the urgent batch goes before its owner's older one"
    assert by_batch[others.pk] == 100, "but the other scientist still gets half"


def test_work_outside_batches_goes_first_and_is_charged_to_no_share():
    app = make_app()
    share, _ = two_scientists((100, 100))
    submit(app, share, 50, now=T0)
    create_work_units(
        app=app, specs=[UnitSpec(f"own-{i}", b"x") for i in range(10)], now=T0, fpops_estimate=1e9
    )

    sent = Replica.objects.filter(pk__in=Hosts().claim())

    assert sent.filter(workunit__batch__isnull=True).count() == 10, "one replica of each own unit"
    assert use_since(T0) == {share.pk: (40, 40e9)}


def test_a_scientist_has_one_share_their_own_until_an_admin_puts_them_in_a_group():
    scientist, _ = make_scientist("ada")
    own = share_of(scientist)
    assert own is not None and own.name == "ada" and share_of(scientist) == own
    assert own.weight == 100

    group = Share.objects.create(name="lab", weight=400)
    Member.objects.filter(user=scientist).update(share=group)
    assert share_of(scientist) == group
    assert share_of(None) is None

    namesake, _ = make_scientist("lab")
    assert share_of(namesake).name == "lab (own)", "a group's name is never taken over"


def test_the_admin_shows_each_shares_target_and_use_over_the_last_day(admin_client):
    first, second = two_scientists((300, 100))
    app = make_app()
    submit(app, first, 100, now=T0)
    submit(app, second, 100, now=T0)
    hosts = Hosts()
    hosts.now = datetime.now(UTC)
    for _ in range(4):
        hosts.claim()

    page = admin_client.get("/admin/shares/share/").content.decode()

    # Claims of 50 went to the first, the second, then the first twice (least use per weight).
    assert page.count('class="field-target">75.0%<') == 1 and page.count('class="field-target">25.0%<') == 1
    assert page.count(">75.0%</span>") == 1 and page.count(">25.0%</span>") == 1, "the use"
    assert 'class="field-replicas_last_day">150<' in page
