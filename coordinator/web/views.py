"""The public pages: server-rendered, thin; the rules live in the selectors."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from coordinator.community.selectors import published_notices
from coordinator.validation import selectors as credit
from coordinator.validation.cursors import CursorRefused, board_page, list_tag
from coordinator.validation.selectors import Order
from coordinator.web.charts import bar_chart
from coordinator.web.client_views import install_context
from coordinator.web.selectors import board_rows, project_status, validated_per_hour
from coordinator.work.selectors import replica_counts, unit_counts, units_awaiting_validation

PAGE_SIZE = 50
STATUS_NOTICES = 3
NOTICES_SHOWN = 50
MAX_SEARCH = 100
BOARDS = {
    "volunteers": ("Volunteers", credit.volunteer_leaderboard),
    "teams": ("Teams", credit.team_leaderboard),
    "hosts": ("Computers", credit.host_leaderboard),
}


def home(request: HttpRequest) -> HttpResponse:
    """The coordinator's front page: what it is, how busy it is, where to go next."""
    context = {
        "units": unit_counts(),
        "awaiting_validation": units_awaiting_validation(),
        "replicas": replica_counts(),
        **install_context(request),
    }
    return render(request, "web/home.html", context)


def status(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    hourly = [(hour.strftime("%H:00"), count) for hour, count in validated_per_hour(now=now)]
    context = {
        "nav": "status",
        "status": project_status(now=now),
        "chart": bar_chart(
            "Results validated per hour, last 24 hours (UTC)", hourly, unit="results", label_every=3
        ),
        "notices": published_notices(limit=STATUS_NOTICES),
        **install_context(request),
    }
    return render(request, "web/status.html", context)


def notices(request: HttpRequest) -> HttpResponse:
    """The project's news, newest first."""
    return render(
        request, "web/notices.html", {"nav": "notices", "notices": published_notices(limit=NOTICES_SHOWN)}
    )


def leaderboard(request: HttpRequest, board: str) -> HttpResponse:
    """A board by total or recent average credit, searchable, a page at a time by cursor."""
    if board not in BOARDS:
        raise Http404("no such leaderboard")
    title, select = BOARDS[board]
    order = Order.RECENT if request.GET.get("order") == Order.RECENT.value else Order.TOTAL
    search = request.GET.get("search", "")
    notice = ""
    if "\x00" in search:  # no name holds one, and PostgreSQL refuses it in text
        search, notice = search.replace("\x00", ""), "A NUL character cannot be in a name; it was left out."
    search = search.strip()
    if len(search) > MAX_SEARCH:
        search, notice = search[:MAX_SEARCH], f"Searches are at most {MAX_SEARCH} characters; yours was cut."
    tag = list_tag(board, order, search)
    ranked = select(order=order, search=search)
    try:
        shown = board_page(
            board=ranked, tag=tag, order=order, cursor=request.GET.get("cursor"), size=PAGE_SIZE
        )
    except CursorRefused:
        notice = "That page link is not valid for this list (it may be from another search); here is the top."
        shown = board_page(board=ranked, tag=tag, order=order, cursor=None, size=PAGE_SIZE)
    page = shown.page
    base = {"order": order.value, **({"search": search} if search else {})}

    def link(cursor: str | None) -> str | None:
        return (
            f"{reverse('leaderboard', args=[board])}?{urlencode({**base, 'cursor': cursor})}"
            if cursor
            else None
        )

    context = {
        "nav": "leaderboards",
        "board": board,
        "title": title,
        "boards": {key: name for key, (name, _) in BOARDS.items()},
        "order": order.value,
        "search": search,
        "notice": notice,
        "rows": board_rows(board, page.rows, page.ranks, viewer=request.user, now=timezone.now()),
        "next": link(shown.next),
        "previous": link(shown.previous),
    }
    return render(request, "web/leaderboard.html", context)
