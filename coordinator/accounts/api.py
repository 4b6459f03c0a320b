"""Volunteer sign-up, account tokens and host registration."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.contrib.auth import authenticate
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coordinator.accounts import names, services
from coordinator.accounts.authentication import AccountTokenAuthentication, max_body_for, signed_request_of
from coordinator.accounts.host_description import PLATFORM, HostDescriptionSerializer, host_fields
from coordinator.accounts.limits import record_signup
from coordinator.accounts.models import Volunteer
from coordinator.accounts.relation import network_of
from coordinator.core.client_version import CurrentClient
from coordinator.core.errors import AuthenticationRejected, PermissionRefused
from coordinator.core.throttles import AddressRateThrottle, client_address


class NameField(serializers.RegexField):
    """A volunteer's name: hidden characters get the names rule's own refusal (a 400 with its
    code), not the pattern's vaguer "does not match"."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        names.refuse_hidden_characters(value)
        return value


class SignupSerializer(serializers.Serializer):
    username = NameField(r"^[\w.@+-]{1,150}$", max_length=150)
    password = serializers.CharField(write_only=True, min_length=1, max_length=128)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    listed = serializers.BooleanField(
        default=False, help_text="agree to be shown on the leaderboards and in the stats export"
    )
    email_ok = serializers.BooleanField(default=False, help_text="agree to be emailed by the project")


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, max_length=128)


class AccountTokenSerializer(serializers.Serializer):
    volunteer_id = serializers.IntegerField()
    username = serializers.CharField()
    account_token = serializers.CharField(help_text="shown once; attach hosts with it")


class HostRegisterSerializer(HostDescriptionSerializer):
    """The host's key and name, and what it is (docs/platforms.md; the description's parts
    beyond the first four are optional)."""

    public_key = serializers.CharField(max_length=64, help_text="Ed25519 public key, base64")
    name = serializers.CharField(max_length=64)
    platform = serializers.RegexField(PLATFORM, max_length=64, help_text="its primary platform")
    n_cpus = serializers.IntegerField(min_value=1, max_value=4096)
    memory_bytes = serializers.IntegerField(min_value=0, max_value=2**50)
    flops = serializers.FloatField(min_value=0, max_value=1e15, default=0.0)


class HostRegisteredSerializer(serializers.Serializer):
    host_id = serializers.IntegerField()


def token_reply(volunteer: Volunteer, token: str) -> dict[str, Any]:
    return {"volunteer_id": volunteer.pk, "username": volunteer.user.get_username(), "account_token": token}


class SignupView(APIView):
    """Create a volunteer account; the reply holds the account token, shown this once."""

    throttle_classes = [AddressRateThrottle]
    throttle_scope = "signup"

    @extend_schema(
        request=SignupSerializer,
        responses={
            201: AccountTokenSerializer,
            400: OpenApiResponse(description="invalid"),
            403: OpenApiResponse(description="sign-up is closed (SIGNUP_OPEN)"),
            409: OpenApiResponse(description="name taken"),
            429: OpenApiResponse(description="slow down"),
        },
    )
    def post(self, request: Request) -> Response:
        if not settings.TESSERA["SIGNUP_OPEN"]:
            raise PermissionRefused("this project takes no new accounts now", code="signup_closed")
        incoming = SignupSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        now = timezone.now()
        answers = incoming.validated_data
        volunteer, token = services.create_volunteer(
            username=answers["username"],
            password=answers["password"],
            email=answers["email"],
            now=now,
            consent=(answers["listed"], answers["email_ok"]),
        )
        record_signup(volunteer=volunteer, address=client_address(request), now=now)
        return Response(token_reply(volunteer, token), status=status.HTTP_201_CREATED)


class TokenView(APIView):
    """Issue a new account token for a username and password; the old token stops working."""

    throttle_classes = [AddressRateThrottle]
    throttle_scope = "token"

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            200: AccountTokenSerializer,
            400: OpenApiResponse(description="invalid"),
            401: OpenApiResponse(description="wrong name or password"),
            429: OpenApiResponse(description="slow down"),
        },
    )
    def post(self, request: Request) -> Response:
        incoming = TokenRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        user = authenticate(request._request, **incoming.validated_data)
        volunteer = getattr(user, "volunteer", None) if user is not None else None
        if volunteer is None:
            raise AuthenticationRejected("wrong username or password")
        token = services.issue_account_token(volunteer=volunteer, now=timezone.now())
        return Response(token_reply(volunteer, token))


class HasAccountToken(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Volunteer)


class HostRegisterView(APIView):
    """Register a host key under the volunteer's account.

    Send the account token as ``Authorization: Token …`` and sign the request with the new
    host key (no X-Tessera-Host header yet): that proves the host holds the key.
    """

    authentication_classes = [AccountTokenAuthentication]
    permission_classes = [HasAccountToken, CurrentClient]

    @extend_schema(
        request=HostRegisterSerializer,
        responses={
            201: HostRegisteredSerializer,
            200: HostRegisteredSerializer,
            400: OpenApiResponse(description="invalid"),
            401: OpenApiResponse(description="bad token or key signature"),
            409: OpenApiResponse(description="key belongs to another volunteer"),
            426: OpenApiResponse(description="the client is older than the project's minimum: upgrade it"),
        },
    )
    def post(self, request: Request) -> Response:
        signed = signed_request_of(request, max_body_for(request))
        incoming = HostRegisterSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        host, created = services.register_host(
            volunteer=cast(Volunteer, request.auth),  # HasAccountToken admitted only a volunteer
            signed=signed,
            now=timezone.now(),
            network=network_of(client_address(request)),
            public_key=data["public_key"],
            name=data["name"],
            n_cpus=data["n_cpus"],
            memory_bytes=data["memory_bytes"],
            flops=data["flops"],
            description=host_fields(data, platform=data["platform"]),
        )
        return Response(
            {"host_id": host.pk}, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
