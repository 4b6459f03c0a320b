"""DRF authentication for the two kinds of caller: a volunteer's token and a signed host."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from tessera_client import signing

from coordinator.accounts.models import Host, Volunteer
from coordinator.accounts.services import SignedRequest, authenticate_host, volunteer_for_token
from coordinator.core.errors import AuthenticationRejected, PayloadTooLarge


class AccountTokenAuthentication(BaseAuthentication):
    """``Authorization: Token tsr_…``: the volunteer's account token."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, Volunteer] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, token = header.partition(" ")
        if keyword != self.keyword or not token.strip():
            raise AuthenticationRejected("use 'Authorization: Token <account token>'")
        volunteer = volunteer_for_token(token.strip())
        return volunteer.user, volunteer

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def signed_request_of(request: Request, max_body: int) -> SignedRequest:
    """The signature headers and the raw request, refusing bodies over ``max_body`` unread."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit():
        raise AuthenticationRejected("Content-Length is malformed")
    if int(length) > max_body:
        raise PayloadTooLarge(f"the body is larger than {max_body} bytes")
    meta = request.META
    return SignedRequest(
        method=request.method or "",
        path=request.get_full_path(),
        body=request.body,
        host_id=meta.get("HTTP_X_TESSERA_HOST"),
        timestamp=meta.get("HTTP_X_TESSERA_TIMESTAMP"),
        nonce=meta.get("HTTP_X_TESSERA_NONCE"),
        signature=meta.get("HTTP_X_TESSERA_SIGNATURE"),
    )


def max_body_for(request: Request) -> int:
    view = request.parser_context.get("view") if request.parser_context else None
    return getattr(view, "max_body_bytes", settings.TESSERA["REQUEST_BODY_MAX"])


class HostSignatureAuthentication(BaseAuthentication):
    """Every host request is signed with the host's key (ARCHITECTURE rule 7)."""

    def authenticate(self, request: Request) -> tuple[Any, Host]:
        signed = signed_request_of(request, max_body_for(request))
        host = authenticate_host(signed=signed, now=timezone.now())
        return host.volunteer.user, host

    def authenticate_header(self, request: Request) -> str:
        return 'Tessera-Ed25519 realm="api"'


class AccountTokenScheme(OpenApiAuthenticationExtension):
    target_class = AccountTokenAuthentication
    name = "accountToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <account token>`, as issued at sign-up or regenerated.",
        }


class HostSignatureScheme(OpenApiAuthenticationExtension):
    target_class = HostSignatureAuthentication
    name = "hostSignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": signing.HEADER_SIGNATURE,
            "description": (
                f"Ed25519 signature (base64) of '{signing.SCHEME}\\nMETHOD\\nPATH\\nTIMESTAMP\\n"
                "NONCE\\nSHA256(body)', with the headers "
                f"{signing.HEADER_HOST}, {signing.HEADER_TIMESTAMP} and {signing.HEADER_NONCE}."
            ),
        }
