"""Signing up, the account token shown once, computers, and teams: through the pages."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from coordinator.accounts.models import Team, Volunteer
from coordinator.accounts.services import volunteer_for_token
from coordinator.testing import PASSWORD, make_host, make_volunteer

pytestmark = pytest.mark.django_db
TOKEN = re.compile(r"--token (tsr_[A-Za-z0-9_-]+)")


def sign_up(client: Client, name: str = "ada", **changes) -> object:
    form = {"username": name, "email": "", "password": PASSWORD, "password_again": PASSWORD, **changes}
    return client.post("/signup", form)


def signed_in(volunteer: Volunteer) -> Client:
    client = Client()
    client.force_login(volunteer.user)
    return client


def test_signing_up_shows_the_token_once_and_it_attaches():
    client = Client()
    answer = sign_up(client)
    assert answer.status_code == 302 and answer["Location"] == "/account"

    page = client.get("/account").content.decode()
    token = TOKEN.search(page).group(1)
    assert volunteer_for_token(token).user.username == "ada"
    assert "tessera attach http://testserver --token" in page
    assert not TOKEN.search(client.get("/account").content.decode()), "shown once"


def test_a_new_token_replaces_the_old_one():
    volunteer, old = make_volunteer("grace")
    client = signed_in(volunteer)
    client.post("/account", {"new_token": "1"})
    new = TOKEN.search(client.get("/account").content.decode()).group(1)
    assert new != old and volunteer_for_token(new).pk == volunteer.pk
    with pytest.raises(Exception, match="not valid"):
        volunteer_for_token(old)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"password_again": "something else entirely 9"}, "The two passwords differ."),
        ({"password": "short", "password_again": "short"}, "too short"),
        ({"username": "bad name!"}, "Enter a valid username"),
        ({"username": "x" * 200}, "at most 150 characters"),
        ({"email": "not-an-email"}, "Enter a valid email address"),
    ],
)
def test_bad_signups_are_refused_with_a_clear_message_and_make_nothing(changes, says):
    answer = sign_up(Client(), **changes)
    assert answer.status_code == 400 and says in answer.content.decode()
    assert not get_user_model().objects.exists()


def test_a_taken_name_is_refused():
    make_volunteer("Ada")
    answer = sign_up(Client(), "ada")
    assert answer.status_code == 400 and "is taken" in answer.content.decode()


def test_signups_from_one_address_are_limited(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"signup": "2/hour", "token": "30/hour"},
    }
    assert sign_up(Client(), "one").status_code == 302
    assert sign_up(Client(), "two").status_code == 302
    refused = sign_up(Client(), "three")
    assert refused.status_code == 400 and "Too many accounts" in refused.content.decode()
    assert not get_user_model().objects.filter(username="three").exists()


def test_the_account_page_lists_the_volunteers_computers_only():
    volunteer, _ = make_volunteer("owner")
    make_host(volunteer, name="attic-pc", flops=2.5e9)
    make_host(name="someone-elses")
    page = signed_in(volunteer).get("/account").content.decode()
    assert "attic-pc" in page and "someone-elses" not in page
    assert Client().get("/account").status_code == 302  # to the sign-in page


def test_teams_are_made_joined_and_left():
    founder, _ = make_volunteer("founder")
    joiner, _ = make_volunteer("joiner")
    made = signed_in(founder).post("/teams/new", {"name": "  Night   owls "})
    team = Team.objects.get()
    assert made["Location"] == f"/teams/{team.pk}" and team.name == "Night owls"
    assert Volunteer.objects.get(pk=founder.pk).team == team

    as_joiner = signed_in(joiner)
    assert "Join this team" in as_joiner.get(f"/teams/{team.pk}").content.decode()
    as_joiner.post(f"/teams/{team.pk}/join")
    page = as_joiner.get(f"/teams/{team.pk}").content.decode()
    assert "Leave this team" in page and "joiner" in page and "founder" in page
    as_joiner.post("/teams/leave")
    assert Volunteer.objects.get(pk=joiner.pk).team is None


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("night OWLS", "already a team called"),
        ("x" * 65, "at most 64 characters"),
        ("   ", "This field is required."),
    ],
)
def test_bad_team_names_are_refused(name, says):
    founder, _ = make_volunteer("founder")
    signed_in(founder).post("/teams/new", {"name": "Night owls"})
    answer = signed_in(make_volunteer("other")[0]).post("/teams/new", {"name": name})
    assert answer.status_code == 400 and says in answer.content.decode()
    assert Team.objects.count() == 1


def test_html_in_a_team_name_is_shown_as_text():
    founder, _ = make_volunteer("founder")
    signed_in(founder).post("/teams/new", {"name": "<b>bold</b>"})
    page = Client().get(f"/teams/{Team.objects.get().pk}").content.decode()
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_unknown_teams_are_404_and_joining_needs_a_post():
    volunteer, _ = make_volunteer("someone")
    client = signed_in(volunteer)
    assert Client().get("/teams/999999").status_code == 404
    assert Client().get(f"/teams/{2**70}").status_code == 404
    assert client.post("/teams/999999/join").status_code == 404
    assert client.get("/teams/1/join").status_code == 405
