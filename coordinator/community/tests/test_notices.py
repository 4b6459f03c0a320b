"""Notices: posted in the admin, shown on the public pages (escaped), served to clients."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from coordinator.community.models import Notice
from coordinator.testing import assert_error

pytestmark = pytest.mark.django_db


def post(title: str, *, minutes_ago: int = 0, published: bool = True, body: str = "") -> Notice:
    return Notice.objects.create(
        title=title,
        body=body,
        published=published,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_clients_get_the_newest_published_notices_after_the_last_they_saw(client):
    old, hidden, new = (
        post("old", minutes_ago=60),
        post("draft", minutes_ago=30, published=False),
        post("new"),
    )

    everything = client.get("/api/v1/notices").json()["notices"]
    assert [n["title"] for n in everything] == ["new", "old"] and hidden.pk not in {
        n["id"] for n in everything
    }
    assert set(everything[0]) == {"id", "title", "body", "created_at"}
    assert [n["id"] for n in client.get(f"/api/v1/notices?after={old.pk}").json()["notices"]] == [new.pk]
    assert client.get(f"/api/v1/notices?after={new.pk}").json() == {"notices": []}


def test_at_most_twenty_come_at_once():
    Notice.objects.bulk_create(Notice(title=f"n{i}") for i in range(25))
    assert len(Client().get("/api/v1/notices").json()["notices"]) == 20


@pytest.mark.parametrize("after", ["-1", "x", "1.5", str(2**63), "1e3"])
def test_a_bad_after_is_refused(client, after):
    assert_error(client.get("/api/v1/notices", {"after": after}), 400, "invalid_input")


def test_the_pages_show_the_news_as_text(client):
    post("Maintenance <script>alert(1)</script>", body="Down at 10:00.\nBack by noon & <b>later</b>.")
    post("Unpublished", published=False)

    for page in ("/status", "/notices"):
        text = client.get(page).content.decode()
        assert "Maintenance &lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text
        assert "Back by noon &amp; &lt;b&gt;later&lt;/b&gt;." in text and "Unpublished" not in text


def test_the_status_page_shows_the_three_newest_and_no_section_without_news(client):
    assert 'id="news"' not in client.get("/status").content.decode()
    for i in range(5):
        post(f"notice {i}", minutes_ago=10 - i)
    text = client.get("/status").content.decode()
    assert all(f"notice {i}" in text for i in (2, 3, 4)) and "notice 1" not in text


def test_an_admin_posts_a_notice_in_the_admin_site(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "long-enough-password-1842")
    client.force_login(admin)

    reply = client.post(
        "/admin/community/notice/add/",
        {
            "title": "New app: spectra",
            "body": "Thanks!",
            "created_at_0": "2026-12-06",
            "created_at_1": "10:00:00",
            "published": "on",
        },
    )

    assert reply.status_code == 302, reply.content[:2000]
    assert Client().get("/api/v1/notices").json()["notices"][0]["title"] == "New app: spectra"


@pytest.mark.django_db(transaction=True)
def test_the_client_reads_the_project_s_notices_over_http(live_server):
    from tessera_client import notices
    from tessera_client.protocol import HostKey, ProjectSession
    from tessera_client.state import Runtime

    first, second = post("Welcome", minutes_ago=5, body="Thanks for joining"), post("Spectra is out")
    runtime = Runtime()
    with ProjectSession(live_server.url, HostKey.generate()) as session:
        assert notices.refresh(session, runtime, now=1.0) == 2
        assert [(n["id"], n["title"]) for n in runtime.notices] == [
            (first.pk, "Welcome"),
            (second.pk, "Spectra is out"),
        ]
        third = post("Maintenance tonight")
        assert notices.refresh(session, runtime, now=3700.0) == 1 and runtime.notices[-1]["id"] == third.pk
