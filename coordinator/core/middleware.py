"""A database that is away (restarting, failing over, locked) answers 503, not 500.

Clients back off on 503 and come back after ``Retry-After``; a 500 would say the request
itself was at fault, and would fill the logs with tracebacks for a passing outage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
        detail = "the database is unavailable for a moment; try again later"
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                {"error": "database_unavailable", "detail": detail}, status=503
            )
        else:
            response = HttpResponse(detail.capitalize() + ".", status=503, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
