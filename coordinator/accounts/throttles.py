"""Rate limits keyed by host: the throttle of the signed host endpoints (scheduler RPC, uploads).

The machinery (live rates, the caller's address, per-address limits) is in
:mod:`coordinator.core.throttles`; this module only knows what a host is.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from coordinator.accounts.models import Host
from coordinator.core.throttles import LiveRate


class HostRateThrottle(LiveRate, SimpleRateThrottle):
    """At most ``THROTTLE_HOST`` signed requests per host (BOINC refuses a host that calls
    again before its request delay): one runaway or hostile host cannot flood the scheduler.
    It runs after the signature check, so a forger cannot spend another host's allowance."""

    scope = "host"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, Host):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
