"""Badges: the rules, and the volunteer's and team's pages that show them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone as django_timezone

from coordinator.accounts.models import Team
from coordinator.community.badges import CREDIT_LEVELS, credit_badge, years_badge
from coordinator.community.selectors import volunteer_badges
from coordinator.standing.services import Grant, add_credit
from coordinator.testing import PASSWORD, make_app, make_host, make_units, make_volunteer
from coordinator.validation import ledger
from coordinator.work.models import Replica

NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("total", "label", "level"),
    [
        (Decimal("99.999999"), None, None),
        (Decimal("100"), "100", 1),
        (Decimal("999.5"), "100", 1),
        (1_000, "1K", 2),
        (Decimal("123456.7"), "100K", 4),
        (10_000_000, "10M", 6),
        (10**12, "100M", 7),
    ],
)
def test_the_credit_badge_is_the_highest_level_reached(total, label, level):
    badge = credit_badge(total)
    assert (badge.label, badge.level) == (label, level) if label else badge is None


def test_every_level_is_ten_times_the_one_before():
    assert all(b == 10 * a for a, b in itertools.pairwise(CREDIT_LEVELS))


def test_years_count_whole_years_from_the_first_credit():
    assert years_badge(None, NOW) is None
    assert years_badge(NOW - timedelta(days=364), NOW) is None
    assert years_badge(NOW + timedelta(days=800), NOW) is None, "a date in the future earns nothing"
    one = years_badge(NOW - timedelta(days=366), NOW)
    assert (one.label, one.title) == ("1 y", "1 year of contribution")
    assert years_badge(NOW - timedelta(days=int(365.2425 * 12) + 1), NOW).label == "12 y"


@pytest.mark.django_db
def test_the_years_start_at_the_first_credit_not_at_sign_up():
    volunteer, _ = make_volunteer()
    host = make_host(volunteer)[0]
    later = django_timezone.now() + timedelta(days=900)
    assert volunteer_badges(volunteer, later) == [], "an account without credit earns nothing, however old"

    first = django_timezone.now() + timedelta(days=30)  # its first credit, a month after sign-up
    unit = make_units(make_app(), 1)[0]
    replica = Replica.objects.filter(workunit=unit).first()
    credit = Grant(volunteer.pk, host.pk, replica_id=replica.pk, unit_id=unit.pk, credit=Decimal("150"))
    with transaction.atomic():
        add_credit([credit], now=first)
        ledger.append([credit], now=first)
    volunteer.refresh_from_db()

    badges = {badge.kind: badge for badge in volunteer_badges(volunteer, first + timedelta(days=800))}
    assert badges["credit"].label == "100" and badges["years"].label == "2 y"
    assert "years" not in {b.kind for b in volunteer_badges(volunteer, first + timedelta(days=360))}


@pytest.mark.django_db
def test_the_pages_show_the_badges(client):
    volunteer, _ = make_volunteer("ada")
    make_host(volunteer)
    team = Team.objects.create(name="Crunchers", total_credit=Decimal("25000"))
    volunteer.team, volunteer.total_credit = team, Decimal("1500")
    volunteer.save()
    client.login(username="ada", password=PASSWORD)

    account = client.get("/account").content.decode()
    assert 'aria-label="1,000 credit"' in account and ">1K</text>" in account
    page = client.get(f"/teams/{team.pk}").content.decode()
    assert 'aria-label="10,000 credit"' in page and ">10K</text>" in page, "the team's own"
    assert page.count('aria-label="1,000 credit"') == 1, "and each member's beside the name"
