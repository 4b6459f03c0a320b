"""What the generated OpenAPI schema says for every operation alike (drf-spectacular hooks)."""

from __future__ import annotations

from typing import Any

UNSUPPORTED_MEDIA_TYPE = {
    "description": "the body is in no media type this operation reads (or has no Content-Type)"
}
DATABASE_UNAVAILABLE = {
    "description": "the database is away for a moment (a restart, a failover): try again after Retry-After"
}


def document_unsupported_media_type(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """DRF answers 415 to a body none of the view's parsers reads, before the view runs, so
    every operation that takes a body can answer it: say so once, here, for all of them."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault("415", UNSUPPORTED_MEDIA_TYPE)
    return result


def document_database_unavailable(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Any operation may answer 503 while the database is away
    (``coordinator.core.middleware``)."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.setdefault("responses", {}).setdefault("503", DATABASE_UNAVAILABLE)
    return result
