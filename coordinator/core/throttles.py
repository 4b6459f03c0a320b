"""Rate limits keyed by who is calling, kept in the shared cache (``CACHE_URL``).

The generic machinery: live rates, the caller's address, limits per address. A limit keyed
by a domain object lives with its app (the per-host one in ``coordinator.accounts.throttles``).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle


class LiveRate:
    """Reads the scope's rate when asked, not at import, so settings (and tests) may change it."""

    scope: str | None

    def get_rate(self) -> str | None:
        # The stubs type the rates as numbers; DRF's are "N/period" strings.
        rates = cast("dict[str | None, str | None]", api_settings.DEFAULT_THROTTLE_RATES)
        return rates.get(self.scope)


@lru_cache(maxsize=8)
def _proxies(allowed: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """The networks of ``FORWARDED_ALLOW_IPS`` (empty: no proxy, the default); None when it
    is ``*`` (any peer is a proxy)."""
    if any(entry.strip() == "*" for entry in allowed):
        return None
    try:
        return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in allowed if entry.strip())
    except ValueError as error:
        raise ImproperlyConfigured(f"FORWARDED_ALLOW_IPS: {error}") from error


def client_address(request: HttpRequest | Request) -> str:
    """The caller's address, for limits per address.

    ``X-Forwarded-For`` is believed only from a proxy in ``FORWARDED_ALLOW_IPS`` (as gunicorn
    reads it), and only its last entry, the one that proxy wrote: a client that sends a new
    header with each request still counts as one address.
    """
    peer = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not forwarded:
        return peer
    proxies = _proxies(tuple(settings.FORWARDED_ALLOW_IPS))
    if proxies is not None:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return peer
        if not any(address in network for network in proxies):
            return peer
    try:
        return str(ipaddress.ip_address(forwarded.rsplit(",", 1)[-1].strip()))
    except ValueError:
        return peer


class AddressRateThrottle(LiveRate, ScopedRateThrottle):
    """DRF's scoped limit (``throttle_scope`` on the view) per :func:`client_address`."""

    def get_ident(self, request: Request) -> str:
        return client_address(request)


class PageRateThrottle(LiveRate, SimpleRateThrottle):
    """An API scope's limit per :func:`client_address`, for a plain Django view to share:
    ``PageRateThrottle("signup").allow_request(request, None)``."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def allow_request(self, request: HttpRequest | Request, view: Any) -> bool:
        # A plain Django request and no view: DRF's check reads only META and the cache here.
        return super().allow_request(request, view)  # type: ignore[arg-type]

    def get_cache_key(self, request: HttpRequest, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class FailedSigninThrottle(PageRateThrottle):
    """Wrong passwords per address on the sign-in pages, counted in the token endpoint's
    allowance (``THROTTLE_TOKEN``): guessing through the pages and the API together gets that
    many tries. :meth:`allow_request` only looks; :meth:`record_failure` counts."""

    def __init__(self) -> None:
        super().__init__("token")

    def throttle_success(self) -> bool:
        return True

    def record_failure(self) -> None:
        """Count one wrong password (after :meth:`allow_request` said yes)."""
        if self.rate is not None:
            super().throttle_success()
