"""May the client crunch now? The computer's state, read where the platform tells it.

Unknown facts never suspend work: a server with no battery and no keyboard crunches.
"""

from __future__ import annotations

import glob
import math
import os
import time
from datetime import time as time_of_day
from pathlib import Path

from tessera_client.prefs import Preferences

# Relative to the device folder; BOINC on Linux reads the same access times.
INPUT_DEVICES = ("input/event*", "tty[0-9]*", "pts/[0-9]*")
POWER_SUPPLIES = Path("/sys/class/power_supply")


def user_idle_seconds(
    now: float | None = None, dev: Path = Path("/dev"), patterns: tuple[str, ...] = INPUT_DEVICES
) -> float | None:
    """Seconds since the newest keyboard, mouse or terminal input, from the access times of the
    devices matching ``patterns`` under ``dev`` (reading a device updates its atime, which is
    what BOINC does on Linux); None where nothing can be read, as on macOS or Windows."""
    newest = None
    for pattern in patterns:
        for device in glob.glob(os.path.join(glob.escape(str(dev)), pattern)):
            try:
                accessed = os.stat(device).st_atime
            except OSError:
                continue
            newest = accessed if newest is None else max(newest, accessed)
    if newest is None:
        return None
    return max(0.0, (time.time() if now is None else now) - newest)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def on_ac_power(root: Path = POWER_SUPPLIES) -> bool | None:
    """True on mains (or with no battery at all), False on battery, None where we cannot tell.

    A battery whose ``scope`` is ``Device`` powers a wireless mouse or keyboard, not this
    computer: a desktop must not stop crunching because its mouse runs on batteries.
    """
    try:
        supplies = [p for p in Path(root).iterdir() if _read(p / "type")]
    except OSError:
        return None
    if not supplies:
        return None
    mains = [p for p in supplies if _read(p / "type") == "Mains"]
    batteries = [p for p in supplies if _read(p / "type") == "Battery" and _read(p / "scope") != "Device"]
    if any(_read(p / "online") == "1" for p in mains):
        return True
    if not batteries:
        return True  # a desktop or a server
    if any(_read(p / "status") == "Discharging" for p in batteries):
        return False
    return True if mains else None


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def within_hours(local_time: time_of_day, start: str, end: str) -> bool:
    """Is ``local_time`` inside the working hours? Equal ends mean always; end < start wraps."""
    begin, finish, now = _minutes(start), _minutes(end), local_time.hour * 60 + local_time.minute
    if begin == finish:
        return True
    if begin < finish:
        return begin <= now < finish
    return now >= begin or now < finish


def suspend_reason(
    prefs: Preferences, *, local_time: time_of_day, idle_seconds: float | None, on_ac: bool | None
) -> str | None:
    """None when crunching is allowed, else the reason `tessera run` and `status` show."""
    if not prefs.run_if_user_active and idle_seconds is not None and idle_seconds < prefs.idle_minutes * 60:
        return "the computer is in use"
    if not prefs.run_on_batteries and on_ac is False:
        return "on batteries"
    if not within_hours(local_time, prefs.start_hour, prefs.end_hour):
        return f"outside working hours {prefs.start_hour}-{prefs.end_hour}"
    return None


class Throttle:
    """The CPU-time throttle as a duty cycle: with ``percent`` p, tasks run the first p % of
    every period and are paused for the rest."""

    def __init__(self, percent: int, period: float = 1.0) -> None:
        if not period > 0:
            raise ValueError(f"the throttle period must be positive, not {period!r}")
        self.share = max(1, min(100, int(percent))) / 100.0
        self.period = period

    def _cycle_start(self, t: float) -> float:
        """The start of the period holding ``t``, kept at or before ``t`` despite rounding."""
        start = math.floor(t / self.period) * self.period
        if start > t:
            start -= self.period
        elif t >= start + self.period:
            start += self.period
        return start

    def running_at(self, t: float) -> bool:
        """Should the apps be running at time ``t`` (seconds, any clock)?"""
        return self.share >= 1.0 or t < self._cycle_start(t) + self.share * self.period

    def next_change(self, t: float) -> float:
        """When ``running_at`` next flips, so the daemon sleeps until then instead of spinning.

        Computed exactly as ``running_at`` decides, so at the returned time the state has
        flipped (``5.3 % 1.0`` is 0.2999..., which would keep a 30 % throttle running)."""
        if self.share >= 1.0:
            return float("inf")
        start = self._cycle_start(t)
        switch = start + self.share * self.period
        return switch if t < switch else start + self.period
