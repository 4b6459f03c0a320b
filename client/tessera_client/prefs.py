"""Preferences as BOINC volunteers know them: the project suggests, the volunteer decides.

The file holds only what the volunteer set; everything else comes from the project's
suggestion or the default, so a later change of suggestion reaches every value not set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from tessera_client.files import read_json, write_json_atomic

logger = logging.getLogger(__name__)

FIELDS = {
    "max_cpus": "cores that may crunch at once (0: all)",
    "cpu_percent": "run tasks this % of the time (CPU throttle, 1-100)",
    "run_if_user_active": "crunch while the computer is in use (no: only when idle)",
    "idle_minutes": "minutes without input before the computer counts as idle",
    "run_on_batteries": "crunch on battery power",
    "disk_max_gb": "most disk the client may use, in GB",
    "work_buf_hours": "hours of work to keep queued",
    "start_hour": "crunch from this local time (HH:MM)",
    "end_hour": "until this local time (HH:MM; equal to start: always; before start: past midnight)",
    "use_gpus": "use this computer's GPUs (no: the projects are told of none)",
    "native_apps": "run apps built as native programs (no: only Python and WebAssembly ones)",
}


class PreferenceError(ValueError):
    """A preference that cannot be used; the message names it and says what is allowed."""


@dataclass
class Preferences:
    """The preferences in force; the defaults are BOINC's, which volunteers already know."""

    max_cpus: int = 0  # 0: all cores
    cpu_percent: int = 100  # CPU-time throttle: run the apps this % of the time (1..100)
    run_if_user_active: bool = True  # False: crunch only when the computer is idle
    idle_minutes: int = 3  # idle: no keyboard, mouse or terminal input for this long
    run_on_batteries: bool = False  # BOINC's default: suspend on battery
    disk_max_gb: float = 10.0  # most disk the client may use for its data
    work_buf_hours: float = 1.0  # hours of work to keep queued
    start_hour: str = "00:00"  # working hours, local time: crunch only from start to end;
    end_hour: str = "00:00"  # equal means always, end before start wraps past midnight
    use_gpus: bool = True  # False: the host description names no GPU, so no GPU work comes
    native_apps: bool = True  # False: the host description names no native runtime, so new
    # work comes only as Python and WebAssembly (a volunteer who trusts only wasm's sandbox)

    def cpus(self, n_cores: int) -> int:
        """How many tasks may run at once on a computer with ``n_cores``."""
        return max(1, min(self.max_cpus, n_cores)) if self.max_cpus else max(1, n_cores)


def _boolean(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    words = {
        "yes": True,
        "true": True,
        "on": True,
        "1": True,
        "no": False,
        "false": False,
        "off": False,
        "0": False,
    }
    if str(text).strip().lower() not in words:
        raise ValueError("yes or no")
    return words[str(text).strip().lower()]


def _bounded(kind: Callable[[Any], Any], low: float, high: float) -> Callable[[Any], Any]:
    """A parser for a number of ``kind`` between ``low`` and ``high``; whole numbers stay whole,
    so a suggested ``max_cpus: 2.5`` is refused rather than quietly becoming 2."""
    allowed = f"a number from {low:g} to {high:g}" + (" without decimals" if kind is int else "")

    def parse(text: Any) -> Any:
        if isinstance(text, bool) or (kind is int and isinstance(text, float) and not text.is_integer()):
            raise ValueError(allowed)
        try:
            value = kind(text.strip() if isinstance(text, str) else text)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(allowed) from None
        if value != value or not low <= value <= high:
            raise ValueError(allowed)
        return value

    return parse


def _clock(text: Any) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(text).strip())
    if not match:
        raise ValueError("a time of day as HH:MM, 00:00 to 23:59")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


PARSERS: dict[str, Callable[[Any], Any]] = {
    "max_cpus": _bounded(int, 0, 4096),
    "cpu_percent": _bounded(int, 1, 100),
    "run_if_user_active": _boolean,
    "idle_minutes": _bounded(int, 1, 24 * 60),
    "run_on_batteries": _boolean,
    "disk_max_gb": _bounded(float, 0.1, 1e6),
    "work_buf_hours": _bounded(float, 0.0, 240.0),
    "start_hour": _clock,
    "end_hour": _clock,
    "use_gpus": _boolean,
    "native_apps": _boolean,
}


def known(key: Any) -> str:
    """``key`` if it names a preference, else a PreferenceError listing those that exist."""
    if not isinstance(key, str) or key not in PARSERS:
        raise PreferenceError(f"there is no preference {key!r}; known: {', '.join(FIELDS)}")
    return key


def parse(key: str, value: Any) -> Any:
    """``value`` (text from the command line, or JSON from a file or the network) as ``key``'s type."""
    known(key)
    try:
        return PARSERS[key](value)
    except ValueError as error:
        raise PreferenceError(f"{key} must be {error}, not {value!r}") from None


class PreferenceStore:
    """The volunteer's own settings, in a JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def local(self) -> dict[str, Any]:
        """What the volunteer set; a damaged file is a PreferenceError that names it, never a
        traceback, as people do edit this file by hand."""
        try:
            data = read_json(self.path, {})
        except ValueError as error:
            raise PreferenceError(f"{self.path} is not valid JSON ({error}); fix or delete it") from None
        except OSError as error:
            raise PreferenceError(f"cannot read {self.path}: {error.strerror or error}") from None
        if not isinstance(data, dict):
            raise PreferenceError(f"{self.path} must hold a JSON object; fix or delete it")
        try:
            return {key: parse(key, value) for key, value in data.items()}
        except PreferenceError as error:
            raise PreferenceError(f"{self.path}: {error}; fix or delete it") from None

    def set(self, key: str, value: str) -> None:
        """Parse and check ``value`` before anything is written, then replace the file atomically."""
        parsed = parse(key, value)
        values = self.local()
        values[key] = parsed
        self._write(values)

    def update(self, changes: dict[str, Any], removed: Iterable[str] = ()) -> None:
        """Set ``changes`` and unset ``removed`` in one write, every value checked first: one
        bad value changes nothing (the dashboard's form sends them together)."""
        removed = [known(key) for key in removed]
        values = {key: value for key, value in self.local().items() if key not in removed}
        values.update({key: parse(key, value) for key, value in changes.items()})
        self._write(values)

    def unset(self, key: str) -> None:
        values = self.local()
        values.pop(known(key), None)
        self._write(values)

    def _write(self, values: dict[str, Any]) -> None:
        """Temp file, fsync, rename: a crash leaves the old settings or the new, never half.
        The folder is made if need be, so `tessera prefs set` works before any attach."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, values)
        except OSError as error:
            raise PreferenceError(f"cannot save {self.path}: {error.strerror or error}") from None

    def _suggested(self, suggested: dict[str, Any] | None) -> dict[str, Any]:
        """The project's suggestions that make sense; the rest ignored (it is network input)."""
        usable = {}
        if suggested is not None and not isinstance(suggested, dict):
            logger.warning("ignoring the project's suggested preferences: not a JSON object")
            return usable
        for key, value in (suggested or {}).items():
            try:
                usable[key] = parse(key, value)
            except PreferenceError as error:
                logger.warning("ignoring the project's suggestion: %s", error)
        return usable

    def effective(self, suggested: dict[str, Any] | None = None) -> Preferences:
        """Defaults, then the project's suggestions, then local settings: local wins."""
        return Preferences(**{**self._suggested(suggested), **self.local()})

    def sources(self, suggested: dict[str, Any] | None = None) -> dict[str, str]:
        """Where each effective value comes from: "default", "project" or "local"."""
        local, project = self.local(), self._suggested(suggested)
        return {
            f.name: "local" if f.name in local else "project" if f.name in project else "default"
            for f in fields(Preferences)
        }
