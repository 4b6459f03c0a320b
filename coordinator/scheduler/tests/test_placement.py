"""Who gets a unit's other replicas, and how much work anyone may hold (issue 13).

The coordinator, not the caller's timing, decides: siblings are far apart in dispatch order,
never go to a host related to the unit's other holders, and replicas that settle a dispute
go to established hosts only. Limits on tasks in progress and daily quotas stop hoarding.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.accounts.limits import record_signup, starting_quota
from coordinator.accounts.models import Host
from coordinator.scheduler.dispatch import WorkRequest, claim_work
from coordinator.standing.models import HostAppVersion
from coordinator.testing import SignedHost, assert_error, make_app, make_host, make_units, make_volunteer
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica

pytestmark = pytest.mark.django_db


def from_address(address: str, **options) -> SignedHost:
    """A host whose requests come through the project's proxy from ``address``."""
    return SignedHost(*make_host(**options), client=Client(HTTP_X_FORWARDED_FOR=address))


def units_of(tasks: list[dict]) -> set[str]:
    return {task["workunit"] for task in tasks}


@pytest.fixture
def behind_a_proxy(settings):
    settings.FORWARDED_ALLOW_IPS = ["127.0.0.1"]


def test_the_next_caller_does_not_get_the_siblings_of_the_last_callers_units():
    """Two accounts asking back to back: before, the second got the siblings of all of the
    first one's units (replicas of a unit had neighbouring ids); now the overlap is what
    chance gives, about k x k / replicas."""
    make_units(make_app(), 200, min_quorum=2, target_nresults=2)
    first, second = SignedHost(*make_host(n_cpus=8)), SignedHost(*make_host(n_cpus=8))

    got_first = units_of(first.rpc(tasks=20).json()["tasks"])
    got_second = units_of(second.rpc(tasks=20).json()["tasks"])

    assert len(got_first) == len(got_second) == 20
    assert len(got_first & got_second) <= 8, "20 x 20 / 400 = 1 on average; 8 or more is 1 in 10^5"


def test_siblings_are_spread_through_the_queue():
    make_units(make_app(), 100, min_quorum=2, target_nresults=2)
    order = list(
        Replica.objects.filter(state=ReplicaState.UNSENT)
        .order_by("-priority", "dispatch_key")
        .values_list("workunit_id", flat=True)
    )
    first_place = {}
    gaps = []
    for place, unit in enumerate(order):
        if unit in first_place:
            gaps.append(place - first_place[unit])
        first_place[unit] = place
    assert len(gaps) == 100
    assert sum(gaps) / len(gaps) > 30, "siblings are 1 apart in id order; at random about 67"


def test_hosts_on_one_network_never_hold_replicas_of_one_unit(behind_a_proxy):
    units = make_units(make_app(), 5, min_quorum=2, target_nresults=2)
    first, neighbour = from_address("203.0.113.10"), from_address("203.0.113.200")
    elsewhere = from_address("198.51.100.7")

    assert len(first.rpc(tasks=10).json()["tasks"]) == 5
    assert neighbour.rpc(tasks=10).json()["tasks"] == [], "same /24: related"
    assert units_of(elsewhere.rpc(tasks=10).json()["tasks"]) == {u.name for u in units}
    assert Host.objects.get(pk=neighbour.host.pk).network == "203.0.113.0/24"


def test_ipv6_hosts_in_one_48_are_related(behind_a_proxy):
    make_units(make_app(), 3, min_quorum=2, target_nresults=2)
    first, neighbour = from_address("2001:db8:aa:1::5"), from_address("2001:db8:aa:ffff::9")

    assert len(first.rpc(tasks=10).json()["tasks"]) == 3
    assert neighbour.rpc(tasks=10).json()["tasks"] == []
    assert len(from_address("2001:db8:bb::1").rpc(tasks=10).json()["tasks"]) == 3


def test_a_forged_forwarded_for_from_a_peer_that_is_not_a_proxy_is_ignored(settings):
    settings.FORWARDED_ALLOW_IPS = []
    make_units(make_app(), 1, min_quorum=2, target_nresults=2)
    host = from_address("203.0.113.10")
    host.rpc(tasks=1)
    assert Host.objects.get(pk=host.host.pk).network == "", "the loopback peer names no network"


def test_accounts_signed_up_in_one_burst_are_related(settings):
    settings.TESSERA = {**settings.TESSERA, "SIGNUP_BURST_SECONDS": 60}
    now = timezone.now()
    make_units(make_app(), 4, min_quorum=2, target_nresults=2)
    ring = [make_volunteer()[0] for _ in range(2)]
    for volunteer in ring:
        record_signup(volunteer=volunteer, address="127.0.0.1", now=now)
    first, partner = (SignedHost(*make_host(volunteer)) for volunteer in ring)

    assert len(first.rpc(tasks=10).json()["tasks"]) == 4
    assert partner.rpc(tasks=10).json()["tasks"] == [], "signed up in the same minute"
    assert len(SignedHost(*make_host()).rpc(tasks=10).json()["tasks"]) == 4


def test_a_unit_a_related_host_has_finished_is_still_not_for_its_neighbours(behind_a_proxy):
    make_units(make_app(), 2, min_quorum=2, target_nresults=2)
    first, neighbour = from_address("203.0.113.10"), from_address("203.0.113.99")
    tasks = first.rpc(tasks=10).json()["tasks"]
    reports = [Report(replica=t["replica"], status="success", cpu_time=1, output=b"ok") for t in tasks]
    assert len(first.rpc(reports=reports).json()["acks"]) == 2

    assert neighbour.rpc(tasks=10).json()["tasks"] == [], "it held them: still related"
    assert len(from_address("198.51.100.7").rpc(tasks=10).json()["tasks"]) == 2


def test_accounts_signed_up_from_one_network_are_related_wherever_their_hosts_call_from(behind_a_proxy):
    make_units(make_app(), 3, min_quorum=2, target_nresults=2)
    ring = [make_volunteer()[0] for _ in range(2)]
    for volunteer in ring:
        record_signup(volunteer=volunteer, address="192.0.2.44", now=timezone.now())
    first = SignedHost(*make_host(ring[0]), client=Client(HTTP_X_FORWARDED_FOR="203.0.113.10"))
    partner = SignedHost(*make_host(ring[1]), client=Client(HTTP_X_FORWARDED_FOR="198.51.100.7"))

    assert len(first.rpc(tasks=10).json()["tasks"]) == 3
    assert partner.rpc(tasks=10).json()["tasks"] == [], "signed up from the same /24"


def test_replicas_that_settle_a_dispute_go_to_established_hosts_only():
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=2)[0]
    Replica.objects.filter(workunit=unit).update(reserved=True)

    assert SignedHost(*make_host()).rpc(tasks=5).json()["tasks"] == [], "a new host may not settle it"
    assert len(SignedHost(*make_host(established=True)).rpc(tasks=5).json()["tasks"]) == 1


def test_a_dispute_no_established_host_took_in_time_goes_to_any_unrelated_host(settings):
    wait = settings.TESSERA["DISPUTE_WAIT_SECONDS"]
    fresh, waited = make_units(make_app(), 2, min_quorum=2, target_nresults=2)
    Replica.objects.filter(workunit__in=[fresh, waited]).update(reserved=True)
    Replica.objects.filter(workunit=waited).update(created=timezone.now() - timedelta(seconds=wait + 1))

    tasks = SignedHost(*make_host()).rpc(tasks=5).json()["tasks"]
    assert units_of(tasks) == {waited.name}, "the other still waits for an established host"


def test_a_claim_reads_the_hosts_figures_afresh_under_the_lock():
    """The host was read when its request was authenticated; what changed since counts."""
    make_units(make_app(), 1, min_quorum=2, target_nresults=2)
    Replica.objects.update(reserved=True)
    host, _ = make_host()
    Host.objects.filter(pk=host.pk).update(created=timezone.now() - timedelta(days=30))
    host.refresh_from_db()
    Host.objects.filter(pk=host.pk).update(independent_valid=100)  # established meanwhile

    assert len(claim_work(host=host, request=WorkRequest(tasks=5), now=timezone.now())) == 1
    assert host.independent_valid == 100


def test_a_host_holds_at_most_its_cores_worth_of_tasks_and_a_volunteer_at_most_its_limit(settings):
    settings.TESSERA = {
        **settings.TESSERA,
        "MAX_IN_PROGRESS_PER_CPU": 2,
        "MAX_IN_PROGRESS_PER_HOST": 6,
        "MAX_IN_PROGRESS_PER_VOLUNTEER": 10,
    }
    make_units(make_app(), 100, min_quorum=1, target_nresults=1)
    volunteer, _ = make_volunteer()
    small = SignedHost(*make_host(volunteer, n_cpus=2))
    big = [SignedHost(*make_host(volunteer, n_cpus=64)) for _ in range(3)]

    assert len(small.rpc(tasks=100).json()["tasks"]) == 4, "2 cores x 2"
    assert small.rpc(tasks=100).json()["tasks"] == [], "nothing more while it holds them"
    assert len(big[0].rpc(tasks=100).json()["tasks"]) == 6, "64 cores, but a host holds at most 6"
    assert [len(h.rpc(tasks=100).json()["tasks"]) for h in big[1:]] == [0, 0], "the volunteer holds 10"
    held = Replica.objects.filter(volunteer=volunteer, state=ReplicaState.IN_PROGRESS).count()
    assert held == 10


def test_an_honest_host_keeps_getting_work_while_hoarders_ask_for_everything(settings):
    """2 accounts x 2 hosts, as in the attack that held a whole 2,500-unit batch."""
    make_units(make_app(), 300, min_quorum=2, target_nresults=2)
    start = settings.TESSERA["NEW_HOST_DAILY_QUOTA"]
    accounts = [make_volunteer()[0] for _ in range(2)]
    hoarders = [SignedHost(*make_host(v, n_cpus=256, daily_quota=start)) for v in accounts for _ in range(2)]
    for _ in range(5):
        for hoarder in hoarders:
            hoarder.rpc(tasks=10_000)

    held = Replica.objects.filter(state=ReplicaState.IN_PROGRESS).count()
    assert held == 4 * start, "each new host: its starting quota a day"
    honest = SignedHost(*make_host(daily_quota=start))
    assert len(honest.rpc(tasks=8).json()["tasks"]) == 8


def test_a_caught_volunteers_new_host_starts_with_a_quota_of_one():
    app = make_app()
    make_units(app, 20, min_quorum=1, target_nresults=1)
    volunteer, _ = make_volunteer()
    caught, _ = make_host(volunteer)
    Host.objects.filter(pk=caught.pk).update(caught_at=timezone.now())

    assert starting_quota(volunteer=volunteer, now=timezone.now()) == 1
    fresh = SignedHost(
        *make_host(volunteer, daily_quota=starting_quota(volunteer=volunteer, now=timezone.now()))
    )
    assert len(fresh.rpc(tasks=20).json()["tasks"]) == 1
    assert HostAppVersion.objects.get(host=fresh.host).daily_quota == 1
    assert starting_quota(volunteer=make_volunteer()[0], now=timezone.now()) == 10


def test_a_host_cannot_claim_more_cores_or_speed_than_the_project_allows(settings):
    settings.TESSERA = {**settings.TESSERA, "MAX_HOST_CPUS": 64, "MAX_HOST_FLOPS": 1e10}
    host = SignedHost(*make_host())
    body = b'{"host_info": {"n_cpus": 4096}, "work_request": {"tasks": 1}}'
    assert_error(host.send("POST", "/api/v1/scheduler", body), 400, "implausible_host")
    body = b'{"host_info": {"flops": 1e14}}'
    assert_error(host.send("POST", "/api/v1/scheduler", body), 400, "implausible_host")
    assert Host.objects.get(pk=host.host.pk).n_cpus == 4, "nothing changed"
