"""A volunteer's consent at sign-up, the leaderboards that honour it, and the download of
everything the project holds about them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client

from coordinator.accounts.models import Host, Volunteer
from coordinator.testing import PASSWORD, SignedHost, make_app, make_host, make_units, make_volunteer
from coordinator.validation.selectors import UNLISTED_HOST

pytestmark = pytest.mark.django_db

FORM = {"username": "ada", "password": PASSWORD, "password_again": PASSWORD}


def test_the_sign_up_page_asks_and_records_both_answers(client):
    client.post("/signup", {**FORM, "listed": "on", "email_ok": "on"})
    client.post("/signup", {**FORM, "username": "grace"}, REMOTE_ADDR="10.1.2.3")

    ada, grace = (Volunteer.objects.get(user__username=name) for name in ("ada", "grace"))
    assert (ada.listed, ada.email_ok) == (True, True) and ada.consent_at is not None
    assert (grace.listed, grace.email_ok) == (False, False) and grace.consent_at is not None, "unticked: no"


def test_the_api_lists_no_one_who_did_not_say_so():
    def signup(name: str, **answers: bool) -> Volunteer:
        reply = Client().post(
            "/api/v1/volunteers", {"username": name, "password": PASSWORD, **answers}, "application/json"
        )
        assert reply.status_code == 201, reply.content
        return Volunteer.objects.get(pk=reply.json()["volunteer_id"])

    assert signup("quiet").listed is False
    agreed = signup("loud", listed=True, email_ok=True)
    assert (agreed.listed, agreed.email_ok) == (True, True)
    reply = Client().post(
        "/api/v1/volunteers", {"username": "odd", "password": PASSWORD, "listed": "maybe"}, "application/json"
    )
    assert reply.status_code == 400 and not Volunteer.objects.filter(user__username="odd").exists()


def credited(name: str, credit: str, *, listed: bool) -> Host:
    volunteer, _ = make_volunteer(name)
    Volunteer.objects.filter(pk=volunteer.pk).update(listed=listed, total_credit=Decimal(credit))
    host, _ = make_host(volunteer, name=f"{name}-laptop")
    Host.objects.filter(pk=host.pk).update(total_credit=Decimal(credit))
    return host


def test_the_leaderboards_leave_out_and_unname_whoever_is_not_listed(client):
    credited("shown", "10", listed=True)
    hidden = credited("hidden", "20", listed=False)

    volunteers = client.get("/api/v1/leaderboards/volunteers").json()["results"]
    assert [row["name"] for row in volunteers] == ["shown"]
    hosts = client.get("/api/v1/leaderboards/hosts").json()["results"]
    assert (
        hosts[0]["name"] == UNLISTED_HOST
        and hosts[0]["volunteer_id"] is None
        and hosts[0]["volunteer_name"] is None
    )
    assert hosts[1]["name"] == "shown-laptop" and hosts[1]["volunteer_name"] == "shown"
    for board in ("volunteers", "hosts"):
        page = client.get(f"/leaderboards/{board}").content.decode()
        assert "hidden" not in page and "shown" in page
    owner = Client()
    owner.login(username="hidden", password=PASSWORD)
    assert "hidden-laptop" in owner.get("/leaderboards/hosts").content.decode(), "its owner still sees it"
    assert Host.objects.get(pk=hidden.pk).volunteer.listed is False


def test_a_volunteer_downloads_everything_held_about_them_and_nothing_of_anyone_else(client):
    volunteer, _ = make_volunteer("ada")
    Volunteer.objects.filter(pk=volunteer.pk).update(science={"": {"apps": None, "beta": True}})
    mine = SignedHost(*make_host(volunteer, name="ada-laptop"))
    theirs = SignedHost(*make_host(make_volunteer("grace")[0], name="grace-pc"))
    make_units(make_app(), 4, min_quorum=1, target_nresults=1)
    mine.rpc(tasks=2)
    theirs.rpc(tasks=2)
    client.login(username="ada", password=PASSWORD)

    reply = client.get("/account/data")

    assert reply.status_code == 200 and reply["Content-Disposition"].startswith("attachment;")
    data = json.loads(b"".join(reply.streaming_content))
    assert data["account"]["user"]["username"] == "ada" and "password" not in data["account"]["user"]
    assert "token_hash" not in data["account"]["volunteer"] and data["account"]["volunteer"]["science"]
    assert [host["name"] for host in data["hosts"]] == ["ada-laptop"] and data["hosts"][0]["public_key"]
    assert len(data["results"]) == 2 and {r["host_id"] for r in data["results"]} == {mine.host.pk}
    assert data["ledger"] == []
    assert "grace" not in json.dumps(data)
    assert Client().get("/account/data").status_code == 302, "only for the signed-in volunteer"
