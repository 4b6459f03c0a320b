"""The one place where domain errors become HTTP responses (rule 8: a clear 4xx)."""

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from coordinator.core.client_version import ClientTooOld
from coordinator.core.errors import (
    AuthenticationRejected,
    Conflict,
    DomainError,
    InvalidInput,
    LimitReached,
    NotFound,
    PayloadTooLarge,
    PermissionRefused,
    Unavailable,
)

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    InvalidInput: status.HTTP_400_BAD_REQUEST,
    AuthenticationRejected: status.HTTP_401_UNAUTHORIZED,
    PermissionRefused: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    LimitReached: status.HTTP_429_TOO_MANY_REQUESTS,
    PayloadTooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    ClientTooOld: status.HTTP_426_UPGRADE_REQUIRED,
}


def status_for(error: DomainError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return status.HTTP_400_BAD_REQUEST


def handle_api_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render domain errors and DRF's own as ``{"error": code, "detail": text}``."""
    if isinstance(exc, DomainError):
        reply = Response({"error": exc.code, "detail": exc.message}, status=status_for(exc))
        if isinstance(exc, AuthenticationRejected):
            view, request = context.get("view"), context.get("request")
            scheme = (
                view.get_authenticate_header(request) if view is not None and request is not None else None
            )
            reply["WWW-Authenticate"] = scheme or 'Tessera-Ed25519 realm="api"'
        if isinstance(exc, (LimitReached, Unavailable, ClientTooOld)) and exc.retry_after > 0:
            reply["Retry-After"] = str(exc.retry_after)
        return reply
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"error": "invalid_input", "detail": response.data}
    elif isinstance(exc, exceptions.APIException):
        response.data = {
            "error": exc.get_codes() if isinstance(exc.get_codes(), str) else "error",
            "detail": str(exc.detail),
        }
    return response
