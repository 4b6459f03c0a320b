"""The task journal: what the host holds for every task, kept so that a crash never loses a result.

Each task has a folder ``<root>/<project>/<replica>/`` with ``task.json`` (the record),
``input``, ``output`` (the kept result) and ``slot/`` (the running app's folder). Every file
the journal writes goes to a temporary file beside it, is fsynced, renamed over the old one,
and the folder is fsynced, so a power cut leaves either the old record or the new one. The
order of writes carries the guarantees: the input is durable before the record that names
it, and a result's output is durable before the record that says the task is done.

A temporary file left by a crash is never read; it is removed when a journal is opened (once
its writer is gone). A record that does not parse is reported once, by its path, and skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tessera_client.files import remove_tree, sync_directory, temporary_beside, write_atomic

log = logging.getLogger(__name__)

RECEIVED, RUNNING, DONE, UPLOADED, REPORTED = "received", "running", "done", "uploaded", "reported"
STATES = (RECEIVED, RUNNING, DONE, UPLOADED, REPORTED)

# Which states each transition may start from; the key is the state it leads to.
_ALLOWED_FROM = {
    RUNNING: (RECEIVED, RUNNING),  # running -> running: the app restarts after a crash
    DONE: (RECEIVED, RUNNING),  # received -> done: refused before it ran (a bad bundle, say)
    UPLOADED: (DONE,),
    REPORTED: (DONE, UPLOADED),
}

RECORD_FILE = "task.json"
INPUT_FILE = "input"
OUTPUT_FILE = "output"
SLOT_DIR = "slot"
TEMP_SUFFIX = ".tmp"
FORGET_PREFIX = ".forget-"
# A temporary file older than this belongs to no writer still at work, whatever its pid says
# (pids are reused after a reboot); a live writer needs milliseconds.
STALE_SECONDS = 600.0
COPY_CHUNK = 1024 * 1024

_PROJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FRACTION = re.compile(r"\.(\d+)")


class IllegalTransition(Exception):
    """A task was asked to move to a state it cannot reach from where it is."""


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
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> TaskRecord:
        """A record from parsed JSON; ``ValueError`` when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})
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


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _copy_atomic(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` to ``target`` durably; returns the SHA-256 and size of what was copied."""
    digest, size = hashlib.sha256(), 0
    temporary = temporary_beside(target)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out, _open_plain_file(source) as src:
            while True:
                chunk = src.read(COPY_CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        _unlink(temporary)
        raise
    sync_directory(target.parent)
    return digest.hexdigest(), size


class NotPlainFile(ValueError):
    """The app's output is a link or not a regular file; it must not be followed or sent."""


def _open_plain_file(path: Path) -> Any:
    """Open a file the app wrote without following a link it may have planted there.

    A link to a file the app itself may not read (the sandbox forbids it) would otherwise have
    the client copy, and upload, that file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    if os.path.islink(path):
        raise NotPlainFile(f"the output {path.name!r} is a symbolic link")
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if os.path.islink(path):
            raise NotPlainFile(f"the output {path.name!r} is a symbolic link") from error
        raise
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(descriptor)
        raise NotPlainFile(f"the output {path.name!r} is not a plain file (a device, folder or hard link)")
    return os.fdopen(descriptor, "rb")


def _unlink(path: Path) -> None:
    Path(path).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate it there; the age test decides alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _is_abandoned(temporary: Path) -> bool:
    """A writer's temporary file is abandoned when the writer is gone or it is too old to be live."""
    parts = temporary.name.split(".")
    try:
        pid = int(parts[-3])
        age = time.time() - temporary.lstat().st_mtime
    except (IndexError, ValueError, OSError):
        return True
    return age > STALE_SECONDS or (pid != os.getpid() and not _pid_alive(pid))


class Journal:
    """The task records under ``root``, safe to share between threads.

    ``owner`` marks the process that runs the tasks (the daemon): opening the journal as owner
    clears what a crash left behind. Others (``tessera status``) only read and never clear,
    since the owner may be writing at that moment.
    """

    def __init__(self, root: Path, *, owner: bool = False) -> None:
        self.root = Path(root)
        self.owner = owner
        self._lock = threading.RLock()
        self._warned: set[Path] = set()
        self.root.mkdir(parents=True, exist_ok=True)
        # The owner is the only writer, so its copy in memory is the truth: the daemon asks
        # for records many times a second without reading a file. Readers go to the disk.
        self._cache: dict[tuple[str, int], TaskRecord] | None = None
        if owner:
            self.recover()
            self._cache = {(r.project, r.replica): r for r in self._scan()}

    # -- paths ------------------------------------------------------------------------
    def task_dir(self, project: str, replica: int) -> Path:
        return self.root / check_project(project) / str(check_replica(replica))

    def _record_path(self, project: str, replica: int) -> Path:
        return self.task_dir(project, replica) / RECORD_FILE

    def slot(self, record: TaskRecord) -> Path:
        """The app's working folder for this task (the runner creates it)."""
        return self.task_dir(record.project, record.replica) / SLOT_DIR

    def input_path(self, record: TaskRecord) -> Path:
        return self.task_dir(record.project, record.replica) / INPUT_FILE

    def output_path(self, record: TaskRecord) -> Path:
        """The kept output: written before the record says ``done``, removed only by ``forget``."""
        return self.task_dir(record.project, record.replica) / OUTPUT_FILE

    # -- loading ----------------------------------------------------------------------
    def recover(self) -> int:
        """Remove what crashes left behind: abandoned temporary files and half-forgotten folders.

        Called when the owner opens the journal; returns how many leftovers it removed. A
        temporary file whose writer still lives (and is recent) is left alone.
        """
        removed = 0
        with self._lock:
            for project_dir in self._children(self.root):
                if project_dir.name.startswith(FORGET_PREFIX):
                    removed += self._remove_leftover(project_dir)
                    continue
                for task_dir in self._children(project_dir):
                    if task_dir.name.startswith(FORGET_PREFIX):
                        removed += self._remove_leftover(task_dir)
                        continue
                    for leftover in task_dir.glob(f".*{TEMP_SUFFIX}"):
                        if leftover.is_file() and _is_abandoned(leftover):
                            _unlink(leftover)
                            removed += 1
                    # A receive cut short before its record: the task never entered the journal.
                    # (A folder with an output is never removed, whatever happened to its record.)
                    orphan = not (task_dir / RECORD_FILE).exists() and not (task_dir / OUTPUT_FILE).exists()
                    if orphan and task_dir.name.isdigit():
                        removed += self._remove_leftover(task_dir)
        return removed

    def _remove_leftover(self, folder: Path) -> int:
        try:
            remove_tree(folder)
        except OSError as error:
            log.warning("cannot remove the leftover %s: %s", folder, error)
            return 0
        return 1

    @staticmethod
    def _children(folder: Path) -> list[Path]:
        try:
            return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return []

    def _load(self, path: Path) -> TaskRecord | None:
        """The record in ``path``; ``None`` if it is missing or damaged (damage is logged once)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            self._warn(path, error)
            return None
        try:
            record = TaskRecord.from_json(json.loads(text))
            if path.parent != self.task_dir(record.project, record.replica):
                raise ValueError("it names another task than its folder")
        except (ValueError, TypeError) as error:
            self._warn(path, error)
            return None
        return record

    def _warn(self, path: Path, error: BaseException) -> None:
        if path not in self._warned:
            self._warned.add(path)
            log.warning("skipping the damaged task record %s: %s", path, error)

    def get(self, project: str, replica: int) -> TaskRecord | None:
        if self._cache is not None:
            cached = self._cache.get((check_project(project), check_replica(replica)))
            return None if cached is None else TaskRecord.from_json(cached.to_json())
        return self._load(self._record_path(project, replica))

    def records(self, project: str | None = None, states: Iterable[str] | None = None) -> list[TaskRecord]:
        """Every readable record, by project then replica; optionally one project's, in ``states``."""
        wanted = None if states is None else set(states)
        if self._cache is not None:
            return [
                self._cache[key]
                for key in sorted(self._cache)
                if (project is None or key[0] == project)
                and (wanted is None or self._cache[key].state in wanted)
            ]
        return [r for r in self._scan(project) if wanted is None or r.state in wanted]

    def _scan(self, project: str | None = None) -> list[TaskRecord]:
        if project is not None:
            project_dirs = [self.root / check_project(project)]
        else:
            project_dirs = [p for p in self._children(self.root) if _PROJECT_PATTERN.match(p.name)]
        found = []
        for project_dir in project_dirs:
            replicas = sorted(int(p.name) for p in self._children(project_dir) if p.name.isdigit())
            for replica in replicas:
                record = self._load(project_dir / str(replica) / RECORD_FILE)
                if record is not None:
                    found.append(record)
        return found

    # -- writing ----------------------------------------------------------------------
    def _save(self, record: TaskRecord) -> None:
        data = json.dumps(record.to_json(), indent=1, sort_keys=True) + "\n"
        write_atomic(self._record_path(record.project, record.replica), data.encode("utf-8"))
        if self._cache is not None:
            self._cache[(record.project, record.replica)] = record

    def receive(self, project: str, task: dict, input_data: bytes, now: float) -> TaskRecord:
        """Record a task the coordinator sent; receiving the same replica again changes nothing.

        The input is made durable before the record, so every record has its input.
        """
        if not isinstance(task, dict):
            raise ValueError("a task must be a JSON object")
        replica = check_replica(task.get("replica"))
        parse_time(task.get("deadline"))  # refuse now what the scheduler could not read later
        folder = self.task_dir(project, replica)
        with self._lock:
            existing = self.get(project, replica)
            if existing is not None:
                return existing
            folder.mkdir(parents=True, exist_ok=True)
            sync_directory(folder.parent)
            sync_directory(self.root)
            write_atomic(folder / INPUT_FILE, bytes(input_data))
            record = TaskRecord(
                project=project,
                replica=replica,
                state=RECEIVED,
                task=json.loads(json.dumps(task)),  # a copy, and proof it is plain JSON
                history=[[RECEIVED, now]],
            )
            self._save(record)
            return record

    def _transition(
        self, record: TaskRecord, state: str | None, now: float | None, change: Any
    ) -> TaskRecord:
        """Apply ``change`` to the record as it is on disk, check the move, write it, and return it.

        The disk copy is the truth: a caller holding an older copy cannot undo a later move.
        The caller's object is updated too, so it stays current.
        """
        with self._lock:
            current = self.get(record.project, record.replica)
            if current is None:
                raise IllegalTransition(f"task {record.project}/{record.replica} is not in the journal")
            if state is not None:
                allowed = _ALLOWED_FROM[state]
                if current.state not in allowed:
                    raise IllegalTransition(
                        f"task {record.project}/{record.replica} cannot go from {current.state!r} to "
                        f"{state!r} (only from {' or '.join(repr(s) for s in allowed)})"
                    )
            change(current)
            if state is not None:
                current.state = state
                current.history.append([state, now])
            self._save(current)
            record.__dict__.update(asdict(current))
            return current

    def start_run(self, record: TaskRecord, pid: int, now: float) -> TaskRecord:
        """The app was started (again, after a crash, if it was already running)."""

        def change(current: TaskRecord) -> None:
            current.runs += 1
            current.pid = pid

        return self._transition(record, RUNNING, now, change)

    def save_cpu_time(self, record: TaskRecord, cpu_time: float) -> TaskRecord:
        """Remember the CPU seconds of the runs so far, so a crash does not lose them (no state change)."""

        def change(current: TaskRecord) -> None:
            if current.state != RUNNING:
                raise IllegalTransition(f"task {record.project}/{record.replica} is not running")
            current.cpu_time = float(cpu_time)

        return self._transition(record, None, None, change)

    def finish(self, record: TaskRecord, *, outcome: dict, output: Path | None, now: float) -> TaskRecord:
        """The task ended. On ``success`` the output is copied into the task folder and made
        durable, and its SHA-256 and size go into the outcome, before the record says ``done``."""
        outcome = dict(outcome)
        if not isinstance(outcome.get("status"), str):
            raise ValueError("an outcome needs a status")
        with self._lock:
            current = self.get(record.project, record.replica)
            if (
                current is not None
                and current.state in _ALLOWED_FROM[DONE]
                and outcome["status"] == "success"
            ):
                if output is None:
                    raise ValueError("a successful outcome needs its output file")
                try:
                    digest, size = _copy_atomic(Path(output), self.output_path(current))
                except NotPlainFile as refusal:
                    outcome.update(status="client_error", message=str(refusal))
                else:
                    outcome["output_sha256"], outcome["output_size"] = digest, size

            def change(current: TaskRecord) -> None:
                current.outcome = outcome
                current.pid = None
                if isinstance(outcome.get("cpu_time"), (int, float)):
                    current.cpu_time = float(outcome["cpu_time"])

            return self._transition(record, DONE, now, change)

    def mark_uploaded(self, record: TaskRecord, now: float) -> TaskRecord:
        def change(current: TaskRecord) -> None:
            current.upload_attempts, current.next_attempt = 0, 0.0

        return self._transition(record, UPLOADED, now, change)

    def mark_reported(self, record: TaskRecord, now: float) -> TaskRecord:
        """The coordinator has the report: the slot and input are no longer needed."""
        updated = self._transition(record, REPORTED, now, lambda current: None)
        remove_tree(self.slot(updated))
        _unlink(self.input_path(updated))
        return updated

    def note_retry(self, record: TaskRecord, *, next_attempt: float) -> TaskRecord:
        """An upload or report failed; do not try again before ``next_attempt``."""

        def change(current: TaskRecord) -> None:
            if current.state not in (DONE, UPLOADED):
                raise IllegalTransition(
                    f"task {record.project}/{record.replica} is {current.state!r}: nothing to retry"
                )
            current.upload_attempts += 1
            current.next_attempt = float(next_attempt)

        return self._transition(record, None, None, change)

    # -- forgetting -------------------------------------------------------------------
    def _discard(self, folder: Path) -> None:
        """Rename first, then delete: a crash mid-way leaves a hidden leftover, never half a task."""
        trash = folder.with_name(f"{FORGET_PREFIX}{folder.name}-{secrets.token_hex(6)}")
        try:
            os.rename(folder, trash)
        except FileNotFoundError:
            return
        sync_directory(folder.parent)
        remove_tree(trash)

    def forget(self, project: str, replica: int) -> None:
        """Remove a task's folder (after its report, or when the project is detached)."""
        with self._lock:
            self._discard(self.task_dir(project, replica))
            if self._cache is not None:
                self._cache.pop((project, replica), None)

    def forget_project(self, project: str) -> int:
        """Remove every task of a project; returns how many task folders there were."""
        folder = self.root / check_project(project)
        with self._lock:
            count = sum(1 for p in self._children(folder) if p.name.isdigit())
            self._discard(folder)
            if self._cache is not None:
                for key in [k for k in self._cache if k[0] == project]:
                    del self._cache[key]
        return count

    def disk_usage(self) -> int:
        """Bytes in the files under the root (inputs, outputs, slots and records)."""
        total = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                with contextlib.suppress(OSError):  # removed while we counted
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total
