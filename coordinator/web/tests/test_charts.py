"""Charts on the pages: drawn on the server, nothing fetched from elsewhere, numbers beside them."""

import re

import pytest
from django.test import Client
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.accounts.models import Volunteer
from coordinator.testing import SignedHost, make_app, make_host, make_units, make_volunteer
from coordinator.validation.models import LedgerEntry
from coordinator.validation.reversal import reverse_credit
from coordinator.validation.services import validate_due_units
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db


def crunch(volunteer: Volunteer, units: int) -> None:
    """Real credit: units crunched by the volunteer's computer, validated, credited."""
    make_units(make_app(), units, min_quorum=1, target_nresults=1)
    host = SignedHost(*make_host(volunteer))
    tasks = host.rpc(tasks=units).json()["tasks"]
    reports = [Report(replica=t["replica"], status="success", cpu_time=10, output=b"out") for t in tasks]
    assert host.rpc(reports=reports).status_code == 200
    transition_due_units(now=timezone.now())
    assert validate_due_units(now=timezone.now()) == units


def nothing_fetched(page: str) -> None:
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']https?://""", page), "everything comes from this server"


def test_the_status_page_charts_validated_results_per_hour_with_a_table():
    volunteer, _ = make_volunteer("cruncher")
    crunch(volunteer, 3)

    page = Client().get("/status").content.decode()

    nothing_fetched(page)
    assert '<svg role="img" aria-label="Results validated per hour, last 24 hours (UTC)"' in page
    hour = timezone.now().strftime("%H:00")
    assert f'<th scope="row">{hour}</th><td class="num">3</td>' in page


def test_a_volunteers_credit_history_and_their_teams_are_charted():
    volunteer, _ = make_volunteer("cruncher")
    crunch(volunteer, 2)
    client = Client()
    client.force_login(volunteer.user)
    client.post("/teams/new", {"name": "Crunchers"})

    account = client.get("/account").content.decode()
    team = client.get(f"/teams/{Volunteer.objects.get(pk=volunteer.pk).team_id}").content.decode()

    for page in (account, team):
        nothing_fetched(page)
        assert '<svg role="img"' in page and "The numbers behind" in page
    today = timezone.now().strftime("%b %d")
    credit = Volunteer.objects.get(pk=volunteer.pk).total_credit
    assert credit > 0
    shown = re.search(rf'<th scope="row">{today}</th><td class="num">([\d.]+)</td>', account).group(1)
    assert abs(float(shown) - float(credit)) < 0.01
    # The ledger entries behind that credit, each with its hash, and how to check them.
    entries = LedgerEntry.objects.filter(volunteer=volunteer)
    assert entries.count() == 2
    for entry in entries:
        assert f'<code title="{entry.hash}">{entry.hash[:16]}…</code>' in account
    assert "python -m tessera_client.ledger verify ledger.jsonl --public-key" in account


def test_a_reversal_is_listed_beside_the_grant_it_takes_back_and_is_no_validated_result():
    volunteer, _ = make_volunteer("caught")
    crunch(volunteer, 2)
    reversed_grant, kept = LedgerEntry.objects.filter(volunteer=volunteer).order_by("seq")
    [done] = reverse_credit(replica_ids=[reversed_grant.replica_id], now=timezone.now())
    client = Client()
    client.force_login(volunteer.user)

    account = client.get("/account").content.decode()

    rows = {
        int(seq): row for seq, row in re.findall(r'<tr><td class="num">(\d+)</td>(.*?)</tr>', account, re.S)
    }
    assert sorted(rows) == [reversed_grant.seq, kept.seq, done.seq]
    assert "<td>reversal</td>" in rows[done.seq]
    assert f"\u2212{reversed_grant.credit:.6f} reversed (grant #{reversed_grant.seq})" in rows[done.seq]
    assert "<td>grant</td>" in rows[reversed_grant.seq]
    assert f"{reversed_grant.credit:.6f} (reversed by #{done.seq})" in rows[reversed_grant.seq]
    assert "reversed" not in rows[kept.seq]
    total = Volunteer.objects.get(pk=volunteer.pk).total_credit
    assert total == kept.credit
    assert f'<th scope="row">Total credit</th><td class="num">{total:.2f}</td>' in account

    status = Client().get("/status").content.decode()
    hour = timezone.now().strftime("%H:00")
    assert f'<th scope="row">{hour}</th><td class="num">2</td>' in status, "a reversal validates nothing"
