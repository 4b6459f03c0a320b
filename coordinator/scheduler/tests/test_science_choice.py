"""A volunteer's choice of science, per venue: the scheduler sends a computer tasks only of the
apps chosen for its place (BOINC's project preferences and venues)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from coordinator.accounts.models import Host, Volunteer
from coordinator.accounts.science_choice import Choice, choice_for, save_choice, with_choice
from coordinator.testing import PASSWORD, SignedHost, make_app, make_host, make_units, make_volunteer
from coordinator.work.models import Replica

pytestmark = pytest.mark.django_db


def test_a_venue_without_its_own_choice_follows_the_default_and_nothing_malformed_counts():
    science = {"": {"apps": [1, 2], "beta": False}, "work": {"apps": [3], "beta": True}}
    assert choice_for(science, "work", False) == Choice(frozenset({3}), True)
    assert choice_for(science, "home", False) == Choice(frozenset({1, 2}), False)
    assert choice_for(science, "", True) == Choice(frozenset({1, 2}), False)
    assert choice_for({}, "home", True) == Choice(None, True), "no choice made: every app, beta as set"
    for broken in (None, [], "x", {"": "x"}, {"": {"apps": "1"}}, {"home": {"apps": None}}):
        assert choice_for(broken, "", False).apps is None
    assert choice_for({"": {"apps": [1, "2", True, 3.0]}}, "", False).apps == frozenset({1})
    assert choice_for({"": {"apps": [1]}, "nowhere": {"apps": [2]}}, "nowhere", False).apps == frozenset({1})
    with pytest.raises(ValueError):
        with_choice({}, "mars", [1], False)


def test_a_computer_gets_only_the_apps_chosen_for_its_venue():
    chosen, other = make_app("chosen"), make_app("other")
    make_units(chosen, 6, min_quorum=1, target_nresults=1)
    make_units(other, 6, min_quorum=1, target_nresults=1)
    volunteer, _ = make_volunteer()
    save_choice(volunteer.pk, "", [chosen.pk], False, reset=False)
    save_choice(volunteer.pk, "work", [other.pk], False, reset=False)
    at_home = SignedHost(*make_host(volunteer, n_cpus=4))
    at_work = SignedHost(*make_host(volunteer, n_cpus=4))
    Host.objects.filter(pk=at_work.host.pk).update(venue="work")

    home_units = Replica.objects.filter(host=at_home.host.pk)
    assert at_home.rpc(tasks=50).status_code == 200
    assert home_units.exists() and set(home_units.values_list("workunit__app__name", flat=True)) == {"chosen"}
    at_work.rpc(tasks=50)
    work_units = Replica.objects.filter(host=at_work.host.pk)
    assert set(work_units.values_list("workunit__app__name", flat=True)) == {"other"}


def test_a_computer_whose_apps_have_no_work_gets_none_and_hears_why():
    wanted, unwanted = make_app("wanted"), make_app("unwanted")
    make_units(unwanted, 3, min_quorum=1, target_nresults=1)
    volunteer, _ = make_volunteer()
    save_choice(volunteer.pk, "", [wanted.pk], False, reset=False)
    host = SignedHost(*make_host(volunteer))

    reply = host.rpc(tasks=10).json()

    assert reply["tasks"] == [] and not Replica.objects.filter(host=host.host.pk).exists()
    assert any("not among the apps you chose" in message for message in reply["messages"]), reply
    control = SignedHost(*make_host(make_volunteer()[0]))  # the same units go to whoever did not refuse them
    assert len(control.rpc(tasks=10).json()["tasks"]) == 3


def test_without_a_choice_a_computer_gets_every_app():
    for name in ("a1", "a2"):
        make_units(make_app(name), 2, min_quorum=1, target_nresults=1)
    host = SignedHost(*make_host(make_volunteer()[0], n_cpus=4))
    host.rpc(tasks=10)
    sent = Replica.objects.filter(host=host.host.pk)
    assert set(sent.values_list("workunit__app__name", flat=True)) == {"a1", "a2"}


# --- the page -----------------------------------------------------------------------------


@pytest.fixture
def ada(client) -> Volunteer:
    volunteer, _ = make_volunteer("ada")
    client.login(username="ada", password=PASSWORD)
    return volunteer


def test_the_page_saves_a_venue_s_choice_and_moves_a_computer(client, ada):
    first, second = make_app("first"), make_app("second")
    host, _ = make_host(ada)

    saved = client.post("/account/science", {"venue": "home", "apps": [str(second.pk)], "beta": "on"})
    moved = client.post("/account/science", {"host": host.pk, "venue": "home"})

    assert saved.status_code == 302 and moved.status_code == 302
    ada.refresh_from_db()
    assert ada.science == {"home": {"apps": [second.pk], "beta": True}}
    assert Host.objects.get(pk=host.pk).venue == "home"
    page = client.get("/account/science").content.decode()
    assert "every app" in page and first.name in page
    assert client.post("/account/science", {"venue": "home", "reset": "on"}).status_code == 302
    ada.refresh_from_db()
    assert ada.science == {}


@pytest.mark.parametrize(
    "form",
    [
        {"venue": "mars", "every_app": "on"},
        {"venue": "", "apps": ["999999"]},
        {"venue": "", "apps": ["x"]},
        {"venue": ""},  # neither an app nor every app
        {"venue": "", "reset": "on"},  # the default has nothing to fall back to
    ],
)
def test_a_bad_choice_is_refused_and_changes_nothing(client, ada, form):
    make_app("only")
    reply = client.post("/account/science", form)
    assert reply.status_code == 400 and 'role="alert"' in reply.content.decode()
    ada.refresh_from_db()
    assert ada.science == {}


def test_a_volunteer_cannot_move_another_s_computer(client, ada):
    theirs, _ = make_host(make_volunteer("grace")[0])
    reply = client.post("/account/science", {"host": theirs.pk, "venue": "work"})
    assert reply.status_code == 400 and Host.objects.get(pk=theirs.pk).venue == ""


def test_the_page_needs_a_volunteer_signed_in():
    assert Client().get("/account/science").status_code == 302
    get_user_model().objects.create_user("scientist", password=PASSWORD)
    signed_in = Client()
    signed_in.login(username="scientist", password=PASSWORD)
    assert signed_in.get("/account/science").status_code == 404
