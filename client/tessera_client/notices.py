"""Project notices, as BOINC's: the daemon fetches a project's news now and then, and
``tessera status`` shows the volunteer those not read yet, once.

Notices are the project's words on the volunteer's terminal: each is checked for shape, and
its text loses control characters (no terminal escapes) and is cut to a bounded length.
"""

from __future__ import annotations

from typing import Any

from tessera_client.host_tools import clean
from tessera_client.protocol import API_PREFIX, ProjectSession
from tessera_client.state import DataDir, Runtime

FETCH_INTERVAL = 3600.0  # seconds between two looks at a project's news
KEPT = 20  # the newest this many are kept per project
TITLE_MAX, BODY_MAX = 200, 2000
ID_MAX = 2**63 - 1


def due(runtime: Runtime, now: float) -> bool:
    return now - runtime.notices_checked >= FETCH_INTERVAL or now < runtime.notices_checked


def parse(item: Any) -> dict[str, Any] | None:
    """One notice from the project's reply, cleaned, or None when it is not one."""
    if not isinstance(item, dict):
        return None
    number, title, body, created = (item.get(key) for key in ("id", "title", "body", "created_at"))
    if type(number) is not int or not 0 < number <= ID_MAX:
        return None
    if not all(isinstance(text, str) for text in (title, body, created)):
        return None
    return {
        "id": number,
        "title": clean(title, TITLE_MAX),
        "body": clean(body, BODY_MAX),
        "created_at": clean(created, 40),
    }


def refresh(session: ProjectSession, runtime: Runtime, now: float) -> int:
    """Fetch the notices newer than those kept; returns how many arrived. The caller handles
    a project that cannot be reached (``ProtocolError``, ``requests`` errors, bad JSON)."""
    runtime.notices_checked = now
    newest = max((notice["id"] for notice in runtime.notices), default=0)
    reply = session.request("GET", f"{API_PREFIX}/notices?after={newest}", sign=False).json()
    items = reply.get("notices") if isinstance(reply, dict) else None
    arrived = [notice for notice in map(parse, items if isinstance(items, list) else []) if notice]
    fresh = [notice for notice in arrived if notice["id"] > newest]
    runtime.notices = sorted(runtime.notices + fresh, key=lambda notice: notice["id"])[-KEPT:]
    return len(fresh)


def read_up_to(data: DataDir, project: str) -> int:
    try:
        return int(data.notices_read_file(project).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def unread(data: DataDir, project: str, runtime: Runtime) -> list[dict[str, Any]]:
    seen = read_up_to(data, project)
    return [notice for notice in runtime.notices if notice["id"] > seen]


def mark_read(data: DataDir, project: str, notices: list[dict[str, Any]]) -> None:
    newest = max((notice["id"] for notice in notices), default=0)
    if newest > read_up_to(data, project):
        data.notices_read_file(project).write_text(f"{newest}\n")
