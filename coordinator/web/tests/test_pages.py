"""The public pages with Django's test client: what they show, to whom, and bad input."""

from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.standing.credit import rac_rank_key
from coordinator.testing import CODE_SIGNING_KEY, make_app, make_host, make_units, make_volunteer
from coordinator.work.services import register_app_version

pytestmark = pytest.mark.django_db


def credited(volunteer: Volunteer, total: int) -> Volunteer:
    """Give a volunteer credit the way the ledger's totals look, without crunching."""
    now = timezone.now()
    Volunteer.objects.filter(pk=volunteer.pk).update(
        total_credit=Decimal(total), rac=float(total), rac_time=now, rac_rank=rac_rank_key(float(total), now)
    )
    return Volunteer.objects.get(pk=volunteer.pk)


def board(client: Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200
    return page.content.decode()


def test_the_front_page_counts_units_and_replicas():
    make_units(make_app(), 3)

    page = Client().get("/")

    assert page.status_code == 200
    text = page.content.decode()
    assert '<th scope="row">active</th><td>3</td>' in text
    assert '<th scope="row">unsent</th><td>6</td>' in text


def test_the_volunteer_board_ranks_by_total_and_marks_the_viewers_row():
    people = [credited(make_volunteer(f"v{n}")[0], total) for n, total in enumerate([30, 10, 20])]
    viewer = Client()
    viewer.force_login(people[2].user)

    text = board(viewer, "/leaderboards/volunteers")

    assert text.index(">v0") < text.index(">v2") < text.index(">v1")
    assert '<tr class="mine" aria-label="your row">' in text
    mine = text.split('<tr class="mine"')[1].split("</tr>")[0]
    assert ">v2" in mine and "<td>2</td>" in mine and "30.00" not in mine
    assert 'class="mine"' not in board(Client(), "/leaderboards/volunteers")  # nobody signed in


def test_search_and_pages_follow_their_cursor(monkeypatch):
    from coordinator.web import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for n in range(5):
        credited(make_volunteer(f"runner{n}")[0], 100 - n)
    credited(make_volunteer("walker")[0], 1)

    first = board(Client(), "/leaderboards/volunteers?search=runner")
    assert "runner0" in first and "runner1" in first and "runner2" not in first and "walker" not in first
    next_link = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = board(Client(), next_link)
    assert "runner2" in second and "runner3" in second and "runner0" not in second
    assert 'rel="prev"' in second


def test_teams_and_computers_have_boards_too():
    volunteer = credited(make_volunteer("owner")[0], 5)
    team = Team.objects.create(
        name="Night owls",
        founder=volunteer.user,
        total_credit=Decimal(5),
        rac=1.0,
        rac_time=timezone.now(),
        rac_rank=rac_rank_key(1.0, timezone.now()),
    )
    Volunteer.objects.filter(pk=volunteer.pk).update(team=team)
    host, _ = make_host(volunteer, name="attic-pc")
    Host.objects.filter(pk=host.pk).update(
        total_credit=Decimal(5), rac=1.0, rac_time=timezone.now(), rac_rank=rac_rank_key(1.0, timezone.now())
    )
    viewer = Client()
    viewer.force_login(volunteer.user)

    assert "Night owls" in board(viewer, "/leaderboards/teams").split('class="mine"')[1]
    computers = board(viewer, "/leaderboards/hosts?order=recent")
    assert "attic-pc" in computers.split('class="mine"')[1] and "linux-x86_64, owner" in computers


def test_names_are_shown_as_text_never_as_html():
    credited(make_volunteer("<script>alert(1)</script>")[0], 9)
    text = board(Client(), "/leaderboards/volunteers")
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.parametrize(
    "query",
    ["?cursor=forged", "?order=sideways", "?search=" + "x" * 500, "?cursor=", "?search=%00"],
)
def test_bad_queries_show_the_top_with_a_word_never_an_error(query):
    credited(make_volunteer("alone")[0], 3)
    page = Client().get("/leaderboards/volunteers" + query)
    assert page.status_code == 200
    if "cursor=forged" in query:
        assert "not valid for this list" in page.content.decode()
    if "%00" in query:
        assert "NUL character" in page.content.decode()


def test_unknown_boards_are_404():
    assert Client().get("/leaderboards/aliens").status_code == 404


def test_the_status_page_counts_work_and_names_the_apps():
    make_units(make_app("mandelbrot-ish"), 2)
    host, _ = make_host()
    Host.objects.filter(pk=host.pk).update(last_contact=timezone.now())

    text = board(Client(), "/status")

    assert '<th scope="row">Tasks waiting to be sent</th><td class="num">4</td>' in text
    assert '<th scope="row">Computers active in the last day</th><td class="num">1</td>' in text
    assert "<caption>mandelbrot-ish</caption>" in text
    assert '<th scope="row" title="any">any computer</th>' in text
    assert "tessera attach http://testserver --token" in text


def test_the_status_page_lists_each_apps_versions_by_platform():
    app = make_app("lj")
    for platform, runtime, plan, version in (
        ("any", "wasm", "cpu", 2),
        ("x86_64-pc-linux-gnu", "native", "mt", 3),
        ("x86_64-pc-linux-gnu", "native", "mt", 2),  # older: not listed
        ("arm64-apple-darwin", "native", "cpu", 1),
    ):
        register_app_version(
            app=app,
            version=version,
            bundle=f"{platform} {runtime} {version}".encode(),
            signing_key=CODE_SIGNING_KEY,
            platform=platform,
            runtime=runtime,
            plan_class=plan,
            beta=platform.startswith("arm64"),
        )

    text = board(Client(), "/status")

    assert '<th scope="row" title="x86_64-pc-linux-gnu">Linux on x86-64</th>' in text
    assert '<td class="num">3</td>\n          <td>native, mt</td>' in text
    assert "native (beta)" in text and "macOS on Apple silicon" in text
    assert '<td class="num">2</td>\n          <td>native, mt</td>' not in text
