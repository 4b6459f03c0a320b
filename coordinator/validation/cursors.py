"""Leaderboard cursors: the position of a page's first or last row, signed so that nobody
can make a board show a rank it did not compute, and bound to its board, order and search.
Shared by the API and the public pages."""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal, InvalidOperation

from django.core import signing

from coordinator.validation.selectors import Order, Position

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
    try:
        key: Decimal | float = Decimal(raw) if order is Order.TOTAL else float(raw)
    except (InvalidOperation, TypeError, ValueError) as error:
        raise refused from error
    finite = key.is_finite() if isinstance(key, Decimal) else math.isfinite(key)
    if not (finite and isinstance(pk, int) and (rank is None or isinstance(rank, int))):
        raise refused
    return data["d"], Position(key=key, pk=pk, rank=rank)
