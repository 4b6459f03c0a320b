"""Leaderboard cursors: the position of a page's first or last row, signed so that nobody
can make a board show a rank it did not compute, and bound to its board, order and search.
Shared by the API and the public pages."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.core import signing

from coordinator.validation.selectors import Leaderboard, Order, Page, Position, leaderboard_page

CURSOR_SALT = "coordinator.validation.leaderboard-cursor"


class CursorRefused(ValueError):
    """Forged, damaged, or made for another list."""


def list_tag(board: str, order: Order, search: str) -> str:
    return f"{board}:{order.value}:{hashlib.sha256(search.encode()).hexdigest()[:16]}"


def encode_cursor(tag: str, direction: str, position: Position) -> str:
    key = str(position.key) if isinstance(position.key, Decimal) else position.key
    payload = {"l": tag, "d": direction, "k": key, "i": position.pk, "r": position.rank}
    return signing.dumps(payload, salt=CURSOR_SALT)


def decode_cursor(cursor: str, tag: str, order: Order) -> tuple[str, Position]:
    refused = CursorRefused("not a cursor of this list")
    try:
        data = signing.loads(cursor, salt=CURSOR_SALT)
    except signing.BadSignature as error:
        raise refused from error
    if not isinstance(data, dict) or data.get("l") != tag or data.get("d") not in {"next", "previous"}:
        raise refused
    pk, rank, raw = data.get("i"), data.get("r"), data.get("k")
    if raw is None:
        raise refused
    try:
        key: Decimal | float = Decimal(raw) if order is Order.TOTAL else float(raw)
    except (InvalidOperation, TypeError, ValueError) as error:
        raise refused from error
    finite = key.is_finite() if isinstance(key, Decimal) else math.isfinite(key)
    if not (finite and isinstance(pk, int) and (rank is None or isinstance(rank, int))):
        raise refused
    return data["d"], Position(key=key, pk=pk, rank=rank)


@dataclass(frozen=True)
class CursorPage:
    """One page of a board, with the cursors of the pages around it (None at either end)."""

    page: Page
    next: str | None
    previous: str | None


def board_page(*, board: Leaderboard, tag: str, order: Order, cursor: str | None, size: int) -> CursorPage:
    """The page a cursor points at (the top without one), for the pages and the API alike;
    ``CursorRefused`` when the cursor is not one of this list's."""
    after = before = None
    if cursor:
        direction, position = decode_cursor(cursor, tag, order)
        after, before = (position, None) if direction == "next" else (None, position)
    page = leaderboard_page(board, size=size, after=after, before=before)
    following = encode_cursor(tag, "next", page.last) if page.has_next and page.last else None
    preceding = encode_cursor(tag, "previous", page.first) if page.has_previous and page.first else None
    return CursorPage(page, following, preceding)
