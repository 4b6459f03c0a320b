"""The credit ledger end to end: real grants through the validator, export, verification,
tampering found and named, the database refusing changes, and sealing by the sweep."""

from __future__ import annotations

import base64
import json
import stat
import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from nacl.signing import SigningKey, VerifyKey
from tessera_client import ledger as client_ledger
from tessera_client.ledger import (
    GENESIS_HASH,
    entry_hash,
    reversal_hash,
    seal_message,
    verify_file,
    verify_records,
)
from tessera_client.protocol import Report
from tessera_client.signing import b64decode, b64encode

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.core import keys
from coordinator.core.periodic import SWEEPS
from coordinator.standing import credit
from coordinator.standing.models import CreditDay
from coordinator.testing import SignedHost, make_app, make_host, make_units
from coordinator.validation import tasks
from coordinator.validation.ledger import chain_hash, entry_fields, stamp
from coordinator.validation.management.commands.ledger import export_snapshot
from coordinator.validation.models import LedgerEntry, LedgerHead, LedgerSeal
from coordinator.validation.reversal import Reversal, reverse_credit
from coordinator.validation.services import validate_due_units, validate_units
from coordinator.work.models import Replica, WorkUnit
from coordinator.work.services import transition_due_units

DAY_OF_WORK = 1e9 * 86_400  # 200 cobblestones on the reference machine
# SQLite's RAISE(ABORT) and PostgreSQL's RAISE EXCEPTION … USING ERRCODE 'restrict_violation'
# both arrive as IntegrityError.
REFUSED: dict[str, type[DatabaseError]] = {"sqlite": IntegrityError, "postgresql": IntegrityError}
OTHER_KEY = SigningKey(b"\x5a" * 32)


@pytest.fixture
def project_key(project_key_file: Path) -> SigningKey:
    return keys.create_project_key(project_key_file)


def crunch(host: SignedHost, tasks_wanted: int) -> None:
    """The host takes work and reports the right answer, with its CPU time growing per task,
    a day later (a claim counts no more CPU time than the host held the task for)."""
    got = host.rpc(tasks=tasks_wanted).json()["tasks"]
    a_day_ago = timezone.now() - timedelta(days=1)
    Replica.objects.filter(pk__in=[task["replica"] for task in got]).update(sent_at=a_day_ago)
    reports = [
        Report(
            replica=task["replica"],
            status="success",
            cpu_time=600.0 * (index + 1),
            output=f"right answer for {task['workunit']}".encode(),
        )
        for index, task in enumerate(got)
    ]
    assert len(reports) == tasks_wanted
    assert host.rpc(reports=reports).status_code == 200


@pytest.fixture
def wide_buffer(settings):
    """Hosts take many day-long units at once here, past the work buffer's one per free core."""
    settings.TESSERA = {**settings.TESSERA, "WORK_BUFFER_SECONDS": float("inf")}


def settle() -> None:
    now = timezone.now()
    transition_due_units(now=now)
    validate_due_units(now=now)
    transition_due_units(now=now)


def grant(units: int, hosts: list[SignedHost] | None = None) -> list[SignedHost]:
    """Two hosts of two volunteers compute ``units`` new units alike; the validator grants."""
    make_units(make_app(), units, fpops_estimate=DAY_OF_WORK)
    hosts = hosts or [SignedHost(*make_host(flops=1e9)) for _ in range(2)]
    for host in hosts:
        crunch(host, units)
    settle()
    return hosts


def export(path: Path) -> list[dict[str, Any]]:
    call_command("ledger", "export", "--output", str(path), stdout=StringIO())
    return read(path)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def stored_totals() -> dict[str, Decimal]:
    return {
        str(pk): total
        for pk, total in Volunteer.objects.filter(total_credit__gt=0).values_list("pk", "total_credit")
    }


def verify_command(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("ledger", "verify", str(path), *args, stdout=out)
    return out.getvalue()


# --- a clean export ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_clean_export_verifies_and_its_totals_are_the_volunteers_totals(project_key, tmp_path):
    grant(3)
    path = tmp_path / "ledger.jsonl"

    records = export(path)

    result = verify_file(path, keys.public_key_b64(project_key))
    assert result.ok, result.summary()
    assert (
        (result.entries, result.seals) == (6, 1) == (LedgerEntry.objects.count(), LedgerSeal.objects.count())
    )
    assert result.totals == stored_totals() and len(result.totals) == 2
    assert sum(result.totals.values()) == sum(LedgerEntry.objects.values_list("credit", flat=True))
    assert [r["kind"] for r in records] == ["header"] + ["entry"] * 6 + ["seal", "totals"]
    assert records[0]["public_key"] == keys.public_key_b64(project_key)
    assert records[-2]["seq"] == 6, "an export always ends with a seal on its last entry"

    printed = verify_command(path)
    assert "this project's public key SHA256:" in printed
    assert "ledger verified: 6 entries, 1 seals, 2 volunteers" in printed
    assert client_ledger.main(["verify", str(path)]) == 0


@pytest.mark.django_db
def test_export_seals_an_unsealed_head_and_an_already_sealed_one_is_left_alone(project_key, tmp_path):
    hosts = grant(2)
    out = StringIO()
    call_command("ledger", "seal", stdout=out)
    call_command("ledger", "seal", stdout=out)
    assert out.getvalue().splitlines() == [
        "sealed the ledger's head at entry 4",
        "the ledger's head (entry 4) is already sealed",
    ]
    grant(1, hosts)

    first, second = export(tmp_path / "a.jsonl"), export(tmp_path / "b.jsonl")

    seals = [r["seq"] for r in first if r["kind"] == "seal"]
    assert seals == [4, 6] == list(LedgerSeal.objects.order_by("seq").values_list("seq", flat=True))
    assert [r for r in second if r["kind"] != "header"] == [r for r in first if r["kind"] != "header"]


@pytest.mark.django_db
def test_export_to_standard_output_keeps_the_summary_out_of_the_data(project_key):
    grant(1)
    out, err = StringIO(), StringIO()

    call_command("ledger", "export", stdout=out, stderr=err)

    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert verify_records(records, keys.public_key_b64(project_key)).ok
    assert err.getvalue() == "exported 2 entries and 1 seals to standard output\n"


@pytest.mark.django_db
def test_an_empty_ledger_exports_but_does_not_verify(project_key, tmp_path):
    records = export(tmp_path / "empty.jsonl")
    assert [r["kind"] for r in records] == ["header", "totals"]
    assert records[0]["format"] == "tessera-ledger-v4"
    with pytest.raises(CommandError, match="no entries: the file holds no ledger entry"):
        verify_command(tmp_path / "empty.jsonl")


@pytest.mark.django_db
def test_without_the_key_file_export_and_seal_say_how_to_make_one(project_key_file):
    grant(1)
    for action in ("export", "seal"):
        with pytest.raises(CommandError, match=r"does not exist: create it with `manage.py keys create`"):
            call_command("ledger", action, stdout=StringIO())
    assert not LedgerSeal.objects.exists()


# --- tampering ------------------------------------------------------------------------------


@pytest.fixture
def sealed_export(project_key, tmp_path) -> list[dict[str, Any]]:
    """Six entries of two volunteers, sealed at entry 4 (by hand) and 6 (by the export)."""
    hosts = grant(2)
    call_command("ledger", "seal", stdout=StringIO())
    grant(1, hosts)
    records = export(tmp_path / "ledger.jsonl")
    assert [r["seq"] for r in records if r["kind"] == "seal"] == [4, 6]
    return records


def at(records: list[dict[str, Any]], kind: str, seq: int) -> dict[str, Any]:
    return next(r for r in records if r["kind"] == kind and r["seq"] == seq)


def changed_amount(records):
    at(records, "entry", 2)["credit"] = "500.000000"


def removed_entry(records):
    records.remove(at(records, "entry", 3))


def reordered_pair(records):
    five, six = records.index(at(records, "entry", 5)), records.index(at(records, "entry", 6))
    records[five], records[six] = records[six], records[five]


def changed_signature(records):
    seal = at(records, "seal", 6)
    raw = bytearray(base64.b64decode(seal["signature"]))
    raw[10] ^= 0x40
    seal["signature"] = b64encode(bytes(raw))


def sealed_by_another_key(records):
    seal = at(records, "seal", 4)
    message = seal_message(4, seal["head"], seal["sealed_at"])
    seal["signature"] = b64encode(OTHER_KEY.sign(message).signature)


def forged_and_resealed_with_the_forgers_key_in_the_header(records):
    """Raise an amount, recompute every hash and total, and re-sign every seal with the
    forger's key, which the header now names."""
    forged = at(records, "entry", 2)
    totals = records[-1]["volunteers"]
    volunteer = str(forged["volunteer"])
    totals[volunteer] = f"{Decimal(totals[volunteer]) - Decimal(forged['credit']) + 500:.6f}"
    forged["credit"] = "500.000000"
    prev = GENESIS_HASH
    for record in records:
        if record["kind"] == "entry":
            record["prev"], record["hash"] = prev, entry_hash(record, prev)
            prev = record["hash"]
    heads = {r["seq"]: r["hash"] for r in records if r["kind"] == "entry"}
    for seal in (r for r in records if r["kind"] == "seal"):
        seal["head"] = heads[seal["seq"]]
        message = seal_message(seal["seq"], seal["head"], seal["sealed_at"])
        seal["signature"] = b64encode(OTHER_KEY.sign(message).signature)
    records[0]["public_key"] = b64encode(bytes(OTHER_KEY.verify_key))


def changed_stored_total(records):
    totals = records[-1]["volunteers"]
    first = min(totals)
    totals[first] = f"{Decimal(totals[first]) + 1:.6f}"


# (tamper, first_bad, what the message must say)
TAMPERING: list[tuple[Callable[[list[dict[str, Any]]], None], int | None, str]] = [
    (changed_amount, 2, "at entry 2: its hash does not match its content (changed)"),
    (removed_entry, 4, "at entry 4: expected entry 3 next, found 4 (removed or reordered)"),
    (reordered_pair, 6, "at entry 6: expected entry 5 next, found 6 (removed or reordered)"),
    (changed_signature, 6, "at entry 6: the seal's signature is not the project's"),
    (sealed_by_another_key, 4, "at entry 4: the seal's signature is not the project's"),
    (forged_and_resealed_with_the_forgers_key_in_the_header, 4, "at entry 4: the seal's signature is not"),
    (changed_stored_total, None, "stored total"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tamper", "first_bad", "message"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING]
)
def test_tampering_is_detected_and_the_entry_named(sealed_export, tmp_path, tamper, first_bad, message):
    tamper(sealed_export)
    path = write(tmp_path / "tampered.jsonl", sealed_export)

    result = verify_file(path, keys.project_public_key_b64())

    assert not result.ok
    assert result.first_bad == first_bad, result.problem
    assert message in result.summary()
    with pytest.raises(CommandError) as refused:
        verify_command(path)
    assert message in str(refused.value)
    if first_bad is None:
        volunteer = min(sealed_export[-1]["volunteers"])
        assert f"volunteer {volunteer}: stored total" in str(refused.value)


@pytest.mark.django_db
def test_a_forger_with_their_own_key_fools_only_a_check_that_trusts_the_header(sealed_export, tmp_path):
    forged_and_resealed_with_the_forgers_key_in_the_header(sealed_export)
    path = write(tmp_path / "forged.jsonl", sealed_export)

    assert verify_file(path).ok, "unpinned, the header's key vouches for itself"
    assert client_ledger.main(["verify", str(path)]) == 0
    project = keys.project_public_key_b64()
    assert client_ledger.main(["verify", str(path), "--public-key", project]) == 1
    with pytest.raises(CommandError, match="at entry 4"):
        verify_command(path)


@pytest.mark.django_db
def test_verify_says_which_key_it_checks_against(sealed_export, tmp_path, settings):
    path = write(tmp_path / "ledger.jsonl", sealed_export)
    project = keys.project_public_key_b64()

    assert "this project's public key" in verify_command(path)
    assert "given on the command line" in verify_command(path, "--public-key", project)
    with pytest.raises(CommandError, match="at entry 4: the seal's signature"):
        verify_command(path, "--public-key", b64encode(bytes(OTHER_KEY.verify_key)))
    settings.PROJECT_KEY_FILE = tmp_path / "elsewhere.key"
    assert "checking seals against the key in the file's header" in verify_command(path)
    with pytest.raises(CommandError, match="cannot read"):
        verify_command(tmp_path / "missing.jsonl")


@pytest.mark.django_db
def test_a_malformed_export_is_refused_without_a_traceback(sealed_export, tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sealed_export[:3]) + "{oops\n")
    with pytest.raises(CommandError, match="line 4 is not JSON"):
        verify_command(path)
    write(path, [*sealed_export, [1, 2]])
    with pytest.raises(CommandError, match=r"ledger does NOT verify: a line is not a JSON object"):
        verify_command(path)


# --- the database refuses changes ---------------------------------------------------------


@pytest.mark.django_db
def test_the_database_refuses_to_update_or_delete_a_ledger_entry():
    grant(1)
    before = list(LedgerEntry.objects.order_by("seq").values_list("seq", "volunteer_id", "credit", "hash"))
    entry = LedgerEntry.objects.get(seq=1)
    table = LedgerEntry._meta.db_table
    attempts: list[Callable[[], Any]] = [
        lambda: LedgerEntry.objects.filter(pk=entry.pk).update(credit=Decimal("1000")),
        lambda: LedgerEntry.objects.filter(pk=entry.pk).delete(),
        lambda: LedgerEntry.objects.all().delete(),
        lambda: connection.cursor().execute(f"UPDATE {table} SET volunteer_id = volunteer_id"),
        lambda: connection.cursor().execute(f"DELETE FROM {table} WHERE seq = %s", [entry.seq]),
    ]

    for attempt in attempts:
        refused = REFUSED[connection.vendor]
        with pytest.raises(refused, match="the credit ledger is append-only"), transaction.atomic():
            attempt()

    after = list(LedgerEntry.objects.order_by("seq").values_list("seq", "volunteer_id", "credit", "hash"))
    assert after == before and len(after) == 2


# --- reversals: caught means corrected --------------------------------------------------------


@pytest.fixture
def credited(project_key) -> tuple[Host, Host, Team]:
    """Two units granted to the hosts of two volunteers (entries 1 to 4); the first
    volunteer is in a team."""
    hosts = [SignedHost(*make_host(flops=1e9)) for _ in range(2)]
    team = Team.objects.create(name="Crunchers")
    Volunteer.objects.filter(pk=hosts[0].host.volunteer_id).update(team=team)
    grant(2, hosts)
    return hosts[0].host, hosts[1].host, team


def grants_of(host: Host) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(host=host, kind=LedgerEntry.Kind.GRANT).order_by("seq"))


def standing(host: Host) -> dict[str, Any]:
    """Everything a reversal may change, as the database has it now."""
    host.refresh_from_db()
    volunteer = Volunteer.objects.get(pk=host.volunteer_id)
    return {
        "host": (host.total_credit, host.rac),
        "volunteer": (volunteer.total_credit, volunteer.rac),
        "team": Team.objects.filter(pk=volunteer.team_id).values_list("total_credit", "rac").first(),
        "days": dict(CreditDay.objects.filter(volunteer=volunteer).values_list("day", "credit")),
        "replicas": dict(Replica.objects.filter(host=host).values_list("pk", "granted_credit")),
    }


@pytest.mark.django_db
def test_a_reversal_takes_the_credit_back_everywhere_and_the_chain_still_verifies(
    credited, project_key, tmp_path
):
    cheater, honest, _ = credited
    first, second = grants_of(cheater)
    assert first.credit > 0 and second.credit > 0
    honest_before, before = standing(honest), standing(cheater)
    volunteer_before = Volunteer.objects.get(pk=cheater.volunteer_id)
    later = first.granted_at + timedelta(days=3)

    done = reverse_credit(replica_ids=[first.replica_id], now=later)

    assert done == [
        Reversal(5, first.seq, first.replica_id, first.volunteer_id, cheater.pk, first.unit_id, first.credit)
    ]
    reversal = LedgerEntry.objects.get(seq=5)
    assert (reversal.kind, reversal.reverses, reversal.credit) == ("reversal", first, first.credit)
    assert reversal.granted_at == later and reversal.replica_id == first.replica_id
    assert LedgerHead.objects.get().seq == 5
    after = standing(cheater)
    assert after["host"][0] == before["host"][0] - first.credit == second.credit
    assert after["volunteer"][0] == before["volunteer"][0] - first.credit == second.credit
    assert after["team"][0] == before["team"][0] - first.credit == second.credit
    # RAC keeps the other grant's share, decayed like it: the reversed one's comes off decayed.
    kept = credit.rac_now(volunteer_before.rac, volunteer_before.rac_time, later) * float(
        second.credit / (first.credit + second.credit)
    )
    for name in ("host", "volunteer", "team"):
        assert after[name][1] == pytest.approx(kept, rel=1e-9), name
    # The credit comes off the day it was granted; the day of the reversal gets no row.
    grant_day = first.granted_at.date()
    assert after["days"] == {grant_day: before["days"][grant_day] - first.credit}
    assert after["replicas"] == {**before["replicas"], first.replica_id: None}
    assert standing(honest) == honest_before, "the other volunteer keeps everything"

    records = export(tmp_path / "ledger.jsonl")
    assert records[5] == {
        "kind": "reversal",
        **entry_fields(reversal),
        "reverses": first.seq,
        "prev": LedgerEntry.objects.get(seq=4).hash,
        "hash": reversal.hash,
    }
    assert reversal.hash == reversal_hash(records[5], records[5]["prev"])
    assert (
        reversal.hash
        == chain_hash(reversal, reversal.prev_hash)
        != entry_hash(records[5], records[5]["prev"])
    )
    result = verify_file(tmp_path / "ledger.jsonl", keys.public_key_b64(project_key))
    assert result.ok, result.summary()
    assert (result.entries, result.reversals, result.seals) == (5, 1, 1)
    assert result.totals == stored_totals() and result.totals[str(cheater.volunteer_id)] == second.credit
    printed = verify_command(tmp_path / "ledger.jsonl")
    assert "ledger verified: 5 entries (1 reversals), 1 seals, 2 volunteers" in printed
    assert f"total credit granted, less 1 reversals: {sum(result.totals.values()):.6f}" in printed


@pytest.mark.django_db
def test_reversing_twice_changes_nothing_and_replicas_without_a_grant_are_passed_over(credited, tmp_path):
    cheater, honest, _ = credited
    first, second = grants_of(cheater)
    ungranted = make_units(make_app(), 1)[0].replicas.first()
    assert ungranted is not None and not LedgerEntry.objects.filter(replica=ungranted).exists()
    now = timezone.now()

    done = reverse_credit(replica_ids=[second.replica_id, first.replica_id, ungranted.pk, 10**9], now=now)

    assert [(r.seq, r.reverses) for r in done] == [(5, first.seq), (6, second.seq)], "in chain order"
    after, head = standing(cheater), LedgerHead.objects.get()
    assert after["volunteer"][0] == after["host"][0] == after["team"][0] == 0
    assert after["volunteer"][1] == after["host"][1] == pytest.approx(0.0, abs=1e-9)
    assert min(after["volunteer"][1], after["host"][1], after["team"][1]) >= 0, "RAC never below 0"
    assert not LedgerEntry.objects.filter(replica=ungranted).exists()

    assert reverse_credit(replica_ids=[first.replica_id, second.replica_id], now=now) == []
    assert reverse_credit(replica_ids=[ungranted.pk], now=now) == []
    assert reverse_credit(replica_ids=[], now=now) == []
    assert standing(cheater) == after
    assert LedgerHead.objects.get() == head and LedgerEntry.objects.count() == 6

    path = tmp_path / "ledger.jsonl"
    records = export(path)
    assert [r["reverses"] for r in records if r["kind"] == "reversal"] == [first.seq, second.seq]
    assert str(cheater.volunteer_id) not in records[-1]["volunteers"], "a total of 0 is not listed"
    result = verify_file(path, keys.project_public_key_b64())
    assert result.ok and result.totals[str(cheater.volunteer_id)] == 0, result.summary()
    assert (
        result.totals[str(honest.volunteer_id)] == Volunteer.objects.get(pk=honest.volunteer_id).total_credit
    )


@pytest.mark.django_db
def test_the_database_holds_one_grant_and_one_reversal_per_replica(credited):
    cheater, _, _ = credited
    first, second = grants_of(cheater)
    reverse_credit(replica_ids=[first.replica_id], now=timezone.now())
    head = LedgerHead.objects.get()

    def entry(**fields: Any) -> LedgerEntry:
        values = {
            "seq": head.seq + 1,
            "volunteer_id": first.volunteer_id,
            "host_id": first.host_id,
            "replica_id": first.replica_id,
            "unit_id": first.unit_id,
            "credit": first.credit,
            "granted_at": timezone.now(),
            "prev_hash": head.hash,
            "hash": "f" * 64,
        }
        return LedgerEntry(**{**values, **fields})

    refused = [
        entry(kind="grant"),  # a second grant for the replica
        entry(kind="reversal", reverses_id=first.seq),  # a second reversal of the grant
        entry(kind="reversal", replica_id=second.replica_id, reverses_id=first.seq),  # of a reversed grant
        entry(kind="reversal", replica_id=second.replica_id),  # naming no grant
        entry(kind="grant", replica_id=second.replica_id, reverses_id=second.seq),  # a grant naming one
        entry(kind="reversal", replica_id=second.replica_id, reverses_id=second.seq, credit=Decimal(-1)),
    ]
    for row in refused:
        with pytest.raises(IntegrityError), transaction.atomic():
            row.save()
    assert LedgerEntry.objects.count() == 5


@pytest.mark.django_db
def test_the_database_refuses_to_update_or_delete_a_reversal(credited):
    cheater, _, _ = credited
    first, _ = grants_of(cheater)
    reverse_credit(replica_ids=[first.replica_id], now=timezone.now())
    before = list(
        LedgerEntry.objects.order_by("seq").values_list("seq", "kind", "reverses", "credit", "hash")
    )
    reversal = LedgerEntry.objects.get(kind=LedgerEntry.Kind.REVERSAL)
    attempts: list[Callable[[], Any]] = [
        lambda: LedgerEntry.objects.filter(pk=reversal.pk).update(kind=LedgerEntry.Kind.GRANT, reverses=None),
        lambda: LedgerEntry.objects.filter(pk=reversal.pk).update(credit=Decimal(0)),
        lambda: LedgerEntry.objects.filter(pk=reversal.pk).delete(),
        lambda: LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GRANT).delete(),
    ]

    for attempt in attempts:
        with pytest.raises(REFUSED[connection.vendor], match=r"append-only|protected"), transaction.atomic():
            attempt()

    after = list(LedgerEntry.objects.order_by("seq").values_list("seq", "kind", "reverses", "credit", "hash"))
    assert after == before and [row[1] for row in after] == ["grant"] * 4 + ["reversal"]


# --- the project's key ----------------------------------------------------------------------


def test_keys_create_writes_a_private_file_once_and_show_never_prints_the_private_key(project_key_file):
    out = StringIO()
    call_command("keys", "create", stdout=out)

    assert stat.S_IMODE(project_key_file.stat().st_mode) == 0o600
    key = keys.load_project_key()
    public = keys.public_key_b64(key)
    assert f"public key:  {public}" in out.getvalue()
    with pytest.raises(CommandError, match=r"already exists.*--force"):
        call_command("keys", "create", stdout=StringIO())
    assert keys.load_project_key().encode() == key.encode(), "refused means untouched"

    shown = StringIO()
    call_command("keys", "show", stdout=shown)
    assert f"public key:  {public}" in shown.getvalue()
    assert keys.fingerprint(public) in shown.getvalue()
    assert b64encode(bytes(key)) not in out.getvalue() + shown.getvalue()

    call_command("keys", "create", "--force", stdout=StringIO())
    assert keys.project_public_key_b64() != public
    assert stat.S_IMODE(project_key_file.stat().st_mode) == 0o600
    assert [p.name for p in project_key_file.parent.iterdir()] == [project_key_file.name], "no temporary left"


def test_a_missing_or_broken_key_file_is_a_clear_error(project_key_file):
    with pytest.raises(keys.ProjectKeyMissing, match=str(project_key_file)):
        keys.load_project_key()
    with pytest.raises(CommandError, match="keys create"):
        call_command("keys", "show", stdout=StringIO())
    project_key_file.write_text("not a key\n")
    with pytest.raises(keys.ProjectKeyError, match="does not hold a base64 Ed25519 key"):
        keys.load_project_key()
    with pytest.raises(keys.ProjectKeyExists):
        keys.create_project_key(project_key_file)
    assert project_key_file.read_text() == "not a key\n"


# --- the sealing sweep --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sealing_sweep_seals_the_head_with_the_project_key(project_key):
    assert "coordinator.validation.tasks.seal_ledger" in SWEEPS
    grant(2)
    broker = dramatiq.get_broker()
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        for _ in range(2):
            tasks.seal_ledger.send()
            broker.join(tasks.seal_ledger.queue_name, fail_fast=True, timeout=30_000)
    finally:
        worker.stop()

    seal = LedgerSeal.objects.get()
    head = LedgerHead.objects.get()
    assert (seal.seq, seal.head_hash) == (head.seq, head.hash) == (4, LedgerEntry.objects.get(seq=4).hash)
    message = seal_message(seal.seq, seal.head_hash, stamp(seal.sealed_at))
    VerifyKey(bytes(project_key.verify_key)).verify(message, b64decode(seal.signature))


@pytest.mark.django_db
def test_the_sealing_sweep_without_a_key_file_logs_and_seals_nothing(project_key_file, caplog):
    grant(1)
    tasks.seal_ledger()
    assert not LedgerSeal.objects.exists()
    assert f"no project key file at {project_key_file}" in caplog.text


# --- PostgreSQL: concurrency and the snapshot ------------------------------------------------------


def run_together(*jobs: Callable[[], Any]) -> None:
    """Start the jobs at one moment on their own threads (and connections); re-raise failures."""
    barrier = threading.Barrier(len(jobs))
    failures: list[BaseException] = []

    def run(job: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            job()
        except BaseException as error:  # reported to the test below
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_validation_passes_make_one_gap_free_chain(project_key, tmp_path, wide_buffer):
    units = 40
    make_units(make_app(), units, fpops_estimate=DAY_OF_WORK)
    for _ in range(2):
        crunch(SignedHost(*make_host(flops=1e9, n_cpus=8)), units)  # room for 40 tasks at once
    transition_due_units(now=timezone.now())
    ids = list(WorkUnit.objects.filter(need_validate=True).order_by("id").values_list("id", flat=True))
    assert len(ids) == units

    judged = {"up": 0, "down": 0}

    def validate(name: str, order: list[int]) -> Callable[[], None]:
        def job() -> None:
            for start in range(0, len(order), 3):
                judged[name] += validate_units(unit_ids=order[start : start + 3], now=timezone.now())

        return job

    run_together(validate("up", ids), validate("down", ids[::-1]))

    assert judged["up"] and judged["down"], "both passes granted credit"
    assert judged["up"] + judged["down"] == units and validate_due_units(now=timezone.now()) == 0
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(1, 2 * units + 1))
    prev = GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == prev and entry.hash == entry_hash(entry_fields(entry), prev)
        prev = entry.hash
    head = LedgerHead.objects.get()
    assert (head.seq, head.hash) == (2 * units, prev)
    assert len({e.replica_id for e in entries}) == 2 * units
    export(tmp_path / "ledger.jsonl")
    result = verify_file(tmp_path / "ledger.jsonl", keys.public_key_b64(project_key))
    assert result.ok, result.summary()
    assert result.totals == stored_totals()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_export_reads_one_repeatable_read_snapshot(project_key):
    hosts = grant(1)
    with export_snapshot(), connection.cursor() as cursor:
        cursor.execute("SHOW transaction_isolation")
        assert cursor.fetchone()[0] == "repeatable read"
        cursor.execute("SHOW transaction_read_only")
        assert cursor.fetchone()[0] == "on"
        before = LedgerEntry.objects.count()
        run_together(lambda: grant(1, hosts))
        assert LedgerEntry.objects.count() == before == 2, "grants after the snapshot are not in it"
    assert LedgerEntry.objects.count() == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_reversals_during_validation_passes_make_one_chain_that_verifies(project_key, tmp_path, wide_buffer):
    hosts = grant(2)
    cheater = hosts[0].host
    reversed_replicas = [entry.replica_id for entry in grants_of(cheater)]
    units = 12
    make_units(make_app(), units, fpops_estimate=DAY_OF_WORK)
    for host in hosts:
        crunch(host, units)
    transition_due_units(now=timezone.now())
    ids = list(WorkUnit.objects.filter(need_validate=True).order_by("id").values_list("id", flat=True))
    assert len(ids) == units
    done: list[Reversal] = []

    def validate() -> None:
        for start in range(0, units, 2):
            validate_units(unit_ids=ids[start : start + 2], now=timezone.now())

    def reverse() -> None:
        for replica_id in reversed_replicas:
            done.extend(reverse_credit(replica_ids=[replica_id], now=timezone.now()))

    run_together(validate, reverse)

    assert [r.replica_id for r in done] == reversed_replicas
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(1, 4 + 2 * units + 2 + 1)), "no gap, no duplicate"
    prev = GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == prev and entry.hash == chain_hash(entry, prev)
        prev = entry.hash
    assert (LedgerHead.objects.get().seq, LedgerHead.objects.get().hash) == (entries[-1].seq, prev)
    export(tmp_path / "ledger.jsonl")
    result = verify_file(tmp_path / "ledger.jsonl", keys.public_key_b64(project_key))
    assert result.ok and result.reversals == 2, result.summary()
    assert result.totals == stored_totals()
    cheater.refresh_from_db()
    assert cheater.total_credit == sum(e.credit for e in grants_of(cheater)) - sum(r.credit for r in done)
