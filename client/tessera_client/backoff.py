"""When to contact a project again: BOINC's manners, exponential back-off with full jitter."""

from __future__ import annotations

import math
import random
from typing import Any


def _seconds(value: Any) -> float:
    """A wait the network or a file gave us, as finite seconds >= 0 (anything else: 0)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


class Backoff:
    """Doubles the wait after each failure up to ``cap`` and picks a random point below it, so
    thousands of clients that lost the coordinator at once do not return at once; honours the
    coordinator's ``Retry-After`` and ``next_rpc_seconds``.

    Every wait is at most ``cap``, even one the coordinator asks for: a broken or hostile
    reply must not park the client for days, and a coordinator still busy says so again.
    """

    def __init__(
        self, *, base: float = 60.0, cap: float = 4 * 3600.0, rng: random.Random | None = None
    ) -> None:
        if not (base >= 0 and cap >= 0):
            raise ValueError(f"back-off needs base and cap >= 0, not base={base!r}, cap={cap!r}")
        self.base, self.cap = base, cap
        self.rng = rng or random.Random()
        self.failures = 0
        self.next_time = 0.0

    def ready(self, now: float) -> bool:
        """May the project be contacted at ``now``? A wait longer than ``cap`` can only come
        from a clock set back (or a damaged state file), so it is cut to ``cap``."""
        if self.next_time > now + self.cap:
            self.next_time = now + self.cap
        return now >= self.next_time

    def ceiling(self) -> float:
        """The most the current run of failures may wait: ``base * 2**(failures - 1)``, up to ``cap``."""
        return min(self.cap, self.base * 2 ** min(max(self.failures - 1, 0), 60))

    def failed(self, now: float, retry_after: float | None = None) -> float:
        """Note a failure; returns the delay chosen before the next attempt: uniform in
        [0, ceiling] (full jitter), and never less than the server's ``Retry-After``."""
        self.failures += 1
        delay = self.rng.uniform(0.0, self.ceiling())
        if retry_after is not None:
            delay = max(delay, min(_seconds(retry_after), self.cap))
        self.next_time = now + delay
        return delay

    def succeeded(self, now: float, next_rpc_seconds: float = 0.0) -> None:
        """The coordinator answered: forget the failures and come back when it asked."""
        self.failures = 0
        self.next_time = now + min(_seconds(next_rpc_seconds), self.cap)

    def to_json(self) -> dict[str, Any]:
        return {"failures": self.failures, "next_time": self.next_time}

    @classmethod
    def from_json(cls, data: Any, **options: Any) -> Backoff:
        """The back-off saved by ``to_json``; a damaged copy gives a fresh one, never an error."""
        backoff = cls(**options)
        if not isinstance(data, dict):
            return backoff
        try:
            failures = int(data.get("failures", 0))
            next_time = float(data.get("next_time", 0.0))
        except (TypeError, ValueError, OverflowError):
            return backoff
        if math.isfinite(next_time):
            backoff.failures, backoff.next_time = max(0, min(failures, 1000)), next_time
        return backoff
