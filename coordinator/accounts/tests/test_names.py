"""Names people choose (accounts.names): no look-alikes of a name taken, nothing hidden.

Through every way in: the sign-up API, the sign-up page, the team page and the services
themselves, each refusal beside a control that succeeds.
"""

from __future__ import annotations

import html
import importlib
import json
import threading
import time

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordinator.accounts import names, services, teams
from coordinator.accounts.models import Team, Volunteer
from coordinator.core.errors import Conflict, InvalidInput
from coordinator.testing import PASSWORD, assert_error, make_volunteer

pytestmark = pytest.mark.django_db

SIGNUP = "/api/v1/volunteers"
CYRILLIC_A = "\u0430"


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def signup(client: Client, username: str):
    body = {"username": username, "password": PASSWORD, "email": "private@example.org"}
    return client.post(SIGNUP, json.dumps(body), content_type="application/json")


def sign_up_on_the_page(client: Client, username: str):
    form = {"username": username, "email": "", "password": PASSWORD, "password_again": PASSWORD}
    return client.post("/signup", form)


def signed_in(volunteer: Volunteer) -> Client:
    client = Client()
    client.force_login(volunteer.user)
    return client


def usernames() -> set[str]:
    return set(get_user_model().objects.values_list("username", flat=True))


# --- look-alike volunteer names ------------------------------------------------------------


@pytest.mark.parametrize(
    "look_alike",
    [
        f"{CYRILLIC_A}da",
        "\u0391DA",  # Greek capital alpha, in capitals: case does not set names apart
        "ad\u0251",  # Latin alpha
        "\uff41\uff44\uff41",  # fullwidth letters
    ],
    ids=["cyrillic", "greek-capitals", "latin-alpha", "fullwidth"],
)
def test_a_name_that_looks_like_a_volunteers_is_refused_by_the_api(client, look_alike):
    assert signup(client, "ada").status_code == 201
    before = usernames()

    body = assert_error(signup(client, look_alike), 409, "name_look_alike")

    assert body["detail"] == f"the name {look_alike!r} looks like the existing name 'ada'"
    assert "example.org" not in body["detail"], "only the public name is told"
    assert usernames() == before
    assert signup(client, "adam").status_code == 201  # control: a different name is fine


def test_the_same_name_in_another_case_is_still_username_taken(client):
    assert signup(client, "ada").status_code == 201

    assert_error(signup(client, "ADA"), 409, "username_taken")


def test_a_look_alike_name_is_refused_on_the_sign_up_page():
    make_volunteer("ada")

    answer = sign_up_on_the_page(Client(), f"{CYRILLIC_A}da")

    assert answer.status_code == 400
    assert f"the name '{CYRILLIC_A}da' looks like the existing name 'ada'" in html.unescape(
        answer.content.decode()
    )
    assert usernames() == {"ada"}
    assert sign_up_on_the_page(Client(), "adam").status_code == 302  # control


def test_capital_i_looks_like_small_l():
    make_volunteer("llya")

    with pytest.raises(Conflict) as refused:
        services.create_volunteer(username="Ilya", password=PASSWORD, now=timezone.now())

    assert refused.value.code == "name_look_alike"


# --- look-alike team names -----------------------------------------------------------------


def test_a_team_name_that_looks_like_another_teams_is_refused():
    founder, _ = make_volunteer("founder")
    other, _ = make_volunteer("other")
    teams.create_team(founder=founder, name="Night owls")

    with pytest.raises(Conflict) as refused:
        teams.create_team(founder=other, name="\u039dight \u03bfwls")  # Greek capital nu, small omicron

    assert refused.value.code == "name_look_alike"
    assert (
        refused.value.message == "the name '\u039dight \u03bfwls' looks like the existing name 'Night owls'"
    )
    assert list(Team.objects.values_list("name", flat=True)) == ["Night owls"]
    assert teams.create_team(founder=other, name="Night owls 2").name == "Night owls 2"  # control


def test_a_look_alike_team_name_is_refused_on_the_team_page():
    founder, _ = make_volunteer("founder")
    signed_in(founder).post("/teams/new", {"name": "Crunchers"})
    other = signed_in(make_volunteer("other")[0])

    answer = other.post("/teams/new", {"name": "Crunch\u0435rs"})  # with a Cyrillic ie

    assert answer.status_code == 400
    assert "looks like the existing name 'Crunchers'" in html.unescape(answer.content.decode())
    assert list(Team.objects.values_list("name", flat=True)) == ["Crunchers"]


# --- hidden characters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "named"),
    [
        ("ada\u202e", "bidi_control", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("\u2066ada", "bidi_control", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("ada\u200f", "bidi_control", "U+200F RIGHT-TO-LEFT MARK"),
        ("ada\u061c", "bidi_control", "U+061C ARABIC LETTER MARK"),
        ("a\u200bda", "invisible_character", "U+200B ZERO WIDTH SPACE"),
        ("ada\u2060", "invisible_character", "U+2060 WORD JOINER"),
    ],
)
def test_hidden_characters_in_a_volunteers_name_are_refused_by_the_api(client, name, code, named):
    body = assert_error(signup(client, name), 400, code)

    assert named in body["detail"]
    assert usernames() == set()
    assert signup(client, "ada").status_code == 201  # control: the name without them


def test_hidden_characters_are_refused_on_the_sign_up_page_and_by_the_service():
    answer = sign_up_on_the_page(Client(), "ada\u202e")

    assert answer.status_code == 400
    assert "may not hold characters that change the direction of text" in answer.content.decode()
    with pytest.raises(InvalidInput) as refused:  # every other path (seed_demo, tests) too
        services.create_volunteer(username="ada\u200e", password=PASSWORD, now=timezone.now())
    assert refused.value.code == "bidi_control"
    assert usernames() == set()


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Night\u202eowls", "bidi_control"),
        ("Night owls\u2069", "bidi_control"),
        ("Night\u00adowls", "invisible_character"),  # soft hyphen
        ("Night owls\x7f", "bad_name"),  # DEL, a control the old check let through
        ("\u3164", "invisible_name"),  # Hangul filler: a letter that shows nothing
    ],
)
def test_hidden_characters_in_a_team_name_are_refused(name, code):
    founder, _ = make_volunteer("founder")

    with pytest.raises(InvalidInput) as refused:
        teams.create_team(founder=founder, name=name)

    assert refused.value.code == code
    assert not Team.objects.exists()
    assert teams.create_team(founder=founder, name="Night owls").pk  # control


# --- the unique skeleton: races and the database -------------------------------------------


def test_a_look_alike_made_between_the_check_and_the_insert_is_refused(monkeypatch):
    """The check and the insert are two statements: a look-alike committed between them (here
    "ada", which the first check is made to miss) is refused by the unique skeleton."""
    make_volunteer("ada")
    real_check = services._refuse_taken_name
    calls = []

    def check_that_ran_too_early(username: str, skeleton: str) -> None:
        calls.append(username)
        if len(calls) > 1:
            real_check(username, skeleton)

    monkeypatch.setattr(services, "_refuse_taken_name", check_that_ran_too_early)

    with pytest.raises(Conflict) as refused:
        services.create_volunteer(username=f"{CYRILLIC_A}da", password=PASSWORD, now=timezone.now())

    assert refused.value.code == "name_look_alike"
    assert usernames() == {"ada"}, "the refused account left no user behind"
    assert len(calls) == 2, "refused by the database, then explained by the second check"


def test_a_look_alike_team_made_between_the_check_and_the_insert_is_refused(monkeypatch):
    founder, _ = make_volunteer("founder")
    teams.create_team(founder=make_volunteer("other")[0], name="Crunchers")
    real_check = teams._refuse_taken_name
    calls = []

    def check_that_ran_too_early(name: str, skeleton: str) -> None:
        calls.append(name)
        if len(calls) > 1:
            real_check(name, skeleton)

    monkeypatch.setattr(teams, "_refuse_taken_name", check_that_ran_too_early)

    with pytest.raises(Conflict) as refused:
        teams.create_team(founder=founder, name="Crunch\u0435rs")  # a Cyrillic ie

    assert refused.value.code == "name_look_alike"
    assert list(Team.objects.values_list("name", flat=True)) == ["Crunchers"]
    assert Volunteer.objects.get(pk=founder.pk).team is None
    assert len(calls) == 2


@pytest.mark.parametrize("model", [Volunteer, Team])
def test_the_database_refuses_two_rows_with_one_skeleton(model):
    founder, _ = make_volunteer("founder")
    if model is Volunteer:
        first, second = founder, make_volunteer("second")[0]
    else:
        first = teams.create_team(founder=founder, name="first")
        second = teams.create_team(founder=founder, name="second")

    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=second.pk).update(name_skeleton=first.name_skeleton)

    assert model.objects.filter(pk=second.pk).values_list("name_skeleton", flat=True).get() is not None
    assert model.objects.filter(name_skeleton=None).count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_look_alike_sign_ups_at_the_same_moment_end_with_one_refused():
    """Real connections: the second insert waits on the first one's index entry, then fails."""
    outcome: dict[str, object] = {}

    def second_sign_up() -> None:
        try:
            services.create_volunteer(username=f"{CYRILLIC_A}da", password=PASSWORD, now=timezone.now())
            outcome["result"] = "made"
        except Conflict as error:
            outcome["result"] = error.code
        finally:
            connection.close()

    second = threading.Thread(target=second_sign_up)
    with transaction.atomic():
        services.create_volunteer(username="ada", password=PASSWORD, now=timezone.now())
        second.start()
        waited = _wait_for_a_lock_wait()
    second.join(timeout=30)

    assert waited, "the second sign-up never waited on the first one's row"
    assert outcome == {"result": "name_look_alike"}
    assert usernames() == {"ada"}


def _wait_for_a_lock_wait(timeout: float = 10.0) -> bool:
    """True once another connection waits on a lock (the unique index entry)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else one snapshot per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.05)
    return False


def test_the_look_alike_check_is_one_indexed_look_up_whatever_the_number_of_volunteers():
    make_volunteer("ada")
    counts = []
    for crowd in (0, 40):
        for _ in range(crowd):
            make_volunteer()
        with CaptureQueriesContext(connection) as queries, pytest.raises(Conflict):
            services.create_volunteer(username=f"{CYRILLIC_A}da", password=PASSWORD, now=timezone.now())
        counts.append(len(queries))
        assert any('"name_skeleton" = ' in query["sql"] for query in queries.captured_queries)

    assert counts[0] == counts[1]


# --- names that must still be accepted -----------------------------------------------------


def test_distinct_names_in_any_script_are_accepted(client):
    accepted = [
        "ada",
        "adam",
        "grace",
        "\u0141ukasz",
        "Lukasz",
        "\u5c71\u7530",
        "\u5c71\u672c",
        "\u0395\u03bb\u03ad\u03bd\u03b7",
    ]

    replies = [signup(client, name).status_code for name in accepted]

    assert replies == [201] * len(accepted)
    skeletons = set(Volunteer.objects.values_list("name_skeleton", flat=True))
    assert len(skeletons) == len(accepted) and None not in skeletons


def test_distinct_team_names_are_accepted():
    founder, _ = make_volunteer("founder")
    for name in [
        "Night owls",
        "Night owls 2",
        "\u00c9quipe",
        "\u30c1\u30fc\u30e0",
        "\u0414\u0440\u0443\u0437\u044c\u044f",
    ]:
        assert teams.create_team(founder=founder, name=name).name_skeleton is not None

    assert Team.objects.count() == 5


def test_skeletons_are_case_blind_and_script_blind_only_where_the_letters_look_alike():
    assert names.skeleton("ADA") == names.skeleton("ada") == names.skeleton(f"{CYRILLIC_A}da")
    assert names.skeleton("ada") != names.skeleton("adam")
    assert names.skeleton("\u0141ukasz") != names.skeleton("Lukasz")
    assert names.skeleton("mary") == names.skeleton("rnary")


# --- the data migration --------------------------------------------------------------------


def test_the_migration_fills_existing_rows_and_the_oldest_of_look_alikes_keeps_the_skeleton():
    migration = importlib.import_module("coordinator.accounts.migrations.0003_name_skeletons")
    ada, _ = make_volunteer("ada")
    make_volunteer("grace")
    # A look-alike made before the rule: it keeps its account, not the skeleton.
    older_look_alike = Volunteer.objects.create(
        user=get_user_model().objects.create_user(f"{CYRILLIC_A}da", password=PASSWORD)
    )
    team = teams.create_team(founder=ada, name="Crunchers")
    Volunteer.objects.update(name_skeleton=None)
    Team.objects.update(name_skeleton=names.skeleton_digest("stale"))  # as after an ICU upgrade

    migration.fill_name_skeletons(django_apps, None)

    by_name = dict(Volunteer.objects.values_list("user__username", "name_skeleton"))
    assert by_name["ada"] == names.skeleton_digest("ada") == names.skeleton_digest(f"{CYRILLIC_A}da")
    assert by_name["grace"] == names.skeleton_digest("grace")
    assert Volunteer.objects.get(pk=older_look_alike.pk).name_skeleton is None
    assert Team.objects.get(pk=team.pk).name_skeleton == names.skeleton_digest("Crunchers")
    with pytest.raises(Conflict):  # and the filled skeleton blocks new look-alikes
        services.create_volunteer(username="AD\u0391", password=PASSWORD, now=timezone.now())
