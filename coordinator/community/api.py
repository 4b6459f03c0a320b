"""``GET /api/v1/notices``: the project's news, for clients to show their volunteer."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coordinator.community.selectors import NOTICES_PER_REPLY, published_notices


class NoticeQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0, max_value=2**63 - 1, default=0, help_text="only notices with a higher id"
    )


class NoticeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField(help_text="plain text, never markup")
    created_at = serializers.DateTimeField()


class NoticeListSerializer(serializers.Serializer):
    notices = NoticeSerializer(many=True)


class NoticeListView(APIView):
    """The newest published notices (at most 20), newest first; ``after`` skips those seen."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[NoticeQuerySerializer],
        responses={200: NoticeListSerializer, 400: OpenApiResponse(description="a bad after")},
    )
    def get(self, request: Request) -> Response:
        query = NoticeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        notices = published_notices(after=query.validated_data["after"], limit=NOTICES_PER_REPLY)
        return Response({"notices": NoticeSerializer(notices, many=True).data})
