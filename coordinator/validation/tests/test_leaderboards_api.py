"""The public credit statistics: leaderboards by total and by recent average credit, their
cursor pages, search, a volunteer's credit history, refusals, secrets and query cost."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.standing import credit
from coordinator.standing.services import Grant, add_credit
from coordinator.testing import make_host, make_volunteer, on_postgres
from coordinator.validation.cursors import CURSOR_SALT

pytestmark = pytest.mark.django_db

BOARDS = {"volunteers": Volunteer, "teams": Team, "hosts": Host}
ROW_FIELDS = {"rank", "id", "name", "total_credit", "recent_average_credit"}
HOST_ROW_FIELDS = ROW_FIELDS | {"platform", "volunteer_id", "volunteer_name"}
_serial = itertools.count(1)


def grant(*credits: tuple[Host, str], now: datetime) -> None:
    """Credit each host (and so its volunteer and team) as one validation pass would."""
    grants = []
    for host, amount in credits:
        n = next(_serial)
        grants.append(Grant(host.volunteer_id, host.pk, replica_id=n, unit_id=n, credit=Decimal(amount)))
    with transaction.atomic():
        add_credit(grants, now=now)


def member(team: Team | None = None, username: str | None = None, **host_fields: Any) -> Host:
    """A host of a new volunteer, the volunteer in ``team``."""
    volunteer = make_volunteer(username)[0]
    if team is not None:
        Volunteer.objects.filter(pk=volunteer.pk).update(team=team)
    return make_host(volunteer, **host_fields)[0]


def board(name: str, **params: Any):
    return Client().get(f"/api/v1/leaderboards/{name}", params)


def walk(url: str, *, back: bool = False) -> tuple[list[dict], list[int], dict]:
    """Follow next (or previous) links from ``url``: the rows seen in board order, the
    queries each page cost, and the page where the links end."""
    rows, costs, client = [], [], Client()
    while True:
        with CaptureQueriesContext(connection) as captured:
            reply = client.get(url)
        assert reply.status_code == 200, reply.content
        page = reply.json()
        rows = page["results"] + rows if back else rows + page["results"]
        costs.append(len(captured.captured_queries))
        url = page["previous" if back else "next"]
        if url is None:
            return rows, costs, page


def places(rows: list[dict]) -> list[tuple[int, int | None]]:
    """Ids and ranks: what must match between two reads (the RAC shown decays in between)."""
    return [(r["id"], r["rank"]) for r in rows]


def cursor_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["cursor"][0]


def expected_order(model: type, order: str) -> list[int]:
    """The board order worked out here, independently of the selectors."""
    key = "total_credit" if order == "total" else "rac_rank"
    floor = Decimal(0) if order == "total" else -1e18
    rows = [(getattr(row, key), row.pk) for row in model.objects.all() if getattr(row, key) > floor]
    return [pk for _, pk in sorted(rows, key=lambda r: (-r[0], r[1]))]


# --- ordering ------------------------------------------------------------------------------


@pytest.fixture
def standings():
    """Old big credit, yesterday's middling credit, and this hour's small credit: the order
    by total is the reverse of the order by recent average credit for the last two."""
    now = timezone.now()
    veterans, newcomers = Team.objects.create(name="Veterans"), Team.objects.create(name="Newcomers")
    old = member(veterans, "old_timer", name="old-box", platform="windows_x86_64")
    mid = member(newcomers, "steady", name="steady-box")
    new = member(newcomers, "fresh", name="fresh-box", platform="arm64-apple-darwin")
    grant((old, "1000"), now=now - timedelta(days=60))
    grant((mid, "300"), now=now - timedelta(days=1))
    grant((new, "100.5"), now=now - timedelta(hours=1))
    member(veterans, "idle")  # never credited: on no board
    return {"old": old, "mid": mid, "new": new, "veterans": veterans, "newcomers": newcomers}


def test_volunteers_by_total_and_by_recent_average_credit(standings):
    old, mid, new = (standings[k].volunteer for k in ("old", "mid", "new"))

    by_total = board("volunteers").json()
    by_recent = board("volunteers", order="recent").json()

    assert [r["name"] for r in by_total["results"]] == ["old_timer", "steady", "fresh"]
    assert [r["name"] for r in by_recent["results"]] == ["steady", "fresh", "old_timer"]
    assert [r["rank"] for r in by_recent["results"]] == [1, 2, 3]
    assert by_total["next"] is None and by_total["previous"] is None
    first = by_total["results"][0]
    assert set(first) == ROW_FIELDS
    assert first["id"] == old.pk and first["total_credit"] == "1000.000000"
    assert by_total["results"][2]["total_credit"] == "100.500000"
    shown = {r["id"]: r["recent_average_credit"] for r in by_recent["results"]}
    for volunteer in (old, mid, new):
        volunteer.refresh_from_db()
        # The RAC shown is brought forward to the request, not the one stored at the grant.
        assert shown[volunteer.pk] < volunteer.rac
        expected = credit.rac_now(volunteer.rac, volunteer.rac_time, timezone.now())
        assert shown[volunteer.pk] == pytest.approx(expected, rel=1e-4)


def test_teams_and_hosts_by_total_and_by_recent_average_credit(standings):
    teams_total = board("teams").json()["results"]
    teams_recent = board("teams", order="recent").json()["results"]
    hosts_total = board("hosts").json()["results"]
    hosts_recent = board("hosts", order="recent").json()["results"]

    assert [(t["name"], t["total_credit"]) for t in teams_total] == [
        ("Veterans", "1000.000000"),
        ("Newcomers", "400.500000"),
    ]
    assert [t["name"] for t in teams_recent] == ["Newcomers", "Veterans"]
    assert [h["name"] for h in hosts_total] == ["old-box", "steady-box", "fresh-box"]
    assert [h["name"] for h in hosts_recent] == ["steady-box", "fresh-box", "old-box"]
    fresh = hosts_recent[1]
    assert set(fresh) == HOST_ROW_FIELDS
    assert fresh["id"] == standings["new"].pk and fresh["rank"] == 2
    assert fresh["platform"] == "arm64-apple-darwin"
    assert (fresh["volunteer_id"], fresh["volunteer_name"]) == (standings["new"].volunteer_id, "fresh")


# --- pagination ----------------------------------------------------------------------------


def populate(count: int, *, start: datetime) -> None:
    """``count`` volunteers with a host each, in teams of one, with many ties in both the
    total and the recent average credit, and one who never earned anything."""
    hosts = [member(Team.objects.create(name=f"team-{next(_serial)}")) for _ in range(count)]
    for offset in range(3):
        batch = [(h, str(1 + (i * 7) % 4)) for i, h in enumerate(hosts) if i % 3 == offset]
        if batch:
            grant(*batch, now=start + timedelta(days=offset))
    member()


@pytest.mark.parametrize("order", ["total", "recent"])
@pytest.mark.parametrize("name", BOARDS)
def test_following_next_links_shows_every_row_once_in_order_and_previous_links_walk_back(name, order):
    populate(23, start=timezone.now() - timedelta(days=5))
    expected = expected_order(BOARDS[name], order)
    assert len(expected) == 23

    rows, _, last = walk(f"/api/v1/leaderboards/{name}?order={order}&page_size=4")
    back, _, top = walk(last["previous"], back=True)

    assert [r["id"] for r in rows] == expected
    assert [r["rank"] for r in rows] == list(range(1, 24))
    assert len(last["results"]) == 3
    assert places(back + last["results"]) == places(rows)
    assert top["previous"] is None and [r["rank"] for r in top["results"]] == [1, 2, 3, 4]


def test_going_back_past_the_top_gives_the_full_first_page():
    populate(7, start=timezone.now() - timedelta(days=5))
    after_first_row = cursor_of(board("volunteers", page_size=1).json()["next"])
    from_second_row = board("volunteers", page_size=3, cursor=after_first_row).json()

    back = Client().get(from_second_row["previous"]).json()

    assert [r["rank"] for r in from_second_row["results"]] == [2, 3, 4]
    assert back["previous"] is None
    assert places(back["results"]) == places(board("volunteers", page_size=3).json()["results"])
    assert [r["rank"] for r in back["results"]] == [1, 2, 3]


def test_ranks_stay_positive_when_rows_overtake_the_cursor_between_pages():
    populate(5, start=timezone.now() - timedelta(days=5))
    top = board("volunteers", page_size=1).json()
    second = Client().get(top["next"]).json()
    back_from_second = cursor_of(second["previous"])
    below = [r["id"] for r in walk(second["next"])[0]]
    grant(*[(Host.objects.get(volunteer_id=pk), "100") for pk in below[:2]], now=timezone.now())

    back = board("volunteers", page_size=2, cursor=back_from_second).json()

    now_order = expected_order(Volunteer, "total")
    at = now_order.index(second["results"][0]["id"])
    assert at == 3  # two rows overtook it: the cursor's rank 2 is now 4
    assert [r["id"] for r in back["results"]] == now_order[1:3]
    assert [r["rank"] for r in back["results"]] == [1, 2]  # not -1 and 0


def test_page_size_defaults_to_50_and_goes_up_to_200():
    populate(60, start=timezone.now() - timedelta(days=5))

    default = board("hosts").json()
    large = board("hosts", page_size=200).json()

    assert len(default["results"]) == 50 and default["next"] is not None
    assert len(large["results"]) == 60 and large["next"] is None


# --- search --------------------------------------------------------------------------------


def test_search_finds_names_ignoring_case_and_leaves_rows_unranked():
    now = timezone.now()
    alice = member(Team.objects.create(name="Alpha Centauri"), "Alice", name="ALICE-desktop")
    alicia = member(Team.objects.create(name="Beta"), "alicia", name="laptop")
    bob = member(Team.objects.create(name="alphabet soup"), "bob", name="bob-desktop")
    grant((alice, "3"), (alicia, "5"), (bob, "9"), now=now)

    volunteers, _, _ = walk("/api/v1/leaderboards/volunteers?search=ALI&page_size=1")
    teams = board("teams", search="alpha", order="recent").json()["results"]
    hosts = board("hosts", search="Desktop").json()["results"]
    nobody = board("volunteers", search="zed").json()

    assert [r["name"] for r in volunteers] == ["alicia", "Alice"]
    assert [r["rank"] for r in volunteers] == [None, None]
    assert [r["name"] for r in teams] == ["alphabet soup", "Alpha Centauri"]
    assert [r["name"] for r in hosts] == ["bob-desktop", "ALICE-desktop"]
    assert nobody == {"next": None, "previous": None, "results": []}


def test_search_treats_like_wildcards_as_plain_text():
    now = timezone.now()
    grant((member(None, "per_cent"), "1"), (member(None, "percent"), "2"), now=now)

    found = board("volunteers", search="r_c").json()["results"]
    found_percent = board("volunteers", search="%").json()["results"]

    assert [r["name"] for r in found] == ["per_cent"]
    assert found_percent == []


# --- credit history ------------------------------------------------------------------------


def test_credit_history_has_every_day_with_zero_days_oldest_first():
    now = timezone.now()
    host = member()
    grant((host, "2.5"), now=now)
    grant((host, "1.25"), now=now)
    grant((host, "7"), now=now - timedelta(days=2))
    grant((host, "100"), now=now - timedelta(days=40))
    url = f"/api/v1/volunteers/{host.volunteer_id}/credit-history"

    five = Client().get(url, {"days": 5}).json()
    default = Client().get(url).json()
    today = Client().get(url, {"days": 1}).json()
    year = Client().get(url, {"days": 365}).json()

    day = now.date()
    assert five == [
        {"day": (day - timedelta(days=4)).isoformat(), "credit": "0.000000"},
        {"day": (day - timedelta(days=3)).isoformat(), "credit": "0.000000"},
        {"day": (day - timedelta(days=2)).isoformat(), "credit": "7.000000"},
        {"day": (day - timedelta(days=1)).isoformat(), "credit": "0.000000"},
        {"day": day.isoformat(), "credit": "3.750000"},
    ]
    assert len(default) == 30 and default[-5:] == five
    assert today == five[-1:]
    assert len(year) == 365
    assert sum(Decimal(d["credit"]) for d in year) == Decimal("110.75")


def test_a_volunteer_who_never_earned_has_a_history_of_zeros():
    volunteer = make_volunteer()[0]

    history = Client().get(f"/api/v1/volunteers/{volunteer.pk}/credit-history", {"days": 3}).json()

    assert [d["credit"] for d in history] == ["0.000000"] * 3


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("volunteer_id", [987654, 2**31, 2**63, 10**30])
def test_an_unknown_volunteer_is_404(volunteer_id):
    reply = Client().get(f"/api/v1/volunteers/{volunteer_id}/credit-history")

    assert reply.status_code == 404
    assert reply.json() == {"error": "not_found", "detail": "no such volunteer"}


@pytest.mark.parametrize("days", ["0", "366", "-1", "ten", "1.5", "1e3"])
def test_days_outside_1_to_365_is_400(days):
    volunteer = make_volunteer()[0]

    reply = Client().get(f"/api/v1/volunteers/{volunteer.pk}/credit-history", {"days": days})

    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "invalid_input" and "days" in body["detail"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"order": "best"}, "order"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "201"}, "page_size"),
        ({"page_size": "many"}, "page_size"),
        ({"search": "x" * 151}, "search"),
        ({"search": "a\x00b"}, "search"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "x" * 513}, "cursor"),
    ],
)
@pytest.mark.parametrize("name", BOARDS)
def test_bad_leaderboard_parameters_are_400(name, params, field):
    reply = board(name, **params)

    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "invalid_input" and field in body["detail"]


def test_a_cursor_only_works_for_the_list_it_came_from():
    populate(5, start=timezone.now() - timedelta(days=5))
    cursor = cursor_of(board("volunteers", page_size=2).json()["next"])
    payload = signing.loads(cursor, salt=CURSOR_SALT)
    forged = signing.dumps({**payload, "r": 0}, salt="another salt")
    tampered = cursor[:-3] + ("abc" if not cursor.endswith("abc") else "xyz")
    well_signed_junk = signing.dumps({**payload, "k": "NaN"}, salt=CURSOR_SALT)

    assert board("volunteers", page_size=2, cursor=cursor).status_code == 200
    for refused in (
        board("teams", page_size=2, cursor=cursor),
        board("volunteers", page_size=2, cursor=cursor, order="recent"),
        board("volunteers", page_size=2, cursor=cursor, search="volunteer"),
        board("volunteers", page_size=2, cursor=forged),
        board("volunteers", page_size=2, cursor=tampered),
        board("volunteers", page_size=2, cursor=well_signed_junk),
    ):
        assert refused.status_code == 400
        assert refused.json() == {
            "error": "invalid_input",
            "detail": {"cursor": ["not a cursor of this list"]},
        }


def test_the_statistics_are_read_only():
    volunteer = make_volunteer()[0]

    for path in ("/api/v1/leaderboards/volunteers", f"/api/v1/volunteers/{volunteer.pk}/credit-history"):
        reply = Client().post(path, {}, content_type="application/json")
        assert reply.status_code == 405
        assert reply.json()["error"] == "method_not_allowed"


# --- secrets -------------------------------------------------------------------------------


def test_no_key_token_hash_or_address_appears_in_any_reply(standings):
    User = get_user_model()
    User.objects.filter(pk=standings["old"].volunteer_id).update(email="old.timer@example.org")
    grant((standings["old"], "1"), now=timezone.now())
    secrets = set(Host.objects.values_list("public_key", flat=True))
    secrets |= {h for h in Volunteer.objects.values_list("token_hash", flat=True) if h}
    secrets |= set(User.objects.values_list("password", flat=True))
    secrets |= {"old.timer@example.org"}
    assert len(secrets) > 8
    replies = [board(name, order=order, page_size=1) for name in BOARDS for order in ("total", "recent")]
    replies += [board(name, search="o") for name in BOARDS]
    replies += [
        Client().get(f"/api/v1/volunteers/{h.volunteer_id}/credit-history", {"days": 365})
        for h in Host.objects.all()
    ]

    for reply in replies:
        assert reply.status_code == 200
        text = reply.content.decode()
        assert not [secret for secret in secrets if secret in text]
        for forbidden in ("public_key", "token", "password", "email"):
            assert forbidden not in text
        body = json.loads(text)
        rows = body["results"] if isinstance(body, dict) else body
        assert rows
        for row in rows:
            assert set(row) in (ROW_FIELDS, HOST_ROW_FIELDS, {"day", "credit"})


# --- cost ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["total", "recent"])
@pytest.mark.parametrize("name", BOARDS)
def test_a_page_costs_the_same_queries_for_a_small_or_a_large_board(name, order):
    start = timezone.now() - timedelta(days=5)
    populate(6, start=start)
    _, small, _ = walk(f"/api/v1/leaderboards/{name}?order={order}&page_size=2")
    populate(60, start=start)
    _, large, _ = walk(f"/api/v1/leaderboards/{name}?order={order}&page_size=2")
    _, searched, _ = walk(f"/api/v1/leaderboards/{name}?order={order}&page_size=2&search=1")
    _, _, bottom = walk(f"/api/v1/leaderboards/{name}?order={order}&page_size=2")
    _, backwards, _ = walk(bottom["previous"], back=True)

    # A first page is one query; a later one is two at most: the rows tied with the cursor's
    # key, then the rows below it. No COUNT, no OFFSET, nothing per row.
    assert small[0] == large[0] == 1
    assert max(small) == max(large) == max(searched) == 2
    assert len(large) == 33
    # Back: the same two, and one more when the walk reaches the top and gives the first page.
    assert max(backwards[:-1]) == 2 and backwards[-1] <= 3


@pytest.mark.postgres
@pytest.mark.parametrize("order", ["total", "recent"])
@pytest.mark.parametrize("name", BOARDS)
def test_on_postgresql_every_page_query_is_an_index_range_scan_without_a_sort(name, order):
    assert on_postgres()
    populate(12, start=timezone.now() - timedelta(days=5))
    first = board(name, order=order, page_size=2).json()
    with CaptureQueriesContext(connection) as captured:
        assert Client().get(Client().get(first["next"]).json()["next"]).status_code == 200
    index = {"volunteers": "volunteer_by_", "teams": "team_by_", "hosts": "host_by_"}[name]
    index += "total" if order == "total" else "rac"

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        for query in captured.captured_queries:
            cursor.execute("EXPLAIN " + query["sql"])
            plan = "\n".join(line for (line,) in cursor.fetchall())
            assert f"Index Scan using {index}" in plan or f"Index Scan Backward using {index}" in plan, plan
            assert "Sort" not in plan, plan
