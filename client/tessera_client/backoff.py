"""When to contact a project again: BOINC's manners, exponential back-off with full jitter."""

from __future__ import annotations

import random
from typing import Any


class Backoff:
    """Doubles the wait after each failure up to ``cap`` and picks a random point below it, so
    thousands of clients that lost the coordinator at once do not return at once; honours the
    coordinator's ``Retry-After`` and ``next_rpc_seconds``."""

    def __init__(
        self, *, base: float = 60.0, cap: float = 4 * 3600.0, rng: random.Random | None = None
    ) -> None:
        self.base, self.cap = base, cap
        self.rng = rng or random.Random()
        self.failures = 0
        self.next_time = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.next_time

    def failed(self, now: float, retry_after: float | None = None) -> float:
        """Note a failure; returns the delay chosen before the next attempt."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 60))
        delay = self.rng.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        self.next_time = now + delay
        return delay

    def succeeded(self, now: float, next_rpc_seconds: float = 0.0) -> None:
        self.failures = 0
        self.next_time = now + max(0.0, min(next_rpc_seconds, self.cap))

    def to_json(self) -> dict[str, Any]:
        return {"failures": self.failures, "next_time": self.next_time}

    @classmethod
    def from_json(cls, data: dict[str, Any], **options: Any) -> Backoff:
        backoff = cls(**options)
        try:
            backoff.failures = max(0, int(data.get("failures", 0)))
            backoff.next_time = float(data.get("next_time", 0.0))
        except (TypeError, ValueError):
            pass  # a damaged cache: start afresh
        return backoff
