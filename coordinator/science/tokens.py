"""Scientists' API tokens: made and shown once, kept as a SHA-256, checked on each call."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from coordinator.accounts.services import hash_token
from coordinator.core.errors import AuthenticationRejected, PermissionRefused
from coordinator.science.access import is_scientist
from coordinator.science.models import ScientistToken

TOKEN_PREFIX = "tss_"  # volunteers' account tokens start with tsr_: the two never mix


def issue_scientist_token(*, user: Any, now: datetime) -> str:
    """A new token for a scientist; the old one stops working at once."""
    if not is_scientist(user):
        raise PermissionRefused(f"{user} is not in the scientists group", code="not_a_scientist")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ScientistToken.objects.update_or_create(
        user=user, defaults={"token_hash": hash_token(token), "created": now}
    )
    return token


def scientist_for_token(token: str) -> Any:
    """The user a token belongs to, while they are still an active scientist."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise AuthenticationRejected("the scientist token is not valid")
    found = ScientistToken.objects.select_related("user").filter(token_hash=hash_token(token)).first()
    if found is None or not is_scientist(found.user):
        raise AuthenticationRejected("the scientist token is not valid")
    return found.user
