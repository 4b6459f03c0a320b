"""Reads of credit: leaderboards of volunteers, teams and hosts, and a volunteer's history.

A leaderboard is read by keyset, never by OFFSET or COUNT(*): a page starts after the last
row of the one before (its key and id), so it costs one or two index range scans on
(-key, id) however deep it is. Rows that never earned credit are not on the boards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.contrib.auth import get_user_model
from django.db.models import Model, OuterRef, QuerySet, Subquery

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.core.errors import NotFound
from coordinator.standing.models import CreditDay
from coordinator.validation.models import LedgerHead
from coordinator.work.models import WorkUnit

CREDIT_COLUMNS = ("total_credit", "rac", "rac_time", "rac_rank")
# rac_rank of a row without recent credit (see credit.rac_rank_key).
NO_RAC_RANK = -1e18


class Order(StrEnum):
    TOTAL = "total"
    RECENT = "recent"

    @property
    def key(self) -> str:
        """The indexed column this order sorts on, descending, with the id after it."""
        return "total_credit" if self is Order.TOTAL else "rac_rank"

    @property
    def floor(self) -> Decimal | float:
        """Rows at or below this key never earned credit and are left off the board."""
        return Decimal(0) if self is Order.TOTAL else NO_RAC_RANK


@dataclass(frozen=True)
class Leaderboard:
    """One board in one order. Under a search, ``ranked`` is false: a row's place among
    the matches is not its rank on the board, and counting the rows ahead would cost a scan."""

    rows: QuerySet
    order: Order
    ranked: bool


@dataclass(frozen=True)
class Position:
    """Where a row stands: its order key, its id, and its rank when the board is ranked."""

    key: Decimal | float
    pk: int
    rank: int | None


@dataclass(frozen=True)
class Page:
    rows: list[Model]
    ranks: list[int | None]
    first: Position | None
    last: Position | None
    has_previous: bool
    has_next: bool


def _board(rows: QuerySet, *, order: Order, search_field: str, search: str) -> Leaderboard:
    rows = rows.filter(**{f"{order.key}__gt": order.floor}).order_by(f"-{order.key}", "pk")
    if search:
        rows = rows.filter(**{f"{search_field}__icontains": search})
    return Leaderboard(rows=rows, order=order, ranked=not search)


UNLISTED_HOST = "a computer of an unlisted volunteer"


def _username(volunteer_id: str, *, unless_unlisted: bool = False) -> Subquery:
    """The volunteer's name as a scalar subquery rather than a join: it runs only for the
    rows of the page, and the planner cannot pick a join that walks the users from the top.
    ``unless_unlisted``: NULL for a volunteer who did not agree to be listed."""
    User = get_user_model()
    users = User.objects.filter(pk=OuterRef(volunteer_id))
    if unless_unlisted:
        users = users.filter(volunteer__listed=True)
    return Subquery(users.values(User.USERNAME_FIELD)[:1])


def volunteer_leaderboard(*, order: Order, search: str = "") -> Leaderboard:
    # only(): the account's token hash is never even read, and the password is in another table.
    # Only those who agreed to be listed (Volunteer.listed, asked at sign-up).
    rows = Volunteer.objects.only(*CREDIT_COLUMNS).filter(listed=True).annotate(name=_username("pk"))
    # A search joins the users (one pass over the names) instead of asking the name subquery
    # of every volunteer: 259 ms against 100,000 volunteers before (docs/benchmarks.md).
    return _board(rows, order=order, search_field="user__username", search=search)


def team_leaderboard(*, order: Order, search: str = "") -> Leaderboard:
    rows = Team.objects.only("name", *CREDIT_COLUMNS)
    return _board(rows, order=order, search_field="name", search=search)


def host_leaderboard(*, order: Order, search: str = "") -> Leaderboard:
    rows = Host.objects.only("name", "platform", "volunteer", *CREDIT_COLUMNS).annotate(
        volunteer_name=_username("volunteer_id", unless_unlisted=True)
    )
    return _board(rows, order=order, search_field="name", search=search)


def _position(row: Model, order: Order, rank: int | None) -> Position:
    return Position(key=getattr(row, order.key), pk=row.pk, rank=rank)


def _after(board: Leaderboard, at: Position, limit: int) -> list[Model]:
    """Rows after ``at`` in board order. Ties on the key are read first by id alone, so a
    long run of equal keys is an index range too, not a filter over everything before."""
    key = board.order.key
    rows = list(board.rows.filter(**{key: at.key, "pk__gt": at.pk})[:limit])
    if len(rows) < limit:
        rows += board.rows.filter(**{f"{key}__lt": at.key})[: limit - len(rows)]
    return rows


def _before(board: Leaderboard, at: Position, limit: int) -> list[Model]:
    """Rows before ``at``, nearest first: the same index read backwards."""
    key = board.order.key
    backwards = board.rows.order_by(key, "-pk")
    rows = list(backwards.filter(**{key: at.key, "pk__lt": at.pk})[:limit])
    if len(rows) < limit:
        rows += backwards.filter(**{f"{key}__gt": at.key})[: limit - len(rows)]
    return rows


def leaderboard_page(
    board: Leaderboard, *, size: int, after: Position | None = None, before: Position | None = None
) -> Page:
    """``size`` rows after ``after``, or before ``before``, or from the top. Going back past
    the top gives the first page, so every page but the last is full."""
    if before is not None:
        rows = _before(board, before, size + 1)
        if len(rows) <= size:
            return leaderboard_page(board, size=size)
        rows = rows[:size][::-1]
        # Rows that overtook the cursor since it was made can push the start above the top.
        start = max(1, before.rank - size) if board.ranked and before.rank is not None else None
        has_previous, has_next = True, True
    else:
        rows = _after(board, after, size + 1) if after is not None else list(board.rows[: size + 1])
        start = (after.rank if after is not None else 0) if board.ranked else None
        if start is not None:
            start += 1
        has_previous, has_next = after is not None, len(rows) > size
        rows = rows[:size]
    ranks = [start + i if start is not None else None for i in range(len(rows))]
    return Page(
        rows=rows,
        ranks=ranks,
        first=_position(rows[0], board.order, ranks[0]) if rows else None,
        last=_position(rows[-1], board.order, ranks[-1]) if rows else None,
        has_previous=has_previous,
        has_next=has_next,
    )


def get_volunteer(volunteer_id: int) -> Volunteer:
    # An id past any column's range is unknown, not an overflow in the database driver.
    in_range = 0 < volunteer_id < 2**63
    # A deleted account (its user made inactive) is no one's to look up.
    found = Volunteer.objects.only("pk").filter(pk=volunteer_id, user__is_active=True)
    volunteer = found.first() if in_range else None
    if volunteer is None:
        raise NotFound("no such volunteer")
    return volunteer


@dataclass(frozen=True)
class DayCredit:
    day: date
    credit: Decimal


def credit_history(*, volunteer: Volunteer, days: int, now: datetime) -> list[DayCredit]:
    """Credit granted on each of the last ``days`` UTC days up to today, oldest first, with
    the days without credit as zero so that a chart has every day."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    granted = dict(
        CreditDay.objects.filter(volunteer=volunteer, day__gte=first, day__lte=today).values_list(
            "day", "credit"
        )
    )
    return [
        DayCredit(day=day, credit=granted.get(day, Decimal(0)))
        for day in (first + timedelta(days=n) for n in range(days))
    ]


def credit_grants() -> int:
    """Replicas validated and credited so far: the ledger's length (one grant each; a
    reversal is an entry too, so this only grows)."""
    return LedgerHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0


def units_awaiting_validation(*, limit: int) -> list[int]:
    return list(
        WorkUnit.objects.filter(need_validate=True).order_by("id").values_list("id", flat=True)[:limit]
    )
