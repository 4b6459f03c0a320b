"""What a client learns as it attaches: the project's name, code-signing key and suggestions."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coordinator.core import client_wheel, keys
from coordinator.core.errors import Unavailable

PROTOCOL_VERSION = 2  # 2: outputs go straight to storage under a POST policy


class ClientOfferSerializer(serializers.Serializer):
    version = serializers.CharField(allow_null=True, help_text="the client version this project serves")
    min_version = serializers.CharField(allow_null=True, help_text="older clients are refused (426)")
    install_page = serializers.URLField(help_text="the install command for each platform")
    wheel_url = serializers.URLField(allow_null=True)
    sha256 = serializers.CharField(allow_null=True, help_text="SHA-256 of the wheel, checked by pip")
    requirement = serializers.CharField(
        allow_null=True, help_text="what pip installs: the wheel and its hash"
    )


class ProjectSerializer(serializers.Serializer):
    name = serializers.CharField()
    protocol = serializers.IntegerField(help_text="the host protocol's version")
    code_signing_key = serializers.CharField(help_text="the Ed25519 public key app bundles are signed with")
    fingerprint = serializers.CharField(help_text="SHA-256 of that key, to compare with the project's site")
    suggested_preferences = serializers.DictField(help_text="defaults it suggests; local settings win")
    client = ClientOfferSerializer(help_text="how to install the client, and the oldest one allowed")


class ProjectView(APIView):
    """Public facts a client pins when it attaches (trust on first use, checked by fingerprint)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses={200: ProjectSerializer, 503: OpenApiResponse(description="no signing key yet")})
    def get(self, request: Request) -> Response:
        try:
            public = keys.project_public_key_b64()
        except keys.ProjectKeyError as error:
            raise Unavailable(f"this project cannot sign apps yet: {error}") from error
        return Response(
            {
                "name": settings.PROJECT_NAME,
                "protocol": PROTOCOL_VERSION,
                "code_signing_key": public,
                "fingerprint": keys.fingerprint(public),
                "suggested_preferences": settings.SUGGESTED_PREFERENCES,
                "client": client_wheel.offer(request.build_absolute_uri("/")),
            }
        )
