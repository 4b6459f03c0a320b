"""The validator against the database: verdicts, credit, reputation, adaptive replication."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.accounts.models import Host, Volunteer
from coordinator.scheduler import dispatch as scheduler_dispatch
from coordinator.standing import credit
from coordinator.standing.models import CreditDay, HostAppReputation, HostAppVersion
from coordinator.standing.reputation import TRUST_AFTER_CONSECUTIVE_VALID
from coordinator.testing import SignedHost, make_app, make_host, make_units
from coordinator.validation.models import LedgerEntry
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Outcome, ReplicaState, UnitState, ValidateState
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db
DAY_OF_WORK = 1e9 * 86_400  # 200 cobblestones


def crunch(host: SignedHost, answer: Callable[[str], bytes], tasks: int = 1) -> list[int]:
    """The host takes work and reports ``answer(unit name)`` for each task, an hour later
    (claims are bounded by the time a host held its task)."""
    got = host.rpc(tasks=tasks).json()["tasks"]
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Replica.objects.filter(pk__in=[t["replica"] for t in got]).update(sent_at=an_hour_ago)
    reports = [
        Report(replica=t["replica"], status="success", cpu_time=3600.0, output=answer(t["workunit"]))
        for t in got
    ]
    if reports:
        assert host.rpc(reports=reports).status_code == 200
    return [t["replica"] for t in got]


def settle() -> None:
    """What the worker does between requests: transitions, then validation, then transitions."""
    now = timezone.now()
    transition_due_units(now=now)
    validate_due_units(now=now)
    transition_due_units(now=now)


def right(name: str) -> bytes:
    return f"right answer for {name}".encode()


def test_two_agreeing_replicas_make_the_unit_done_and_both_are_credited():
    unit = make_units(make_app(), 1, fpops_estimate=DAY_OF_WORK)[0]
    first, second = SignedHost(*make_host(flops=1e9)), SignedHost(*make_host(flops=1e9))
    crunch(first, right)
    crunch(second, right)

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.canonical_replica_id is not None
    replicas = list(unit.replicas.all())
    assert {r.validate_state for r in replicas} == {ValidateState.VALID}
    # Each host measured 1 GFLOPS x 3600 s = 1/24 of a reference day: 8.333333 credits.
    assert unit.granted_credit == Decimal("8.333333")
    assert all(r.granted_credit == Decimal("8.333333") for r in replicas)
    for signed in (first, second):
        volunteer = Volunteer.objects.get(pk=signed.host.volunteer_id)
        assert volunteer.total_credit == Decimal("8.333333")
        assert volunteer.rac > 0 and volunteer.rac_time is not None
        assert CreditDay.objects.get(volunteer=volunteer).credit == Decimal("8.333333")
        assert Host.objects.get(pk=signed.host.pk).total_credit == Decimal("8.333333")
    assert LedgerEntry.objects.count() == 2


def test_the_grant_is_the_lowest_claim_so_an_inflated_claim_does_not_pay():
    unit = make_units(make_app(), 1, fpops_estimate=DAY_OF_WORK)[0]
    honest, boaster = SignedHost(*make_host(flops=1e9)), SignedHost(*make_host(flops=1e12))
    crunch(honest, right)
    crunch(boaster, right)

    settle()

    unit.refresh_from_db()
    claims = dict(unit.replicas.values_list("host_id", "claimed_credit"))
    assert claims[boaster.host.pk] > claims[honest.host.pk]
    assert unit.granted_credit == Decimal("8.333333")


def test_disagreement_asks_for_another_replica_and_the_odd_one_out_gets_nothing():
    unit = make_units(make_app(), 1)[0]
    honest, cheater = (SignedHost(*make_host()) for _ in range(2))
    tiebreak = SignedHost(*make_host(established=True))
    crunch(honest, right)
    crunch(cheater, lambda name: b"made up")

    settle()
    assert set(unit.replicas.filter(outcome=Outcome.SUCCESS).values_list("validate_state", flat=True)) == {
        ValidateState.INCONCLUSIVE
    }
    assert unit.replicas.filter(state=ReplicaState.UNSENT).count() == 1, "one more replica to break the tie"

    crunch(tiebreak, right)
    settle()

    unit.refresh_from_db()
    states = dict(unit.replicas.values_list("host_id", "validate_state"))
    assert states == {
        honest.host.pk: ValidateState.VALID,
        cheater.host.pk: ValidateState.INVALID,
        tiebreak.host.pk: ValidateState.VALID,
    }
    cheat = unit.replicas.get(host=cheater.host)
    assert cheat.granted_credit is None
    assert not LedgerEntry.objects.filter(replica=cheat).exists()
    assert Host.objects.get(pk=cheater.host.pk).invalid_count == 1


def late_report(*, vouched: bool) -> tuple[WorkUnit, Replica]:
    """Two hosts agree (one of them established when ``vouched``); a third reports late and wrong."""
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=3)[0]
    hosts = [SignedHost(*make_host(established=vouched)), *(SignedHost(*make_host()) for _ in range(2))]
    held = [signed.rpc(tasks=1).json()["tasks"][0]["replica"] for signed in hosts]
    for signed, replica in zip(hosts[:2], held[:2], strict=True):
        signed.rpc(reports=[Report(replica=replica, status="success", cpu_time=60, output=right(unit.name))])
    settle()
    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and (unit.vouched_by_id == hosts[0].host.pk) == vouched

    hosts[2].rpc(reports=[Report(replica=held[2], status="success", cpu_time=60, output=b"late and wrong")])
    settle()
    return unit, Replica.objects.get(pk=held[2])


def test_a_replica_reported_after_validation_is_compared_with_the_canonical_one():
    _, late = late_report(vouched=True)

    assert late.validate_state == ValidateState.INVALID and late.granted_credit is None
    assert LedgerEntry.objects.count() == 2
    assert Host.objects.get(pk=late.host_id).caught_at is not None


def test_a_late_dissent_against_a_quorum_no_established_host_vouched_for_reopens_the_unit():
    unit, late = late_report(vouched=False)

    unit.refresh_from_db()
    assert late.validate_state == ValidateState.INCONCLUSIVE and late.granted_credit is None
    assert unit.state == UnitState.ACTIVE and unit.disputed and unit.canonical_replica_id is None
    host = Host.objects.get(pk=late.host_id)
    assert host.invalid_count == 0 and host.caught_at is None, "nobody is punished on an unvouched quorum"
    assert set(unit.replicas.filter(outcome=Outcome.SUCCESS).values_list("validate_state", flat=True)) == {
        ValidateState.INCONCLUSIVE
    }
    assert unit.replicas.filter(state=ReplicaState.UNSENT, reserved=True).exists(), "for an established host"

    crunch(SignedHost(*make_host(established=True)), right)
    settle()
    unit.refresh_from_db()
    late.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.vouched_by_id is not None and unit.corrected_at is None
    assert late.validate_state == ValidateState.INVALID
    assert Host.objects.get(pk=late.host_id).caught_at is not None
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GRANT).count() == 3, "the first two keep theirs"


def test_validation_twice_grants_nothing_twice():
    make_units(make_app(), 3)
    for _ in range(2):
        crunch(SignedHost(*make_host()), right, tasks=3)
    settle()
    entries = list(LedgerEntry.objects.order_by("seq").values_list("replica_id", "credit"))
    totals = list(Volunteer.objects.order_by("pk").values_list("total_credit", flat=True))

    for unit in WorkUnit.objects.all():
        WorkUnit.objects.filter(pk=unit.pk).update(need_validate=True)
    validate_due_units(now=timezone.now())

    assert list(LedgerEntry.objects.order_by("seq").values_list("replica_id", "credit")) == entries
    assert list(Volunteer.objects.order_by("pk").values_list("total_credit", flat=True)) == totals
    assert len({replica for replica, _ in entries}) == 6


def test_tolerance_apps_agree_on_close_numbers_and_refuse_unreadable_output():
    app = make_app()
    app.compare_mode, app.rel_tolerance = "tolerance", 1e-6
    app.save()
    close, unreadable = make_units(app, 2)
    hosts = [SignedHost(*make_host()) for _ in range(2)]
    answers = {
        close.name: [json.dumps({"energy": -1.0000001}).encode(), json.dumps({"energy": -1.0}).encode()],
        unreadable.name: [b"{not json", json.dumps({"energy": 2.0}).encode()],
    }
    for index, signed in enumerate(hosts):
        crunch(signed, lambda name, i=index: answers[name][i], tasks=2)

    settle()

    close.refresh_from_db()
    assert close.state == UnitState.DONE
    bad = unreadable.replicas.get(host=hosts[0].host)
    assert (bad.outcome, bad.validate_state) == (Outcome.VALIDATE_ERROR, ValidateState.INVALID)
    assert unreadable.replicas.filter(state=ReplicaState.UNSENT).count() == 1, "reissued"


def test_team_credit_follows_its_members():
    from coordinator.accounts.models import Team

    team = Team.objects.create(name="Crunchers")
    make_units(make_app(), 1, fpops_estimate=DAY_OF_WORK)
    hosts = [SignedHost(*make_host(flops=1e9)) for _ in range(2)]
    Volunteer.objects.filter(pk__in=[h.host.volunteer_id for h in hosts]).update(team=team)
    for signed in hosts:
        crunch(signed, right)

    settle()

    team.refresh_from_db()
    assert team.total_credit == Decimal("16.666666")
    assert team.rac_rank == pytest.approx(credit.rac_rank_key(team.rac, team.rac_time))


def test_the_database_refuses_to_change_or_remove_a_ledger_entry():
    make_units(make_app(), 1)
    for _ in range(2):
        crunch(SignedHost(*make_host()), right)
    settle()
    entry = LedgerEntry.objects.first()

    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(credit=Decimal("1000"))
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()

    assert LedgerEntry.objects.get(pk=entry.pk).credit == entry.credit


def test_the_quota_per_app_version_loses_one_on_an_error_and_doubles_on_a_valid_result(settings):
    settings.TESSERA = {**settings.TESSERA, "DEFAULT_DAILY_QUOTA": 64}
    app = make_app()
    make_units(app, 1, min_quorum=1, target_nresults=1)
    host, key = make_host(daily_quota=20)
    signed = SignedHost(host, key)
    replica_id = signed.rpc(tasks=1).json()["tasks"][0]["replica"]
    signed.rpc(reports=[Report(replica=replica_id, status="client_error", cpu_time=1, exit_code=1)])

    quota = HostAppVersion.objects.get(host=host, app_version__app=app)
    assert quota.daily_quota == 19 and Host.objects.get(pk=host.pk).error_count == 1

    make_units(app, 1, min_quorum=1, target_nresults=1)
    crunch(signed, right)
    settle()
    quota.refresh_from_db()
    assert quota.daily_quota == 38 and Host.objects.get(pk=host.pk).valid_count == 1
    for _ in range(3):
        make_units(app, 1, min_quorum=1, target_nresults=1)
        crunch(signed, right)
        settle()
    quota.refresh_from_db()
    assert quota.daily_quota == 64, "never above DEFAULT_DAILY_QUOTA"


def test_a_trusted_host_takes_units_alone_except_for_spot_checks(monkeypatch):
    app = make_app()
    host, key = make_host(established=True)
    HostAppReputation.objects.create(
        host=host, app=app, consecutive_valid=TRUST_AFTER_CONSECUTIVE_VALID, valid=10
    )
    draws = iter([0.99, 0.0])  # the first unit claimed goes alone, the second is a spot check
    monkeypatch.setattr(scheduler_dispatch, "draw", lambda: next(draws, 0.5))
    units = make_units(app, 2, min_quorum=2, target_nresults=2)
    trusted = SignedHost(host, key)

    crunch(trusted, right, tasks=2)
    single = Replica.objects.get(host=host, trusted_single=True)
    alone, checked = sorted(units, key=lambda unit: unit.pk != single.workunit_id)
    others = crunch(SignedHost(*make_host()), right, tasks=5)
    settle()

    alone.refresh_from_db()
    checked.refresh_from_db()
    assert alone.state == UnitState.DONE and alone.replicas.filter(outcome=Outcome.SUCCESS).count() == 1
    assert alone.replicas.filter(outcome=Outcome.DIDNT_NEED).count() == 1
    assert len(others) == 1, "only the spot-checked unit needed a second host"
    assert checked.state == UnitState.DONE and checked.replicas.filter(outcome=Outcome.SUCCESS).count() == 2


def test_a_cheater_who_got_the_unit_first_cannot_ride_a_trusted_hosts_quorum_of_one(monkeypatch):
    """Found by the scenario runner: the unit went to a cheater, then to a trusted host as
    its "single" replica, and the quorum of one let the cheater's answer, reported first,
    become canonical unchecked."""
    app = make_app()
    unit = make_units(app, 1, min_quorum=2, target_nresults=2)[0]
    cheater = SignedHost(*make_host())
    lie = crunch(cheater, lambda name: b"a lie", tasks=1)[0]
    host, key = make_host(established=True)
    HostAppReputation.objects.create(host=host, app=app, consecutive_valid=50, valid=50)
    monkeypatch.setattr(scheduler_dispatch, "draw", lambda: 0.99)  # no spot check: it would go alone
    honest = SignedHost(host, key).rpc(tasks=1).json()["tasks"][0]["replica"]

    assert not Replica.objects.get(pk=honest).trusted_single
    settle()  # the lie alone is no quorum
    unit.refresh_from_db()
    assert unit.state == UnitState.ACTIVE and unit.canonical_replica_id is None

    SignedHost(host, key).rpc(
        reports=[Report(replica=honest, status="success", cpu_time=3600.0, output=right(unit.name))]
    )
    settle()
    crunch(SignedHost(*make_host(established=True)), right)  # the disagreement brings a third replica
    settle()
    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.canonical_replica_id != lie
    assert Replica.objects.get(pk=lie).validate_state == ValidateState.INVALID


def test_a_trusted_single_result_in_dispute_lets_more_replicas_go_out():
    """If a unit has a trusted single replica and another live one (two claims that raced),
    the quorum is the unit's own, and a disagreement is settled by more hosts."""
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=2)[0]
    first, second = SignedHost(*make_host()), SignedHost(*make_host())
    trusted = first.rpc(tasks=1).json()["tasks"][0]["replica"]
    lie = second.rpc(tasks=1).json()["tasks"][0]["replica"]
    Replica.objects.filter(pk=trusted).update(trusted_single=True)
    second.rpc(reports=[Report(replica=lie, status="success", cpu_time=3600.0, output=b"a lie")])
    first.rpc(reports=[Report(replica=trusted, status="success", cpu_time=3600.0, output=right(unit.name))])
    settle()
    assert Replica.objects.get(pk=trusted).validate_state == ValidateState.INCONCLUSIVE

    assert crunch(SignedHost(*make_host()), right) == [], "a new host may not settle a dispute"
    third = crunch(SignedHost(*make_host(established=True)), right)
    settle()
    unit.refresh_from_db()
    assert third, "the disputed unit must go out again, to an established host"
    assert unit.state == UnitState.DONE and unit.canonical_replica_id in (trusted, third[0])
    assert Replica.objects.get(pk=lie).validate_state == ValidateState.INVALID


def test_a_trusted_host_that_fails_brings_the_unit_back_to_two_replicas(monkeypatch):
    app = make_app()
    host, key = make_host(established=True)
    HostAppReputation.objects.create(host=host, app=app, consecutive_valid=50, valid=50)
    monkeypatch.setattr(scheduler_dispatch, "draw", lambda: 0.99)
    unit = make_units(app, 1, min_quorum=2, target_nresults=2, delay_bound=60)[0]
    SignedHost(host, key).rpc(tasks=1)

    transition_due_units(now=timezone.now() + timedelta(seconds=61))

    assert not unit.replicas.filter(state=ReplicaState.IN_PROGRESS).exists()
    assert unit.replicas.filter(state=ReplicaState.UNSENT).count() == 2
    assert not HostAppReputation.objects.get(host=host, app=app).consecutive_valid
