"""Deleting an account, as its owner or an admin on their request: the name leaves every page,
answer and export, the computers stop, and the ledger still verifies."""

from __future__ import annotations

import gzip
import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from tessera_client import ledger as client_ledger

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.boinc.models import BoincAccountKey
from coordinator.community.models import DeletedAccount
from coordinator.testing import PASSWORD, assert_error
from coordinator.validation.models import LedgerEntry
from coordinator.validation.tests.test_ledger import grant, project_key  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db
NAME = "adalovelace"


@pytest.fixture
def ada(project_key) -> dict:  # noqa: F811
    """A credited volunteer with a computer, a team, an email and a BOINC key, and another one."""
    hosts = grant(2)
    mine = hosts[0]
    volunteer = Volunteer.objects.get(pk=mine.host.volunteer_id)
    user = volunteer.user
    user.username, user.email = NAME, "ada@example.org"
    user.set_password(PASSWORD)
    user.save()
    team = Team.objects.create(name="Analytical")
    Volunteer.objects.filter(pk=volunteer.pk).update(
        team=team, cross_project_id="ab" * 16, listed=True, signup_network="198.51.100.0/24"
    )
    Host.objects.filter(pk=mine.host.pk).update(name="ada-engine")
    BoincAccountKey.objects.create(
        volunteer=volunteer, key_hash="0" * 64, created=user.date_joined, issued_by="test"
    )
    return {"volunteer": volunteer, "host": mine, "other": hosts[1], "team": team}


def everything_public(client: Client, team: Team) -> str:
    pages = ["/status", "/leaderboards/volunteers", "/leaderboards/hosts", f"/teams/{team.pk}", "/notices"]
    api = ["/api/v1/leaderboards/volunteers", "/api/v1/leaderboards/hosts", "/api/v1/leaderboards/teams"]
    return " ".join(client.get(path).content.decode() for path in pages + api)


def test_deleting_an_account_erases_the_name_everywhere_and_the_ledger_still_verifies(client, ada, tmp_path):
    volunteer, host = ada["volunteer"], ada["host"]
    before = list(LedgerEntry.objects.order_by("seq").values_list("seq", "volunteer_id", "credit"))
    assert NAME in everything_public(Client(), ada["team"]) and "ada-engine" in everything_public(
        Client(), ada["team"]
    )
    client.login(username=NAME, password=PASSWORD)

    refused = client.post("/account/delete", {"password": "not it", "sure": "on"})
    assert refused.status_code == 400 and Volunteer.objects.get(pk=volunteer.pk).user.username == NAME
    deleted = client.post("/account/delete", {"password": PASSWORD, "sure": "on"})

    assert deleted.status_code == 200 and "Your account is deleted" in deleted.content.decode()
    shown = everything_public(Client(), ada["team"])
    assert NAME not in shown and "ada-engine" not in shown and "ada@example.org" not in shown
    assert Client().get(f"/api/v1/volunteers/{volunteer.pk}/credit-history").status_code == 404
    assert not Client().login(username=NAME, password=PASSWORD)
    assert client.get("/account").status_code == 302, "signed out"
    assert_error(host.rpc(tasks=1), 401, "account_disabled")  # its computers stop

    gone = Volunteer.objects.select_related("user").get(pk=volunteer.pk)
    assert (
        gone.user.username == f"deleted:{volunteer.pk}" and gone.user.email == "" and not gone.user.is_active
    )
    assert (gone.token_hash, gone.team_id, gone.listed, gone.cross_project_id) == (None, None, False, "")
    assert gone.signup_network == "198.51.100.0/24", "what relates it to a ring stays"
    assert not BoincAccountKey.objects.filter(volunteer=volunteer).exists()
    assert list(LedgerEntry.objects.order_by("seq").values_list("seq", "volunteer_id", "credit")) == before
    path = tmp_path / "ledger.jsonl"
    call_command("ledger", "export", "--output", str(path), stdout=StringIO())
    assert NAME not in path.read_text() and client_ledger.main(["verify", str(path)]) == 0

    record = DeletedAccount.objects.get(volunteer=volunteer)
    assert record.by == "volunteer" and len(record.cpid) == 32
    call_command("boinc_stats", str(tmp_path), stdout=StringIO())
    assert NAME not in gzip.decompress((tmp_path / "user.gz").read_bytes()).decode()
    listed = gzip.decompress((tmp_path / "user_deleted.gz").read_bytes()).decode()
    assert f"<id>{volunteer.pk}</id>" in listed and f"<cpid>{record.cpid}</cpid>" in listed


def test_an_admin_deletes_an_account_on_request_and_again_changes_nothing(client, ada):
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "long-enough-password-1842")
    client.force_login(admin)
    volunteer = ada["volunteer"]
    action = {"action": "delete_accounts", "_selected_action": [str(volunteer.pk)]}

    assert client.post("/admin/accounts/volunteer/", action).status_code == 302
    first = DeletedAccount.objects.get(volunteer=volunteer)
    client.post("/admin/accounts/volunteer/", action)

    assert (
        first.by == "admin" and DeletedAccount.objects.get(volunteer=volunteer).deleted_at == first.deleted_at
    )
    assert Volunteer.objects.get(pk=volunteer.pk).user.username == f"deleted:{volunteer.pk}"
    other = Volunteer.objects.get(pk=ada["other"].host.volunteer_id)
    assert other.user.is_active and not DeletedAccount.objects.filter(volunteer=other).exists(), (
        "only the chosen"
    )


def test_deletion_needs_the_password_and_the_tick(client, ada):
    client.login(username=NAME, password=PASSWORD)
    assert client.get("/account/delete").status_code == 200, "asking changes nothing"
    assert client.post("/account/delete", {"password": PASSWORD}).status_code == 400
    assert (
        not DeletedAccount.objects.exists() and Volunteer.objects.get(pk=ada["volunteer"].pk).user.is_active
    )
    exported = json.dumps(Client().get("/api/v1/leaderboards/volunteers").json())
    assert NAME in exported
