"""BOINC's account pages and keys (docs/boinc.md, "Accounts"): the master page, the project
config, lookup_account.php and create_account.php, answered in BOINC's XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from coordinator.accounts.models import Volunteer
from coordinator.boinc import accounts
from coordinator.boinc.models import BoincAccess, BoincAccountKey
from coordinator.testing import PASSWORD, make_volunteer

pytestmark = pytest.mark.django_db
EMAIL = "Marie@Example.org"


def xml(response) -> ET.Element:
    assert response.status_code == 200
    return ET.fromstring(response.content)


def test_the_master_page_names_the_scheduler_as_the_client_reads_it(client: Client):
    page = client.get("/boinc/").content.decode()

    lines = page.splitlines()
    assert '<link rel="boinc_scheduler" href="http://testserver/boinc/cgi">' in lines
    assert any("<scheduler>http://testserver/boinc/cgi</scheduler>" in line for line in lines)
    assert all(len(line.encode()) < 256 for line in lines), "the client reads lines of 256 bytes"


def test_the_project_config_follows_the_sign_up_setting(client: Client, settings):
    config = xml(client.get("/boinc/get_project_config.php"))
    assert config.findtext("master_url") == "http://testserver/boinc/"
    assert config.find("account_creation_disabled") is None

    settings.TESSERA = {**settings.TESSERA, "SIGNUP_OPEN": False}
    assert xml(client.get("/boinc/get_project_config.php")).find("account_creation_disabled") is not None


def enabled_volunteer() -> Volunteer:
    volunteer, _ = make_volunteer()
    get_user_model().objects.filter(pk=volunteer.pk).update(email=EMAIL)
    volunteer.user.refresh_from_db()
    accounts.enable_access(volunteer=volunteer, password=PASSWORD, now=timezone.now())
    return volunteer


def lookup(client: Client, email: str, hashed: str) -> ET.Element:
    return xml(client.get("/boinc/lookup_account.php", {"email_addr": email, "passwd_hash": hashed}))


def test_lookup_hands_out_a_new_key_for_the_right_hash_and_nothing_else(client: Client):
    volunteer = enabled_volunteer()

    found = lookup(client, "marie@example.org", accounts.passwd_hash(PASSWORD, EMAIL))
    key = found.findtext("authenticator")

    assert key and len(key) == 32 and accounts.key_holder(key).volunteer == volunteer
    assert not BoincAccountKey.objects.filter(key_hash=key).exists(), "kept as its SHA-256 only"
    wrong = lookup(client, EMAIL, accounts.passwd_hash("not the password", EMAIL))
    assert wrong.tag == "error" and wrong.findtext("error_num") == "-206"
    unknown = lookup(client, "nobody@example.org", accounts.passwd_hash(PASSWORD, "nobody@example.org"))
    assert unknown.findtext("error_num") == "-206", "the same answer: no telling which emails exist"
    malformed = lookup(client, EMAIL, "not-a-hash")
    assert malformed.tag == "error"


def test_turning_access_off_drops_the_verifier_and_every_key(client: Client):
    volunteer = enabled_volunteer()
    key = lookup(client, EMAIL, accounts.passwd_hash(PASSWORD, EMAIL)).findtext("authenticator")

    accounts.disable_access(volunteer=volunteer, now=timezone.now())

    assert lookup(client, EMAIL, accounts.passwd_hash(PASSWORD, EMAIL)).findtext("error_num") == "-206"
    with pytest.raises(Exception, match="account key"):
        accounts.key_holder(key)


def test_access_needs_the_password_and_never_keeps_more_than_the_newest_keys():
    volunteer, _ = make_volunteer()
    with pytest.raises(Exception, match="password"):
        accounts.enable_access(volunteer=volunteer, password="wrong", now=timezone.now())
    assert not BoincAccess.objects.exists()

    issued = [
        accounts.issue_key(volunteer=volunteer, now=timezone.now(), issued_by="test") for _ in range(22)
    ]

    live = BoincAccountKey.objects.filter(volunteer=volunteer, revoked=None).count()
    assert live == accounts.MAX_KEYS
    with pytest.raises(Exception, match="account key"):
        accounts.key_holder(issued[0])
    assert accounts.key_holder(issued[-1]).volunteer == volunteer


def create(client: Client, **query: str) -> ET.Element:
    base = {"email_addr": "ada@example.org", "passwd_hash": accounts.passwd_hash("pw", "ada@example.org")}
    return xml(client.get("/boinc/create_account.php", {**base, "user_name": "ada", **query}))


def test_create_account_makes_a_volunteer_with_boinc_access_while_sign_up_is_open(client: Client, settings):
    made = create(client)

    volunteer = accounts.key_holder(made.findtext("authenticator")).volunteer
    assert volunteer.user.username == "ada" and not volunteer.user.has_usable_password()
    assert (
        lookup(client, "ada@example.org", accounts.passwd_hash("pw", "ada@example.org")).tag == "account_out"
    )
    assert create(client, user_name="ada2").findtext("error_num") == "-137", "the email is taken"
    assert create(client, email_addr="b@example.org", user_name="bad name!").tag == "error"
    settings.TESSERA = {**settings.TESSERA, "SIGNUP_OPEN": False}
    closed = create(client, email_addr="c@example.org", user_name="cecilia")
    assert closed.findtext("error_num") == "-208"
    assert Volunteer.objects.count() == 1


def test_the_sign_up_api_follows_the_same_setting(client: Client, settings):
    settings.TESSERA = {**settings.TESSERA, "SIGNUP_OPEN": False}

    response = client.post(
        "/api/v1/volunteers",
        {"username": "zed", "password": "long-enough-password-1842"},
        content_type="application/json",
    )

    assert response.status_code == 403 and response.json()["error"] == "signup_closed"


def test_the_account_page_turns_boinc_access_on_shows_a_key_once_and_turns_it_off():
    volunteer, _ = make_volunteer()
    page = Client()
    page.force_login(volunteer.user)

    refused = page.post("/account/boinc", {"action": "enable", "password": "wrong"}, follow=True)
    assert "BOINC access is still off" in refused.content.decode() and not BoincAccess.objects.exists()
    page.post("/account/boinc", {"action": "enable", "password": PASSWORD})
    shown = page.get("/account").content.decode()
    again = page.get("/account").content.decode()

    command = next(line for line in shown.splitlines() if "boinccmd --project_attach" in line)
    key = command.split()[-1].split("<")[0]
    assert accounts.key_holder(key).volunteer == volunteer
    assert "boinccmd --project_attach" not in again, "shown once"
    page.post("/account/boinc", {"action": "disable"})
    with pytest.raises(Exception, match="account key"):
        accounts.key_holder(key)
    assert not BoincAccess.objects.exists()


def test_a_volunteer_can_leave_the_leaderboards_and_stats_export_from_the_account_page():
    volunteer, _ = make_volunteer()
    page = Client()
    page.force_login(volunteer.user)

    page.post("/account", {"listed": "no"})
    assert not Volunteer.objects.get(pk=volunteer.pk).listed
    assert "List me on the leaderboards and in the stats export" in page.get("/account").content.decode()
    page.post("/account", {"listed": "yes"})
    assert Volunteer.objects.get(pk=volunteer.pk).listed


def test_guessing_passwords_through_lookup_is_limited_per_address_as_on_the_sign_in_pages(
    client: Client, settings
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "token": "3/hour"},
    }
    enabled_volunteer()
    for guess in ("one", "two", "three"):
        assert lookup(client, EMAIL, accounts.passwd_hash(guess, EMAIL)).findtext("error_num") == "-206"

    right = lookup(client, EMAIL, accounts.passwd_hash(PASSWORD, EMAIL))

    assert right.tag == "error" and "Too many wrong passwords" in right.findtext("error_msg")
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    assert lookup(elsewhere, EMAIL, accounts.passwd_hash(PASSWORD, EMAIL)).tag == "account_out"
