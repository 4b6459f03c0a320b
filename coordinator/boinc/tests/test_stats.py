"""BOINC's statistics export (coordinator.boinc.stats): the files BOINC's db_dump writes, with
credit granted for real by the validator, read back with strict parsers."""

from __future__ import annotations

import gzip
import hashlib
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.boinc import stats
from coordinator.boinc.models import BoincHost
from coordinator.testing import SignedHost, make_app, make_host, make_units, make_volunteer
from coordinator.validation.models import LedgerEntry
from coordinator.validation.reversal import reverse_credit
from coordinator.validation.services import validate_due_units
from coordinator.work.models import Replica
from coordinator.work.services import transition_due_units

DAY_OF_WORK = 1e9 * 86_400
CLIENT_CPID = "0123456789abcdef0123456789abcdef"
ODD_NAME = "Zoë <b>&amp; Ñandú</b> & co"
ODD_TEAM = "Équipe <日本> & «frères»"


def crunch(host: SignedHost, tasks_wanted: int) -> None:
    """The host takes work and reports the right answer a day later."""
    got = host.rpc(tasks=tasks_wanted).json()["tasks"]
    Replica.objects.filter(pk__in=[task["replica"] for task in got]).update(
        sent_at=timezone.now() - timedelta(days=1)
    )
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


def grant(units: int, hosts: list[SignedHost]) -> None:
    """The hosts compute ``units`` new units alike; the validator grants each its credit."""
    make_units(make_app(), units, fpops_estimate=DAY_OF_WORK)
    for host in hosts:
        crunch(host, units)
    now = timezone.now()
    transition_due_units(now=now)
    validate_due_units(now=now)
    transition_due_units(now=now)


def signed(volunteer: Volunteer, **fields: object) -> SignedHost:
    return SignedHost(*make_host(volunteer, flops=1e9, **fields))


def set_user(volunteer: Volunteer, **fields: object) -> None:
    get_user_model().objects.filter(pk=volunteer.pk).update(**fields)


@dataclass
class World:
    alice: Volunteer  # listed, odd name, mixed-case email, a BOINC host with an odd CPU
    bob: Volunteer  # listed, founded a team
    carol: Volunteer  # unlisted, founded alice's team
    dave: Volunteer  # inactive account
    erin: Volunteer  # listed, in alice's team, no credit
    team: Team  # alice's, carol's and erin's
    bobs_team: Team
    alice_host: Host
    alice_boinc_host: Host
    carol_host: Host


@pytest.fixture
def world() -> World:
    alice, bob, carol, dave, erin = (make_volunteer()[0] for _ in range(5))
    set_user(alice, username=ODD_NAME, email="Alice.Smith@Example.ORG")
    set_user(bob, email="bob@example.org")
    set_user(carol, email="carol@example.org")
    team = Team.objects.create(name=ODD_TEAM, founder=carol.user)
    bobs_team = Team.objects.create(name="Bob's", founder=bob.user)
    Volunteer.objects.filter(pk__in=[alice.pk, carol.pk, erin.pk]).update(team=team)
    Volunteer.objects.filter(pk=bob.pk).update(team=bobs_team)
    Volunteer.objects.filter(pk=carol.pk).update(listed=False)
    hosts = {
        "alice": signed(alice, cpu_vendor="AuthenticAMD", cpu_model="Ryzen\x0b <9> & 7950X"),
        "alice_boinc": signed(alice, os_name="Linux", os_version="6.8"),
        "bob": signed(bob),
        "carol": signed(carol),
        "dave": signed(dave),
    }
    BoincHost.objects.create(host=hosts["alice_boinc"].host, host_cpid=CLIENT_CPID, client_version="7.24.1")
    grant(2, [hosts["alice"], hosts["bob"]])
    grant(1, [hosts["alice_boinc"], hosts["carol"]])
    grant(1, [hosts["dave"], hosts["bob"]])
    # One of alice's grants found wrong afterwards: the ledger holds its reversal.
    first = LedgerEntry.objects.filter(host=hosts["alice"].host).order_by("seq").first()
    assert first is not None
    reverse_credit(replica_ids=[first.replica_id], now=timezone.now())
    set_user(dave, is_active=False)
    for volunteer in (alice, bob, carol, dave, erin):
        volunteer.refresh_from_db()
    team.refresh_from_db()
    bobs_team.refresh_from_db()
    return World(
        alice=alice,
        bob=bob,
        carol=carol,
        dave=dave,
        erin=erin,
        team=team,
        bobs_team=bobs_team,
        alice_host=hosts["alice"].host,
        alice_boinc_host=hosts["alice_boinc"].host,
        carol_host=hosts["carol"].host,
    )


def read_gz(path: Path) -> ET.Element:
    """The file's root, read by both strict parsers after checking it is gzip."""
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b", f"{path.name} is not gzip"
    data = gzip.decompress(raw)
    SafeET.fromstring(data)
    return ET.fromstring(data)


def by_id(root: ET.Element) -> dict[int, ET.Element]:
    return {int(child.findtext("id", "")): child for child in root}


def ledger_credit(volunteer_ids: list[int]) -> Decimal:
    """What the ledger says these volunteers hold: their grants less their reversals."""
    entries = LedgerEntry.objects.filter(volunteer_id__in=volunteer_ids)
    granted = entries.filter(kind=LedgerEntry.Kind.GRANT).aggregate(s=Sum("credit"))["s"] or Decimal(0)
    reversed_ = entries.filter(kind=LedgerEntry.Kind.REVERSAL).aggregate(s=Sum("credit"))["s"] or Decimal(0)
    return granted - reversed_


def export(folder: Path) -> dict[str, int]:
    folder.mkdir(exist_ok=True)
    return stats.export_stats(folder, now=timezone.now())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder for the files (tmp_path holds the media folder too)."""
    made = tmp_path / "stats"
    made.mkdir()
    return made


# --- the files ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_files_are_gzip_and_plain_xml_that_strict_parsers_read(world, folder):
    now = timezone.now()

    counts = stats.export_stats(folder, now=now)

    files = ["host.gz", "tables.xml", "team.gz", "user.gz", "user_deleted.gz"]
    assert sorted(p.name for p in folder.iterdir()) == files
    assert read_gz(folder / "user_deleted.gz").tag == "users_deleted" and counts["users_deleted"] == 0
    roots = {name: read_gz(folder / f"{name[:-1]}.gz") for name in ("users", "teams", "hosts")}
    for tag, root in roots.items():
        assert root.tag == tag and {child.tag for child in root} == {tag[:-1]}
        assert len(root) == counts[tag]
    assert counts == {"users": 2, "teams": 2, "hosts": 3, "users_deleted": 0}
    raw = (folder / "tables.xml").read_bytes()
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<tables>')
    SafeET.fromstring(raw)
    tables = ET.fromstring(raw)
    assert int(tables.findtext("update_time", "")) == int(now.timestamp())
    assert int(tables.findtext("nusers_total", "")) == 2
    assert int(tables.findtext("nteams_total", "")) == 2
    assert int(tables.findtext("nhosts_total", "")) == 3
    assert Decimal(tables.findtext("total_credit", "")) == world.alice.total_credit + world.bob.total_credit
    assert len(tables.findall("applications/application/name")) == 3
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


@pytest.mark.django_db
def test_users_hold_the_ledgers_credit_and_the_unlisted_and_inactive_are_left_out(world, folder):
    export(folder)
    users = by_id(read_gz(folder / "user.gz"))

    listed = [world.alice.pk, world.bob.pk]
    assert sorted(users) == listed, "carol is unlisted, dave inactive, erin has no credit"
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSAL, volunteer=world.alice).exists()
    exported = sum((Decimal(u.findtext("total_credit", "")) for u in users.values()), Decimal(0))
    assert exported == ledger_credit(listed) > 0
    for volunteer in (world.alice, world.bob):
        user = users[volunteer.pk]
        assert Decimal(user.findtext("total_credit", "")) == ledger_credit([volunteer.pk])
        assert float(user.findtext("expavg_credit", "")) == pytest.approx(volunteer.rac, abs=1e-6)
        assert volunteer.rac_time is not None
        assert float(user.findtext("expavg_time", "")) == pytest.approx(
            volunteer.rac_time.timestamp(), abs=1e-6
        )
        assert int(user.findtext("create_time", "")) == int(volunteer.created.timestamp())
    assert users[world.alice.pk].findtext("teamid") == str(world.team.pk)
    assert users[world.bob.pk].findtext("teamid") == str(world.bobs_team.pk)
    # carol and dave have credit of their own: left out, not lost.
    assert world.carol.total_credit > 0 and world.dave.total_credit > 0


@pytest.mark.django_db
def test_the_cpid_is_md5_of_the_cross_project_id_and_the_email_and_stays_the_same(world, folder):
    assert Volunteer.objects.get(pk=world.alice.pk).cross_project_id == ""
    export(folder / "first")
    export(folder / "second")

    first = by_id(read_gz(folder / "first" / "user.gz"))
    second = by_id(read_gz(folder / "second" / "user.gz"))
    for volunteer_id, user in first.items():
        volunteer = Volunteer.objects.select_related("user").get(pk=volunteer_id)
        cross_project_id = volunteer.cross_project_id
        assert len(cross_project_id) == 32 and int(cross_project_id, 16) >= 0
        email = volunteer.user.email.lower()
        expected = hashlib.md5((cross_project_id + email).encode()).hexdigest()
        assert user.findtext("cpid") == expected == second[volunteer_id].findtext("cpid")
    assert first[world.alice.pk].findtext("cpid") != first[world.bob.pk].findtext("cpid")
    # Only the volunteers listed got one, and the second export made no new ones.
    assert set(Volunteer.objects.exclude(cross_project_id="").values_list("pk", flat=True)) == set(first)
    assert stats.ensure_cross_project_ids() == 0


@pytest.mark.django_db
def test_a_volunteer_still_without_a_cross_project_id_waits_for_the_next_export(world, folder, monkeypatch):
    """Credit that arrives between filling the ids and reading the rows: never a CPID that is
    a plain hash of the email."""
    monkeypatch.setattr(stats, "ensure_cross_project_ids", lambda: 0)
    Volunteer.objects.filter(pk=world.bob.pk).update(cross_project_id="ab" * 16)

    counts = export(folder)

    assert sorted(by_id(read_gz(folder / "user.gz"))) == [world.bob.pk] and counts["users"] == 1
    tables = ET.fromstring((folder / "tables.xml").read_bytes())
    assert Decimal(tables.findtext("total_credit", "")) == world.bob.total_credit


@pytest.mark.django_db
def test_names_with_markup_and_non_ascii_are_escaped_and_come_back(world, folder):
    export(folder)

    users_xml = gzip.decompress((folder / "user.gz").read_bytes())
    assert "<name>Zoë &lt;b&gt;&amp;amp; Ñandú&lt;/b&gt; &amp; co</name>".encode() in users_xml
    assert by_id(ET.fromstring(users_xml))[world.alice.pk].findtext("name") == ODD_NAME
    team = by_id(read_gz(folder / "team.gz"))[world.team.pk]
    assert team.findtext("name") == ODD_TEAM
    host = by_id(read_gz(folder / "host.gz"))[world.alice_host.pk]
    assert host.findtext("p_model") == "Ryzen <9> & 7950X", "a character XML cannot hold is dropped"


@pytest.mark.django_db
def test_hosts_of_listed_volunteers_with_their_boinc_cpid(world, folder):
    export(folder)
    hosts = by_id(read_gz(folder / "host.gz"))

    assert world.carol_host.pk not in hosts, "an unlisted volunteer's hosts are left out"
    assert {int(h.findtext("userid", "")) for h in hosts.values()} == {world.alice.pk, world.bob.pk}
    boinc = hosts[world.alice_boinc_host.pk]
    expected = hashlib.md5((CLIENT_CPID + "alice.smith@example.org").encode()).hexdigest()
    assert boinc.findtext("host_cpid") == expected
    assert boinc.findtext("boinc_version") == "7.24.1"
    assert (boinc.findtext("os_name"), boinc.findtext("os_version")) == ("Linux", "6.8")
    own = hosts[world.alice_host.pk]
    assert own.find("host_cpid") is None and own.find("boinc_version") is None
    assert own.findtext("p_vendor") == "AuthenticAMD"
    for host in Host.objects.filter(pk__in=hosts):
        exported = hosts[host.pk]
        assert Decimal(exported.findtext("total_credit", "")) == host.total_credit > 0
        assert int(exported.findtext("create_time", "")) == int(host.created.timestamp())
        assert int(exported.findtext("ncpus", "")) == host.n_cpus
    credit_of_exported_hosts = sum(Host.objects.filter(pk__in=hosts).values_list("total_credit", flat=True))
    assert credit_of_exported_hosts == ledger_credit([world.alice.pk, world.bob.pk])


@pytest.mark.django_db
def test_teams_keep_their_totals_and_count_only_listed_members(world, folder):
    export(folder)
    teams = by_id(read_gz(folder / "team.gz"))

    team = teams[world.team.pk]
    assert Decimal(team.findtext("total_credit", "")) == world.team.total_credit
    assert world.team.total_credit == world.alice.total_credit + world.carol.total_credit
    assert team.findtext("nusers") == "2", "alice and erin; carol is unlisted"
    assert team.findtext("type") == "1"
    assert team.findtext("userid") == "0" and team.find("founder_name") is None, "carol is unlisted"
    assert int(team.findtext("create_time", "")) == int(world.team.created.timestamp())
    assert team.find("country") is not None
    bobs = teams[world.bobs_team.pk]
    assert bobs.findtext("userid") == str(world.bob.pk)
    assert bobs.findtext("founder_name") == world.bob.user.username
    assert bobs.findtext("nusers") == "1"


# --- the command and its atomicity --------------------------------------------------------


@pytest.mark.django_db
def test_the_command_makes_the_folder_and_prints_the_counts(world, folder):
    out = StringIO()
    folder = folder / "stats" / "today"

    call_command("boinc_stats", str(folder), stdout=out)

    assert out.getvalue() == f"wrote 2 users, 2 teams and 3 hosts to {folder}\n"
    assert len(read_gz(folder / "user.gz")) == 2


@pytest.mark.django_db
def test_a_failed_export_leaves_the_last_files_as_they_were(world, folder, monkeypatch):
    export(folder)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    Volunteer.objects.filter(pk=world.carol.pk).update(listed=True)

    def broken() -> object:
        yield from ()
        raise OSError("disk full")

    monkeypatch.setattr(stats, "host_records", broken)
    with pytest.raises(OSError, match="disk full"):
        stats.export_stats(folder, now=timezone.now())

    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before, "no temporary files left"
