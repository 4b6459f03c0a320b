"""The task journal: what the host holds for every task, kept so that a crash never loses a result.

Every file the journal writes goes to a temporary file beside it, is fsynced, renamed over the
old one, and the folder is fsynced, so a power cut leaves either the old record or the new one.
The order of writes carries the guarantees: the input is durable before the record that names
it, and a result's output is durable before the record that says the task is done.

A temporary file left by a crash is never read; it is removed when a journal is opened (once
its writer is gone). A record that does not parse is reported once, by its path, and skipped.
The folder layout and the crash clean-up are in :mod:`tessera_client.journal_folders`; what a
record is, and which moves it may make, in :mod:`tessera_client.task_record`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from tessera_client.files import NotPlainFile, copy_atomic, remove_tree, sync_directory, write_atomic
from tessera_client.journal_folders import (
    INPUT_FILE,
    OUTPUT_FILE,
    RECORD_FILE,
    SLOT_DIR,
    discard_folder,
    remove_leftovers,
    subfolders,
)
from tessera_client.task_record import (
    ALLOWED_FROM,
    DONE,
    RECEIVED,
    REPORTED,
    RUNNING,
    UPLOADED,
    IllegalTransition,
    TaskRecord,
    check_move,
    check_project,
    check_replica,
    is_project_name,
    parse_time,
)

log = logging.getLogger(__name__)


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
        """The task's folder; ``ValueError`` for a project or replica unfit to name one."""
        return self.root / check_project(project) / str(check_replica(replica))

    def _record_path(self, project: str, replica: int) -> Path:
        return self.task_dir(project, replica) / RECORD_FILE

    def slot(self, record: TaskRecord) -> Path:
        """The app's working folder for this task (the runner creates it)."""
        return self.task_dir(record.project, record.replica) / SLOT_DIR

    def input_path(self, record: TaskRecord) -> Path:
        """The input as the coordinator sent it, kept until the report is acknowledged."""
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
        with self._lock:
            return remove_leftovers(self.root)

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
        """A copy of the task's record; ``None`` if the journal has none (or only a damaged one)."""
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
            project_dirs = [p for p in subfolders(self.root) if is_project_name(p.name)]
        found = []
        for project_dir in project_dirs:
            replicas = sorted(int(p.name) for p in subfolders(project_dir) if p.name.isdigit())
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
        self,
        record: TaskRecord,
        state: str | None,
        now: float | None,
        change: Callable[[TaskRecord], None],
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
                check_move(f"{record.project}/{record.replica}", current.state, state)
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

    def add_elapsed(self, record: TaskRecord, seconds: float) -> TaskRecord:
        """Add ``seconds`` to the time the task's app ran (no state change), while it runs or
        until it is reported. An unknown elapsed time (a record of an older client) stays unknown."""

        def change(current: TaskRecord) -> None:
            if current.elapsed is not None and current.state in (RUNNING, DONE, UPLOADED):
                current.elapsed += max(0.0, float(seconds))

        return self._transition(record, None, None, change)

    def finish(self, record: TaskRecord, *, outcome: dict, output: Path | None, now: float) -> TaskRecord:
        """The task ended. On ``success`` the output is copied into the task folder and made
        durable, and its SHA-256 and size go into the outcome, before the record says ``done``."""
        outcome = dict(outcome)
        if not isinstance(outcome.get("status"), str):
            raise ValueError("an outcome needs a status")
        with self._lock:
            current = self.get(record.project, record.replica)
            if current is not None and current.state in ALLOWED_FROM[DONE] and outcome["status"] == "success":
                if output is None:
                    raise ValueError("a successful outcome needs its output file")
                try:
                    digest, size = copy_atomic(Path(output), self.output_path(current))
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
        """The output is on the coordinator's storage; retries of the report start afresh."""

        def change(current: TaskRecord) -> None:
            current.upload_attempts, current.next_attempt = 0, 0.0

        return self._transition(record, UPLOADED, now, change)

    def mark_reported(self, record: TaskRecord, now: float) -> TaskRecord:
        """The coordinator has the report: the slot and input are no longer needed."""
        updated = self._transition(record, REPORTED, now, lambda current: None)
        remove_tree(self.slot(updated))
        self.input_path(updated).unlink(missing_ok=True)
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
    def forget(self, project: str, replica: int) -> None:
        """Remove a task's folder (after its report, or when the project is detached)."""
        with self._lock:
            discard_folder(self.task_dir(project, replica))
            if self._cache is not None:
                self._cache.pop((project, replica), None)

    def forget_project(self, project: str) -> int:
        """Remove every task of a project; returns how many task folders there were."""
        folder = self.root / check_project(project)
        with self._lock:
            count = sum(1 for p in subfolders(folder) if p.name.isdigit())
            discard_folder(folder)
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
