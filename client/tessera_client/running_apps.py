"""The apps the daemon runs now: start each in its slot, watch it, pause it, and keep its result.

The daemon decides which task runs when (shares, deadlines, preferences); this module does the
running, so the daemon's loop reads as policy. A result is written to the journal before the
task counts as done, and a running task's CPU time is saved now and then, so a crash loses at
most :data:`CPU_SAVE_SECONDS` of accounting. A WebAssembly app's task runs the wasm runner in
its sandbox instead (:mod:`tessera_client.wasm_tasks`), and its result keeps the fuel it used; a
native app's executable runs as it is, under the same sandbox and contract as a Python app.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tessera_client._wasm_state import finished_fuel
from tessera_client.app_manifest import NATIVE, WASM, runtime_of
from tessera_client.app_outcome import Outcome
from tessera_client.journal import Journal
from tessera_client.sandbox import AppProcess, Limits
from tessera_client.task_record import TaskRecord
from tessera_client.wasm_tasks import WasmTaskRefused, prepare

CPU_SAVE_SECONDS = 60.0  # how often a running task's CPU time is written to the journal


def progress_display(console: Console) -> Progress:
    """A line per running app (and per download), drawn only when ``console`` is a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


@dataclass
class Running:
    """One running app and what its accounting needs."""

    record: TaskRecord
    process: AppProcess
    progress_id: TaskID
    cpu_before: float  # CPU seconds of the task's earlier runs
    saved_at: float
    wasm: bool = False  # the wasm runner runs the app's module, and records its fuel


class RunningApps:
    """The running apps, by (project, replica), each with a line in the progress display."""

    def __init__(
        self,
        journal: Journal,
        progress: Progress,
        log: Callable[[str], None],
        clock: Callable[[], float],
        *,
        isolate_network: bool,
    ) -> None:
        self.journal = journal
        self.progress = progress
        self.log = log
        self.clock = clock
        self.isolate_network = isolate_network
        self.said_network_open = False  # the volunteer hears once that apps keep the network
        # The volunteer's ``native_apps`` preference: a native program is never run against it,
        # even one sent before the preference changed (or by a project that did not listen).
        self.native_allowed: Callable[[], bool] = lambda: True
        self.running: dict[tuple[str, int], Running] = {}

    def launch(self, record: TaskRecord, entrypoint: Path, limits: Limits, now: float) -> None:
        """Start (or, from its checkpoint, resume) the task's app in its slot."""
        slot = self.journal.slot(record)
        slot.mkdir(parents=True, exist_ok=True)
        if not (slot / "input").exists():
            shutil.copyfile(self.journal.input_path(record), slot / "input")
        runtime = runtime_of(entrypoint)
        if runtime == NATIVE and not self.native_allowed():
            refused = "this computer runs no native apps (the volunteer's preference native_apps)"
            self.finish(record, Outcome("client_error", 0, 0.0, refused))
            return
        wasm = runtime == WASM
        if wasm:
            try:
                plan = prepare(record.task, entrypoint, slot, self.journal.input_path(record), limits)
            except WasmTaskRefused as refusal:
                self.finish(record, Outcome("client_error", 0, 0.0, str(refusal)))
                return
            entrypoint, limits = plan.runner, plan.limits
        resuming = (slot / "checkpoint").exists()
        process = AppProcess.start(
            entrypoint=entrypoint,
            slot=slot,
            limits=limits,
            native=runtime == NATIVE,
            isolate_network=self.isolate_network,
        )
        record = self.journal.start_run(record, process.pid, now)
        label = f"{record.project}: {record.task.get('workunit', record.replica)}"
        note = "resumed from checkpoint" if resuming else ""
        progress_id = self.progress.add_task(label, total=100, note=note)
        self.running[(record.project, record.replica)] = Running(
            record, process, progress_id, record.cpu_time, now, wasm
        )
        self.log(f"{label}: {'resumed' if resuming else 'started'} (pid {process.pid})")
        self._warn_if_networked(process)

    def _warn_if_networked(self, process: AppProcess) -> None:
        if self.isolate_network and not process.network_isolated and not self.said_network_open:
            self.said_network_open = True
            why = f" ({process.network_note})" if process.network_note else ""
            self.log(f"warning: apps run with network access on this computer: it could not be cut{why}")

    def reap(self, now: float) -> list[tuple[str, float]]:
        """Finish the apps that ended; returns (project, CPU seconds of this run) for each."""
        ended = []
        for key, running in list(self.running.items()):
            outcome = running.process.poll(now)
            if outcome is None:
                if now - running.saved_at >= CPU_SAVE_SECONDS:  # a crash then loses at most this
                    cpu = running.cpu_before + running.process.cpu_time()
                    running.record = self.journal.save_cpu_time(running.record, cpu)
                    running.saved_at = now
                continue
            del self.running[key]
            self.progress.remove_task(running.progress_id)
            ended.append((key[0], outcome.cpu_time))
            fuel = None
            if running.wasm and outcome.status == "success":
                fuel = finished_fuel(running.process.slot)
                if fuel is None:
                    outcome = Outcome("client_error", 0, outcome.cpu_time, "the wasm runner recorded no fuel")
            self.finish(running.record, outcome, running.cpu_before, fuel)
        return ended

    def finish(
        self, record: TaskRecord, outcome: Outcome, cpu_before: float | None = None, fuel: int | None = None
    ) -> None:
        """Keep the result on disk first; only then is the task done. ``cpu_before``: the CPU
        time of earlier runs (the record's own figure may already include part of this run);
        ``fuel``: what a wasm task's module used, kept with a success."""
        output = self.journal.slot(record) / "output"
        limit = int(record.task.get("max_output_bytes") or 0)
        # lstat: an app may leave a link to a file it must not hand over; the journal refuses it.
        size = output.lstat().st_size if outcome.status == "success" else 0
        if limit and size > limit:
            message = f"output is {size} bytes; the app allows {limit}"
            outcome = Outcome("client_error", 0, outcome.cpu_time, message)
        result = {
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "cpu_time": (record.cpu_time if cpu_before is None else cpu_before) + outcome.cpu_time,
            "message": outcome.message,
        }
        if fuel is not None and outcome.status == "success":
            result["fuel"] = fuel
        self.journal.finish(
            record, outcome=result, output=output if outcome.status == "success" else None, now=self.clock()
        )
        words = "done" if outcome.status == "success" else f"failed: {outcome.message}"
        self.log(f"{record.project}: replica {record.replica} {words}")

    def drop(self, key: tuple[str, int]) -> float | None:
        """Stop an app whose task is abandoned; returns the CPU seconds of this run (None: not running)."""
        running = self.running.pop(key, None)
        if running is None:
            return None
        self.progress.remove_task(running.progress_id)
        cpu = running.process.cpu_time()
        running.process.stop()
        return cpu

    def preempt(self, key: tuple[str, int]) -> float:
        """Stop a running app whose task stays queued: its CPU time so far is saved and it
        resumes from its checkpoint when it runs again; returns the CPU seconds of this run."""
        running = self.running.pop(key)
        self.progress.remove_task(running.progress_id)
        cpu = running.process.cpu_time()
        running.process.stop()
        self.journal.save_cpu_time(running.record, running.cpu_before + cpu)
        return cpu

    def stop_all(self) -> None:
        """The client stops: the apps stop too, and resume from their checkpoints next time."""
        for running in list(self.running.values()):
            running.process.stop()
        self.running.clear()

    def hold(self, run: bool) -> None:
        """Resume every app if ``run``, else suspend them all."""
        for running in self.running.values():
            if run and running.process.suspended:
                running.process.resume()
            elif not run and not running.process.suspended:
                running.process.suspend()

    def cores_in_use(self) -> float:
        """The cores the running apps occupy (a task on N cores counts N), for
        :func:`tessera_client.scheduling.fits`."""
        return sum(running.process.limits.cores for running in self.running.values())

    def fraction_left(self, key: tuple[str, int]) -> float:
        """How much of the task is still to do: all of it unless its app runs and said otherwise."""
        running = self.running.get(key)
        return 1.0 - (running.process.progress() if running else 0.0)

    def update_display(self) -> None:
        """Each app's progress and whether it is suspended, on its line."""
        for running in self.running.values():
            note = "suspended" if running.process.suspended else ""
            self.progress.update(running.progress_id, completed=100 * running.process.progress(), note=note)
