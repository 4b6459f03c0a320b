"""Trust from independent agreement, and caught means corrected (issue 13).

Colluders' agreed lies are accepted only until an established host audits them; a caught
host's unchecked results are reopened; the canonical result is replaced, the wrong credit
reversed in the ledger and the totals, and the batch assimilated again.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from tessera_client.ledger import verify_records

from coordinator.accounts.models import Host, Volunteer
from coordinator.core import keys
from coordinator.scheduler import dispatch
from coordinator.standing.models import HostAppReputation
from coordinator.testing import SignedHost, make_app, make_host, make_units
from coordinator.validation import ledger
from coordinator.validation.correction import correction_sweep
from coordinator.validation.credit_ratios import refresh_credit_ratios
from coordinator.validation.models import LedgerEntry
from coordinator.validation.tests.test_validator import DAY_OF_WORK, crunch, right, settle
from coordinator.work.lifecycle import Outcome, UnitState, ValidateState
from coordinator.work.models import Batch, BatchState, Replica, WorkUnit

pytestmark = pytest.mark.django_db
LIE = b"the agreed lie"


def lie(name: str) -> bytes:
    return LIE


def established() -> SignedHost:
    """An established host that has just called (so audits know someone can do them)."""
    host = SignedHost(*make_host(established=True))
    host.rpc()
    return host


def sweep_and_settle() -> None:
    correction_sweep(now=timezone.now())
    settle()


def output_of(unit: WorkUnit) -> bytes:
    unit.refresh_from_db()
    return bytes(Replica.objects.get(pk=unit.canonical_replica_id).output_inline)


def test_two_new_colluders_agreed_lie_is_audited_overturned_and_its_credit_reversed(tmp_path):
    project_key = keys.create_project_key(tmp_path / "project.key")
    app = make_app()
    batch = Batch.objects.create(name="b", app=app, state=BatchState.DONE, units_planned=1, units_created=1)
    unit = make_units(app, 1, min_quorum=2, target_nresults=2, batch=batch)[0]
    ring = [SignedHost(*make_host()) for _ in range(2)]
    for colluder in ring:
        crunch(colluder, lie)
    settle()
    assert output_of(unit) == LIE and unit.vouched_by_id is None, "accepted, but nobody vouched for it"
    assert correction_sweep(now=timezone.now()) == (0, 0), "no established host around: no audit yet"

    auditor, second = established(), established()
    sweep_and_settle()
    unit.refresh_from_db()
    assert unit.audit_wanted and unit.replicas.filter(reserved=True, state="unsent").count() == 1
    assert SignedHost(*make_host()).rpc(tasks=5).json()["tasks"] == [], "audits are for established hosts"
    crunch(auditor, right)
    settle()
    unit.refresh_from_db()
    assert unit.state == UnitState.ACTIVE and unit.canonical_replica_id is None, (
        "the audit disagreed: reopened"
    )
    crunch(second, right)
    settle()

    assert output_of(unit) == right(unit.name)
    assert unit.corrected_at is not None and unit.vouched_by_id in (auditor.host.pk, second.host.pk)
    for colluder in ring:
        replica = Replica.objects.get(workunit=unit, host=colluder.host)
        assert replica.validate_state == ValidateState.INVALID and replica.granted_credit is None
        assert Host.objects.get(pk=colluder.host.pk).caught_at is not None
        assert Volunteer.objects.get(pk=colluder.host.volunteer_id).total_credit == 0
        assert LedgerEntry.objects.filter(replica=replica, kind=LedgerEntry.Kind.REVERSAL).count() == 1
    assert Volunteer.objects.get(pk=auditor.host.volunteer_id).total_credit == unit.granted_credit > 0
    assert Batch.objects.get(pk=batch.pk).reassimilate, "the scientist's result is made again"

    ledger.seal(key=project_key, now=timezone.now())
    records = list(ledger.export_records(public_key=keys.public_key_b64(project_key), now=timezone.now()))
    result = verify_records(records)
    assert result.ok, result.summary()
    assert result.totals.get(str(ring[0].host.volunteer_id), Decimal(0)) == 0


def test_a_caught_hosts_unchecked_results_are_reopened_and_its_partners_caught_in_turn():
    """The cascade: one colluder is caught elsewhere; the lie it shared with a partner is
    audited and overturned, which catches the partner too."""
    app = make_app()
    shared = make_units(app, 1, min_quorum=2, target_nresults=2)[0]
    first, partner = SignedHost(*make_host()), SignedHost(*make_host())
    crunch(first, lie)
    crunch(partner, lie)
    settle()
    honest_pair = make_units(app, 1, min_quorum=2, target_nresults=2)[0]
    auditor, second = established(), established()
    crunch(first, lie)
    crunch(auditor, right)
    settle()
    crunch(second, right)
    settle()
    assert Replica.objects.get(workunit=honest_pair, host=first.host).validate_state == ValidateState.INVALID
    assert Host.objects.get(pk=first.host.pk).caught_at is not None
    assert Host.objects.get(pk=partner.host.pk).caught_at is None

    for _ in range(3):
        sweep_and_settle()
        for host in (auditor, second):
            crunch(host, right)
        settle()

    assert output_of(shared) == right(shared.name)
    assert Host.objects.get(pk=partner.host.pk).caught_at is not None
    assert Host.objects.get(pk=first.host.pk).corrected_at is not None


def test_a_trusted_hosts_lone_lies_are_reopened_once_it_is_caught(monkeypatch):
    app = make_app()
    trusted = SignedHost(*make_host(established=True))
    HostAppReputation.objects.create(host=trusted.host, app=app, consecutive_valid=50, valid=50)
    monkeypatch.setattr(dispatch, "draw", lambda: 0.99)  # no spot check: it goes alone
    alone = make_units(app, 1, min_quorum=2, target_nresults=2, fpops_estimate=DAY_OF_WORK)[0]
    crunch(trusted, lie)
    settle()
    assert output_of(alone) == LIE and alone.vouched_by_id == trusted.host.pk
    assert Replica.objects.get(workunit=alone, host=trusted.host).granted_credit <= Decimal(200), (
        "the estimate"
    )

    monkeypatch.setattr(dispatch, "draw", lambda: 0.0)  # a spot check catches it
    checked = make_units(app, 1, min_quorum=2, target_nresults=2)[0]
    crunch(trusted, lie)
    first, second = established(), established()
    crunch(first, right)
    settle()
    crunch(second, right)
    settle()
    assert Replica.objects.get(workunit=checked, host=trusted.host).validate_state == ValidateState.INVALID

    for _ in range(2):
        sweep_and_settle()
        for host in (first, second):
            crunch(host, right)
        settle()
    assert output_of(alone) == right(alone.name)
    lone = Replica.objects.get(workunit=alone, host=trusted.host)
    assert lone.validate_state == ValidateState.INVALID and lone.granted_credit is None
    assert LedgerEntry.objects.filter(replica=lone, kind=LedgerEntry.Kind.REVERSAL).exists()
    assert HostAppReputation.objects.get(host=trusted.host, app=app).consecutive_valid == 0


def test_colluders_outnumbering_an_honest_host_cannot_make_it_invalid():
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=3)[0]
    ring = [SignedHost(*make_host()) for _ in range(2)]
    honest = SignedHost(*make_host())
    for colluder in ring:
        crunch(colluder, lie)
    crunch(honest, right)
    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.ACTIVE, "two agreeing new hosts against one are no verdict"
    states = set(unit.replicas.filter(outcome=Outcome.SUCCESS).values_list("validate_state", flat=True))
    assert states == {ValidateState.INCONCLUSIVE}
    crunch(established(), right)
    settle()

    assert output_of(unit) == right(unit.name)
    assert Replica.objects.get(workunit=unit, host=honest.host).validate_state == ValidateState.VALID
    assert Host.objects.get(pk=honest.host.pk).invalid_count == 0
    assert {Replica.objects.get(workunit=unit, host=c.host).validate_state for c in ring} == {
        ValidateState.INVALID
    }


def test_agreeing_inflaters_alone_in_pairs_or_trusted_earn_no_more_than_honest_hosts(monkeypatch, settings):
    """Honest quorums teach the app its typical claim; no quorum earns more than that."""
    # Each host takes the 25 day-long units at once, past a one-core host's work buffer.
    settings.TESSERA = {**settings.TESSERA, "WORK_BUFFER_SECONDS": float("inf")}
    app = make_app()
    honest, reference = SignedHost(*make_host(flops=1e9)), SignedHost(*make_host(flops=1e9, established=True))
    units = make_units(app, 25, min_quorum=2, target_nresults=2, fpops_estimate=DAY_OF_WORK)
    crunch(honest, right, tasks=25)
    crunch(reference, right, tasks=25)
    settle()
    honest_grant = WorkUnit.objects.get(pk=units[0].pk).granted_credit
    assert honest_grant == Decimal("8.333333"), "1 GFLOPS for an hour"
    assert refresh_credit_ratios() == 1

    inflated = {"flops": 5e10, "n_cpus": 256}
    pair = [SignedHost(*make_host(**inflated)) for _ in range(2)]
    paired = make_units(app, 1, min_quorum=2, target_nresults=2, fpops_estimate=DAY_OF_WORK)[0]
    for inflater in pair:
        crunch(inflater, right)
    settle()
    trusted = SignedHost(*make_host(established=True, **inflated))
    HostAppReputation.objects.create(host=trusted.host, app=app, consecutive_valid=50, valid=50)
    monkeypatch.setattr(dispatch, "draw", lambda: 0.99)
    alone = make_units(app, 1, min_quorum=2, target_nresults=2, fpops_estimate=DAY_OF_WORK)[0]
    crunch(trusted, right)
    settle()

    for unit in (paired, alone):
        unit.refresh_from_db()
        assert unit.state == UnitState.DONE
        claims = unit.replicas.exclude(claimed_credit=None).values_list("claimed_credit", flat=True)
        assert min(claims) > 8.34, "they claimed more than honest hosts"
        assert unit.granted_credit <= honest_grant, (unit.granted_credit, honest_grant)


def test_a_dispute_no_established_host_settles_in_time_is_settled_by_anyone_and_punishes_nobody(settings):
    """A young project has no established host: after DISPUTE_WAIT_SECONDS any unrelated host
    may take the reserved replica, the largest group wins, nobody is caught, and the result
    waits for an audit."""
    settings.TESSERA = {**settings.TESSERA, "DISPUTE_WAIT_SECONDS": 0}
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=2)[0]
    honest, liar = SignedHost(*make_host()), SignedHost(*make_host())
    crunch(honest, right)
    crunch(liar, lie)
    settle()
    unit.refresh_from_db()
    assert unit.disputed_at is not None and unit.state == UnitState.ACTIVE

    crunch(SignedHost(*make_host()), right)  # a new host, once the dispute waited long enough
    settle()

    assert output_of(unit) == right(unit.name) and unit.vouched_by_id is None
    assert Replica.objects.get(workunit=unit, host=liar.host).validate_state == ValidateState.INVALID
    assert Host.objects.get(pk=liar.host.pk).caught_at is None, "no established host saw it"
    assert Replica.objects.get(workunit=unit, host=honest.host).validate_state == ValidateState.VALID


def test_a_dispute_waits_for_an_established_host_before_dispute_wait_seconds():
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=2)[0]
    crunch(SignedHost(*make_host()), right)
    crunch(SignedHost(*make_host()), lie)
    settle()

    assert crunch(SignedHost(*make_host()), right) == []
    unit.refresh_from_db()
    assert unit.state == UnitState.ACTIVE


def test_a_replica_whose_output_was_cleaned_up_never_becomes_canonical():
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=2)[0]
    for colluder in (SignedHost(*make_host()) for _ in range(2)):
        crunch(colluder, lie)
    settle()
    auditor, second = established(), established()
    sweep_and_settle()
    audit = crunch(auditor, right)[0]
    settle()
    Replica.objects.filter(pk=audit).update(output_inline=None, output_file="")  # as a clean-up would

    crunch(second, right)
    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE and unit.canonical_replica_id != audit
    assert output_of(unit) == right(unit.name)
    assert Replica.objects.get(pk=audit).validate_state == ValidateState.VALID
