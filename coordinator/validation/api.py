"""Public credit statistics: leaderboards of volunteers, teams and hosts, and a volunteer's
credit per day. No authentication, as BOINC's statistics are public; keys, tokens and
e-mail addresses are never read here, let alone shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from coordinator.accounts.models import CreditTotals, Host, Team, Volunteer
from coordinator.standing.credit import rac_now
from coordinator.validation import selectors
from coordinator.validation.cursors import CursorRefused, board_page, list_tag
from coordinator.validation.selectors import UNLISTED_HOST, Leaderboard, Order

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
ERRORS = {400: OpenApiResponse(description="bad query parameter or cursor")}

# --- serializers: the contract of the statistics --------------------------------------------


class LeaderboardQuerySerializer(serializers.Serializer):
    order = serializers.ChoiceField(
        choices=[o.value for o in Order],
        default=Order.TOTAL.value,
        help_text="total: by total credit; recent: by recent average credit",
    )
    search = serializers.CharField(
        max_length=150,
        required=False,
        allow_blank=True,
        default="",
        help_text="only names containing this, ignoring case; rows are then not ranked",
    )
    page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=PAGE_SIZE)
    cursor = serializers.CharField(
        max_length=512, required=False, help_text="from the next or previous link of a page"
    )


class LeaderboardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField(
        allow_null=True,
        help_text="place on the board, 1 at the top; null under a search, where finding the "
        "place would mean counting every row ahead",
    )
    id = serializers.IntegerField()
    name = serializers.CharField()
    total_credit = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True)
    recent_average_credit = serializers.FloatField(
        help_text="credits per day, decayed to the time of the request"
    )


class HostLeaderboardRowSerializer(LeaderboardRowSerializer):
    platform = serializers.CharField()
    volunteer_id = serializers.IntegerField(allow_null=True, help_text="null: the volunteer is not listed")
    volunteer_name = serializers.CharField(allow_null=True)


class LeaderboardPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = LeaderboardRowSerializer(many=True)


class HostLeaderboardPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = HostLeaderboardRowSerializer(many=True)


class CreditHistoryQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=365, default=30)


class CreditDaySerializer(serializers.Serializer):
    day = serializers.DateField(help_text="a UTC day")
    credit = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True)


# --- cursors -------------------------------------------------------------------------------
# --- rows ----------------------------------------------------------------------------------


# The leaderboard selectors annotate the names (the user's, for volunteers and their hosts).
class _Name(TypedDict):
    name: str


class _VolunteerName(TypedDict):
    volunteer_name: str | None  # None: the volunteer is not listed


def _credit(row: CreditTotals, rank: int | None, now: datetime) -> dict[str, Any]:
    return {
        "rank": rank,
        "id": row.pk,
        "total_credit": row.total_credit,
        "recent_average_credit": rac_now(row.rac, row.rac_time, now),
    }


def volunteer_row(
    volunteer: WithAnnotations[Volunteer, _Name], rank: int | None, now: datetime
) -> dict[str, Any]:
    return {**_credit(volunteer, rank, now), "name": volunteer.name}


def team_row(team: Team, rank: int | None, now: datetime) -> dict[str, Any]:
    return {**_credit(team, rank, now), "name": team.name}


def host_row(host: WithAnnotations[Host, _VolunteerName], rank: int | None, now: datetime) -> dict[str, Any]:
    """A computer's row; one of a volunteer who is not listed names neither it nor them."""
    listed = host.volunteer_name is not None
    return {
        **_credit(host, rank, now),
        "name": host.name if listed else UNLISTED_HOST,
        "platform": host.platform,
        "volunteer_id": host.volunteer_id if listed else None,
        "volunteer_name": host.volunteer_name,
    }


# --- views ---------------------------------------------------------------------------------


class PublicView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]


class LeaderboardView(PublicView):
    """A board ranked by total or by recent average credit, a page at a time by cursor."""

    board: str
    select: Callable[..., Leaderboard]
    row: Callable[[Any, int | None, datetime], dict[str, Any]]
    page_serializer: type[serializers.Serializer]

    def get(self, request: Request) -> Response:
        query = LeaderboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        order, search = Order(params["order"]), params["search"]
        tag = list_tag(self.board, order, search)
        board = self.select(order=order, search=search)
        try:
            shown = board_page(
                board=board, tag=tag, order=order, cursor=params.get("cursor"), size=params["page_size"]
            )
        except CursorRefused as error:
            raise serializers.ValidationError({"cursor": [str(error)]}) from error
        page, now = shown.page, timezone.now()
        payload = {
            "next": self._link(request, shown.next),
            "previous": self._link(request, shown.previous),
            "results": [self.row(row, rank, now) for row, rank in zip(page.rows, page.ranks, strict=True)],
        }
        return Response(self.page_serializer(payload).data)

    @staticmethod
    def _link(request: Request, cursor: str | None) -> str | None:
        return replace_query_param(request.build_absolute_uri(), "cursor", cursor) if cursor else None


def _documented(what: str, page: type[serializers.Serializer]) -> Callable:
    return extend_schema_view(
        get=extend_schema(
            summary=f"{what} by total or recent average credit",
            parameters=[LeaderboardQuerySerializer],
            responses={200: page, **ERRORS},
        )
    )


@_documented("Volunteers", LeaderboardPageSerializer)
class VolunteerLeaderboardView(LeaderboardView):
    board = "volunteers"
    select = staticmethod(selectors.volunteer_leaderboard)
    row = staticmethod(volunteer_row)
    page_serializer = LeaderboardPageSerializer


@_documented("Teams", LeaderboardPageSerializer)
class TeamLeaderboardView(LeaderboardView):
    board = "teams"
    select = staticmethod(selectors.team_leaderboard)
    row = staticmethod(team_row)
    page_serializer = LeaderboardPageSerializer


@_documented("Hosts", HostLeaderboardPageSerializer)
class HostLeaderboardView(LeaderboardView):
    board = "hosts"
    select = staticmethod(selectors.host_leaderboard)
    row = staticmethod(host_row)
    page_serializer = HostLeaderboardPageSerializer


class CreditHistoryView(PublicView):
    """A volunteer's credit per UTC day over the last ``days`` days, zero days included."""

    @extend_schema(
        parameters=[CreditHistoryQuerySerializer],
        responses={
            200: CreditDaySerializer(many=True),
            400: OpenApiResponse(description="days is not a whole number from 1 to 365"),
            404: OpenApiResponse(description="no such volunteer"),
        },
    )
    def get(self, request: Request, volunteer_id: int) -> Response:
        query = CreditHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        volunteer = selectors.get_volunteer(volunteer_id)
        history = selectors.credit_history(
            volunteer=volunteer, days=query.validated_data["days"], now=timezone.now()
        )
        return Response(CreditDaySerializer(history, many=True).data)
