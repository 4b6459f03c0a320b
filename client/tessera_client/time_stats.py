"""How much of the time this computer crunches: BOINC's ``time_stats`` (``on_frac``,
``active_frac``), which projects need to send only work that can finish by its deadline.

- ``on_fraction``: the share of wall-clock time the client runs at all. The time between one
  run of the client and the next counts as off.
- ``active_fraction``: of the time it runs, the share in which it may crunch. The volunteer's
  preferences (working hours, in use, on batteries) suspend it the rest of the time.

Both are averages that forget with a time constant of :data:`MEMORY_SECONDS` (ten days, as
BOINC's), so a computer that changes habits is known by its new ones within weeks. They are
kept in ``time_stats.json``, written by the daemon only, at most every :data:`SAVE_SECONDS` and
when it stops. A wall clock set back counts nothing. A fresh client starts at 1 and 1, the
coordinator's default too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tessera_client.files import read_json, write_json_atomic

MEMORY_SECONDS = 10 * 86400.0
SAVE_SECONDS = 300.0
MAX_STEP_SECONDS = 3600.0  # a longer gap while running is a machine asleep: it counts as off


def _blend(fraction: float, seconds: float, value: float) -> float:
    """``fraction`` after ``seconds`` spent at ``value`` (0 or 1)."""
    kept = math.exp(-seconds / MEMORY_SECONDS)
    return fraction * kept + value * (1.0 - kept)


class TimeStats:
    """The two fractions, advanced by the daemon's loop."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        data = read_json(self.path, {})
        self.on_fraction = _fraction(data.get("on_fraction"))
        self.active_fraction = _fraction(data.get("active_fraction"))
        last = data.get("last")
        self.last: float | None = float(last) if isinstance(last, (int, float)) else None
        self.saved_at = 0.0
        self.running = False

    def tick(self, now: float, *, computing: bool) -> None:
        """The loop looked at ``now``: the time since the last look was on (and active, if it
        may crunch now). The first look of a run counts the time since the last run as off."""
        gap = 0.0 if self.last is None else now - self.last
        if gap > 0:
            on = self.running and gap <= MAX_STEP_SECONDS
            self.on_fraction = _blend(self.on_fraction, gap, 1.0 if on else 0.0)
            if on:
                self.active_fraction = _blend(self.active_fraction, gap, 1.0 if computing else 0.0)
        if gap >= 0:
            self.last = now
        self.running = True
        if now - self.saved_at >= SAVE_SECONDS:
            self.save(now)

    def save(self, now: float) -> None:
        write_json_atomic(self.path, self.to_json() | {"last": self.last})
        self.saved_at = now

    def to_json(self) -> dict[str, Any]:
        """What goes into the host description, rounded so that it changes seldom."""
        return {"on_fraction": round(self.on_fraction, 2), "active_fraction": round(self.active_fraction, 2)}


def _fraction(value: Any) -> float:
    return min(1.0, max(0.0, float(value))) if isinstance(value, (int, float)) else 1.0
