"""One task's record and the rules it obeys: its states, the legal moves between them, and the
checks on what the coordinator sent.

Kept apart from the journal, which stores records, so that what a record *is* can be read (and
tested) without the files and locks that keep it durable.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

RECEIVED, RUNNING, DONE, UPLOADED, REPORTED = "received", "running", "done", "uploaded", "reported"
STATES = (RECEIVED, RUNNING, DONE, UPLOADED, REPORTED)

# Which states each transition may start from; the key is the state it leads to.
ALLOWED_FROM = {
    RUNNING: (RECEIVED, RUNNING),  # running -> running: the app restarts after a crash
    DONE: (RECEIVED, RUNNING),  # received -> done: refused before it ran (a bad bundle, say)
    UPLOADED: (DONE,),
    REPORTED: (DONE, UPLOADED),
}

_PROJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FRACTION = re.compile(r"\.(\d+)")


class IllegalTransition(Exception):
    """A task was asked to move to a state it cannot reach from where it is."""


def is_project_name(name: str) -> bool:
    """Whether ``name`` could be a project's folder (a quiet :func:`check_project`)."""
    return bool(_PROJECT_PATTERN.match(name))


def check_project(project: Any) -> str:
    """A project name that is safe as one folder name, or ``ValueError``."""
    if not isinstance(project, str) or not _PROJECT_PATTERN.match(project) or ".." in project:
        raise ValueError(
            f"{project!r} is not a usable project name: letters, digits, '-', '_' and '.' only, "
            "starting with a letter or digit, without '..'"
        )
    return project


def check_replica(replica: Any) -> int:
    """A replica id from the network must be a positive int (never a bool or a string)."""
    if isinstance(replica, bool) or not isinstance(replica, int) or replica <= 0:
        raise ValueError(f"replica {replica!r} is not a positive integer")
    return replica


def check_move(label: str, current: str, state: str) -> None:
    """``IllegalTransition`` unless a task in ``current`` may move to ``state``."""
    allowed = ALLOWED_FROM[state]
    if current not in allowed:
        raise IllegalTransition(
            f"task {label} cannot go from {current!r} to "
            f"{state!r} (only from {' or '.join(repr(s) for s in allowed)})"
        )


def parse_time(text: Any) -> float:
    """Unix time of an ISO 8601 moment: ``Z`` or an offset; none is taken as UTC.

    Written by hand because Python 3.9's ``fromisoformat`` knows neither ``Z`` nor fractions
    of other than 3 or 6 digits.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an ISO 8601 time")
    normal = text.strip()
    if normal[-1:] in ("Z", "z"):
        normal = normal[:-1] + "+00:00"
    normal = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], normal, count=1)
    try:
        moment = datetime.fromisoformat(normal)
    except ValueError as error:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _elapsed(data: dict, runs: Any) -> float | None:
    """A record's elapsed time. A record written before clients measured it has none: unknown
    (never sent) once its app ran, zero while it has not run yet."""
    value = data.get("elapsed", None if runs else 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        return None
    return float(value)


@dataclass
class TaskRecord:
    """Everything the host knows about one task; ``task.json`` holds it as JSON."""

    project: str
    replica: int
    state: str
    task: dict  # the task exactly as the coordinator sent it
    history: list = field(default_factory=list)  # [[state, unix_time], ...]
    runs: int = 0  # how many times the app was started
    pid: int | None = None  # the app's pid while it runs, to kill a leftover after a crash
    cpu_time: float = 0.0  # CPU seconds accumulated over earlier runs
    elapsed: float | None = 0.0  # seconds the app ran, suspended time left out; None: not known
    outcome: dict | None = None  # status, exit_code, cpu_time, message, output_sha256, output_size
    upload_attempts: int = 0
    next_attempt: float = 0.0  # unix time before which no upload or report is retried

    @property
    def deadline(self) -> float:
        """The coordinator's deadline as unix time (checked to parse when the task was received)."""
        return parse_time(self.task.get("deadline"))

    def estimated_seconds(self, host_flops: float) -> float | None:
        """Seconds the task should take on a host of ``host_flops``; ``None`` when unknown."""
        fpops = self.task.get("fpops_estimate")
        if not isinstance(fpops, (int, float)) or fpops <= 0 or not host_flops or host_flops <= 0:
            return None
        return float(fpops) / float(host_flops)

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values, as ``task.json`` holds it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> TaskRecord:
        """A record from parsed JSON; ``ValueError`` when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.elapsed = _elapsed(data, record.runs)
        check_project(record.project)
        check_replica(record.replica)
        if record.state not in STATES:
            raise ValueError(f"unknown state {record.state!r}")
        if not isinstance(record.task, dict) or not isinstance(record.history, list):
            raise ValueError("task must be an object and history a list")
        if record.outcome is not None and not isinstance(record.outcome, dict):
            raise ValueError("outcome must be an object")
        parse_time(record.task.get("deadline"))  # the scheduler sorts by it
        return record
