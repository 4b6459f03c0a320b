"""The daemon behind ``tessera run``: fetch work, verify and run signed apps, upload, report.

One thread does everything in a loop that wakes about once a second (more often only while
the CPU throttle flips tasks on and off), so the client idles at a fraction of a percent
of one core. State lives in the journal on disk: a crash or a power cut at any moment
loses at most the work since a task's last checkpoint, never a finished result, and a
report repeated after a crash is acknowledged by the coordinator as a duplicate.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import requests
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tessera_client import conditions
from tessera_client.backoff import Backoff
from tessera_client.bundles import AppCache, BundleRefused
from tessera_client.journal import DONE, RECEIVED, REPORTED, RUNNING, UPLOADED, Journal, TaskRecord
from tessera_client.prefs import Preferences, PreferenceStore
from tessera_client.protocol import ProjectSession, ProtocolError, Report
from tessera_client.sandbox import AppProcess, Limits, Outcome, kill_leftover
from tessera_client.signing import b64decode
from tessera_client.state import DataDir, Project, Runtime

INLINE_BYTES_MAX = 4096  # outputs up to this size travel inside the report (docs/protocol.md)
MAX_REPORTS_PER_RPC = 100
DEFAULT_FLOPS = 1e9  # per core, until `tessera benchmark` has measured this host
USAGE_HALF_LIFE_SECONDS = 86_400.0  # how fast the resource-share debt forgets
KEEP_REPORTED_SECONDS = 86_400.0  # finished tasks stay in `tessera status` this long
MIN_CPU_LIMIT_SECONDS = 300
CPU_LIMIT_FACTOR = 20.0  # a task may use this many times its estimated CPU time
MEMORY_HEADROOM_BYTES = 256 * 1024 * 1024  # for the interpreter itself, beyond the unit's need
PROCESSES_PER_TASK = 16
CPU_SAVE_SECONDS = 60.0  # how often a running task's CPU time is written to the journal


@dataclass
class Running:
    record: TaskRecord
    process: AppProcess
    progress_id: TaskID
    cpu_before: float  # CPU seconds of the task's earlier runs
    saved_at: float


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Daemon:
    """The client's main loop over every attached project."""

    def __init__(
        self,
        data: DataDir,
        *,
        console: Console | None = None,
        exit_when_idle: bool = False,
        isolate_network: bool = True,
        backoff_base: float = 60.0,
        backoff_cap: float = 4 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data = data.ensure()
        self.console = console or Console(stderr=True)
        self.exit_when_idle = exit_when_idle
        self.isolate_network = isolate_network
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.clock = clock
        self.journal = Journal(data.tasks, owner=True)
        self.apps = AppCache(data.apps)
        self.prefs = PreferenceStore(data.prefs_file)
        self.n_cores = os.cpu_count() or 1
        self.projects: dict[str, Project] = {}
        self.runtimes: dict[str, Runtime] = {}
        self.backoffs: dict[str, Backoff] = {}
        self.sessions: dict[str, ProjectSession] = {}
        self.no_work: dict[str, bool] = {}  # the last RPC found no work for this project
        self.report_singly: dict[str, bool] = {}  # a report was refused: find which, one at a time
        self.running: dict[tuple[str, int], Running] = {}
        self.stopping = False
        self.suspended_because: str | None = None
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            disable=not self.console.is_terminal,
            transient=True,
        )

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> int:
        """Crunch until Ctrl-C (or, with ``exit_when_idle``, until there is nothing left)."""
        previous = {sig: signal.signal(sig, self._ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.refresh_projects()
            if not self.projects:
                self.console.print("No project attached: run `tessera attach URL --token TOKEN` first.")
                return 1
            self.recover()
            with self.progress:
                while not self.stopping:
                    wake = self.step()
                    if self.exit_when_idle and self.idle():
                        self.log("nothing left to do: every result is reported and no work is offered")
                        break
                    delay = wake - self.clock()
                    if delay > 0:
                        time.sleep(min(delay, 1.0))
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def step(self) -> float:
        """One pass over everything; returns when the loop should look again."""
        now = self.clock()
        self.refresh_projects()
        prefs = self.effective_prefs()
        self.reap(now)
        reason = self.suspend_reason(prefs)
        if reason != self.suspended_because:
            self.log(f"suspended: {reason}" if reason else "resumed")
            self.suspended_because = reason
        if reason is None:
            self.start_tasks(prefs, now)
        wake = now + 1.0
        wake = min(wake, self.apply_throttle(prefs, reason, now))
        for name in list(self.projects):
            self.talk(name, prefs, now)
        self.update_display()
        return wake

    def idle(self) -> bool:
        unfinished = [r for r in self.journal.records() if r.state != REPORTED]
        return not self.running and not unfinished and all(self.no_work.get(n) for n in self.projects)

    def _ask_to_stop(self, signum: int, frame: Any) -> None:
        if self.stopping:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.stopping = True
        self.log("stopping: running tasks will resume from their checkpoints next time")

    def shutdown(self) -> None:
        """Stop the apps (their checkpoints stay) and close connections; nothing is lost."""
        for running in list(self.running.values()):
            running.process.stop()
        self.running.clear()
        for session in self.sessions.values():
            session.close()

    def log(self, message: str) -> None:
        """One line of the run's story; never markup, as messages quote what apps and servers said."""
        self.console.print(
            f"{time.strftime('%H:%M:%S')} {message}", markup=False, highlight=False, soft_wrap=True
        )

    # -- projects ---------------------------------------------------------------------
    def refresh_projects(self) -> None:
        """Pick up attaches and detaches made while the daemon runs."""
        current = {p.name: p for p in self.data.projects()}
        for name in set(self.projects) - set(current):
            self.log(f"{name}: detached; abandoning its tasks")
            for key in [k for k in self.running if k[0] == name]:
                self.running.pop(key).process.stop()
            self.journal.forget_project(name)
            self.sessions.pop(name).close()
            for table in (self.runtimes, self.backoffs, self.no_work, self.report_singly):
                table.pop(name, None)
        for name, project in current.items():
            if name not in self.projects:
                runtime = self.data.runtime(name)
                self.runtimes[name] = runtime
                self.backoffs[name] = Backoff.from_json(
                    runtime.backoff, base=self.backoff_base, cap=self.backoff_cap
                )
                self.sessions[name] = ProjectSession(project.url, self.data.host_key(name), project.host_id)
        self.projects = current

    def effective_prefs(self) -> Preferences:
        """Local settings over the suggestions of the project with the largest share."""
        suggested: dict[str, Any] = {}
        if self.projects:
            lead = max(self.projects.values(), key=lambda p: (p.resource_share, p.name))
            suggested = lead.suggested_preferences
        return self.prefs.effective(suggested)

    def suspend_reason(self, prefs: Preferences) -> str | None:
        return conditions.suspend_reason(
            prefs,
            local_time=datetime.now().time(),
            idle_seconds=conditions.user_idle_seconds(),
            on_ac=conditions.on_ac_power(),
        )

    def save_runtime(self, name: str) -> None:
        runtime = self.runtimes[name]
        runtime.backoff = self.backoffs[name].to_json()
        self.data.save_runtime(name, runtime)

    # -- running apps -----------------------------------------------------------------
    def recover(self) -> None:
        """After a crash: make sure no app of ours still runs unsupervised; restart resumes it."""
        for record in self.journal.records(states=[RUNNING]):
            if record.pid and kill_leftover(record.pid, self.journal.slot(record)):
                self.log(f"{record.project}: stopped a leftover app of replica {record.replica}")

    def runnable(self) -> list[TaskRecord]:
        waiting = [
            r
            for r in self.journal.records(states=[RECEIVED, RUNNING])
            if (r.project, r.replica) not in self.running and r.project in self.projects
        ]
        return sorted(waiting, key=lambda r: (-self.share_priority(r.project), r.deadline, r.replica))

    def share_priority(self, name: str) -> float:
        """BOINC's resource-share debt: the share a project is owed minus the CPU it recently got."""
        total_share = sum(p.resource_share for p in self.projects.values()) or 1.0
        usage = {n: self.usage(n, self.clock()) for n in self.projects}
        total_usage = sum(usage.values()) or 1.0
        return self.projects[name].resource_share / total_share - usage[name] / total_usage

    def usage(self, name: str, now: float) -> float:
        runtime = self.runtimes[name]
        elapsed = max(0.0, now - runtime.usage_time)
        return runtime.cpu_usage * math.pow(0.5, elapsed / USAGE_HALF_LIFE_SECONDS)

    def add_usage(self, name: str, cpu_seconds: float, now: float) -> None:
        runtime = self.runtimes[name]
        runtime.cpu_usage = self.usage(name, now) + cpu_seconds
        runtime.usage_time = now

    def start_tasks(self, prefs: Preferences, now: float) -> None:
        free = prefs.cpus(self.n_cores) - len(self.running)
        for record in self.runnable():
            if free <= 0 or self.stopping:
                return
            if record.deadline <= now:
                self.finish(
                    record, Outcome("client_error", 0, 0.0, "deadline passed before the task could start")
                )
                continue
            entrypoint = self.app_for(record)
            if entrypoint is None:
                continue
            self.launch(record, entrypoint, now)
            free -= 1

    def app_for(self, record: TaskRecord) -> Path | None:
        """The verified app to run this task, downloading it once; None to try again later."""
        version = record.task["app_version"]
        pinned = b64decode(self.projects[record.project].code_signing_key)
        label = f"{version['app']} v{version['version']}"
        try:
            found = self.apps.lookup(version, pinned)
            if found is not None:
                return found
            data = self.download_bundle(record.project, version, label)
            entrypoint = self.apps.install(version, data, pinned)
        except BundleRefused as refusal:
            self.log(f"{record.project}: refused app {label}: {refusal}")
            self.finish(record, Outcome("client_error", 0, 0.0, f"app bundle refused: {refusal}"))
            return None
        except (requests.RequestException, ProtocolError) as error:
            self.network_failed(record.project, self.clock(), error)
            return None
        self.log(f"{record.project}: verified {label}, signed by the pinned key")
        return entrypoint

    def download_bundle(self, name: str, version: dict[str, Any], label: str) -> bytes:
        size = int(version["size"])
        download = self.progress.add_task(f"{name}: downloading {label}", total=size or None, note="")
        try:
            return self.sessions[name].download(
                version["url"], max_bytes=size, progress=lambda n: self.progress.advance(download, n)
            )
        finally:
            self.progress.remove_task(download)

    def limits(self, record: TaskRecord) -> Limits:
        task = record.task
        flops = float(self.data.host_info().get("flops") or DEFAULT_FLOPS)
        estimate = float(task.get("fpops_estimate") or 0) / flops
        return Limits(
            cpu_seconds=int(max(MIN_CPU_LIMIT_SECONDS, CPU_LIMIT_FACTOR * estimate)),
            memory_bytes=max(int(task.get("memory_bytes") or 0), 256 * 1024 * 1024) + MEMORY_HEADROOM_BYTES,
            file_bytes=max(4 * int(task.get("max_output_bytes") or 0), 64 * 1024 * 1024),
            processes=PROCESSES_PER_TASK,
            wall_deadline=record.deadline,
        )

    def launch(self, record: TaskRecord, entrypoint: Path, now: float) -> None:
        slot = self.journal.slot(record)
        slot.mkdir(parents=True, exist_ok=True)
        if not (slot / "input").exists():
            shutil.copyfile(self.journal.input_path(record), slot / "input")
        resuming = (slot / "checkpoint").exists()
        process = AppProcess.start(
            entrypoint=entrypoint, slot=slot, limits=self.limits(record), isolate_network=self.isolate_network
        )
        record = self.journal.start_run(record, process.pid, now)
        label = f"{record.project}: {record.task.get('workunit', record.replica)}"
        note = "resumed from checkpoint" if resuming else ""
        progress_id = self.progress.add_task(label, total=100, note=note)
        self.running[(record.project, record.replica)] = Running(
            record, process, progress_id, record.cpu_time, now
        )
        self.log(f"{label}: {'resumed' if resuming else 'started'} (pid {process.pid})")

    def reap(self, now: float) -> None:
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
            self.add_usage(key[0], outcome.cpu_time, now)
            self.finish(running.record, outcome, running.cpu_before)

    def finish(self, record: TaskRecord, outcome: Outcome, cpu_before: float | None = None) -> None:
        """Keep the result on disk first; only then is the task done. ``cpu_before``: the CPU
        time of earlier runs (the record's own figure may already include part of this run)."""
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
        self.journal.finish(
            record, outcome=result, output=output if outcome.status == "success" else None, now=self.clock()
        )
        words = "done" if outcome.status == "success" else f"failed: {outcome.message}"
        self.log(f"{record.project}: replica {record.replica} {words}")

    def apply_throttle(self, prefs: Preferences, reason: str | None, now: float) -> float:
        """Suspend everything while crunching is not allowed, and duty-cycle for the CPU limit."""
        throttle = conditions.Throttle(prefs.cpu_percent)
        run = reason is None and throttle.running_at(now)
        for running in self.running.values():
            if run and running.process.suspended:
                running.process.resume()
            elif not run and not running.process.suspended:
                running.process.suspend()
        if prefs.cpu_percent >= 100 or reason is not None or not self.running:
            return now + 1.0
        return throttle.next_change(now)

    def update_display(self) -> None:
        for running in self.running.values():
            note = "suspended" if running.process.suspended else ""
            self.progress.update(running.progress_id, completed=100 * running.process.progress(), note=note)

    # -- talking to the coordinators --------------------------------------------------
    def talk(self, name: str, prefs: Preferences, now: float) -> None:
        backoff = self.backoffs[name]
        if not backoff.ready(now) and not (backoff.failures == 0 and self.all_done_unreported(name)):
            return
        self.upload_outputs(name, now)
        if self.backoffs[name].failures and not self.backoffs[name].ready(now):
            return
        reports = self.reports_due(name)
        work = self.work_wanted(name, prefs)
        host_info = self.host_info_due(name)
        if not reports and not work and not host_info:
            return
        self.scheduler_rpc(name, reports, work, host_info, now)

    def all_done_unreported(self, name: str) -> bool:
        """Results wait and nothing is left to crunch: report now, before the project's next
        suggested contact (which only paces the asking for work), as the CPU would go idle."""
        waiting = self.journal.records(project=name, states=[DONE, UPLOADED])
        return bool(waiting) and not self.journal.records(project=name, states=[RECEIVED, RUNNING])

    def needs_upload(self, record: TaskRecord) -> bool:
        outcome = record.outcome or {}
        return outcome.get("status") == "success" and int(outcome.get("output_size", 0)) > INLINE_BYTES_MAX

    def upload_outputs(self, name: str, now: float) -> None:
        session = self.sessions[name]
        for record in self.journal.records(project=name, states=[DONE]):
            if not self.needs_upload(record) or record.next_attempt > now:
                continue
            data = self.journal.output_path(record).read_bytes()
            try:
                session.upload_output(record.task["upload_url"], data)
            except ProtocolError as error:
                if error.code == "already_reported":
                    self.journal.mark_uploaded(record, now)  # a repeat after a crash
                    continue
                if error.is_temporary:
                    self.network_failed(name, now, error)
                    return
                self.log(f"{name}: upload of replica {record.replica} refused: {error}")
                self.journal.note_retry(record, next_attempt=now + self.backoff_cap)
                continue
            except requests.RequestException as error:
                self.network_failed(name, now, error)
                return
            self.journal.mark_uploaded(record, now)

    def reports_due(self, name: str) -> list[TaskRecord]:
        ready = [
            r
            for r in self.journal.records(project=name, states=[DONE, UPLOADED])
            if r.state == UPLOADED or not self.needs_upload(r)
        ]
        return ready[: 1 if self.report_singly.get(name) else MAX_REPORTS_PER_RPC]

    def queued_seconds(self, name: str) -> float:
        flops = float(self.data.host_info().get("flops") or DEFAULT_FLOPS)
        total = 0.0
        for record in self.journal.records(project=name, states=[RECEIVED, RUNNING]):
            running = self.running.get((name, record.replica))
            left = 1.0 - (running.process.progress() if running else 0.0)
            total += float(record.task.get("fpops_estimate") or 0) / flops * left
        return total

    def work_wanted(self, name: str, prefs: Preferences) -> dict[str, float]:
        """BOINC's work fetch: fill this project's share of the work buffer."""
        if self.stopping or self.disk_full(prefs):
            return {}
        cpus = prefs.cpus(self.n_cores)
        total_share = sum(p.resource_share for p in self.projects.values()) or 1.0
        share = self.projects[name].resource_share / total_share
        queued = self.journal.records(project=name, states=[RECEIVED, RUNNING])
        if not queued:
            return {"tasks": max(1, round(cpus * share))}
        shortfall = prefs.work_buf_hours * 3600.0 * cpus * share - self.queued_seconds(name)
        return {"seconds": shortfall} if shortfall > 1.0 else {}

    def disk_full(self, prefs: Preferences) -> bool:
        used = self.journal.disk_usage() + sum(
            f.stat().st_size for f in self.data.apps.rglob("*") if f.is_file()
        )
        return used >= prefs.disk_max_gb * 1e9

    def host_info_due(self, name: str) -> dict[str, Any]:
        info = self.data.host_info()
        if not info or float(info.get("measured_at", 0)) <= self.runtimes[name].host_info_sent:
            return {}
        return {"flops": float(info["flops"]), "n_cpus": self.n_cores, "memory_bytes": memory_bytes()}

    def scheduler_rpc(
        self,
        name: str,
        records: list[TaskRecord],
        work: dict[str, float],
        host_info: dict[str, Any],
        now: float,
    ) -> None:
        reports = [self.report_for(r) for r in records]
        try:
            reply = self.sessions[name].scheduler_rpc(reports=reports, host_info=host_info, **work)
        except ProtocolError as error:
            if error.is_temporary or error.status in (401, 0):
                self.network_failed(name, now, error)
            elif records and len(records) > 1:
                self.log(f"{name}: a report was refused ({error}); sending them one at a time")
                self.report_singly[name] = True
            elif records:
                self.log(
                    f"{name}: the coordinator refused the report of replica {records[0].replica}: {error}"
                )
                self.journal.mark_reported(records[0], now)  # it will never be taken; keep it in history
            else:
                self.network_failed(name, now, error)
            return
        except (requests.RequestException, ValueError) as error:
            self.network_failed(name, now, error)
            return
        runtime = self.runtimes[name]
        for record in records:
            self.journal.mark_reported(record, now)
        if records:
            self.log(f"{name}: reported {len(records)} result(s)")
        if host_info:
            runtime.host_info_sent = float(self.data.host_info().get("measured_at", now))
        self.receive_tasks(name, reply.get("tasks", []), now)
        self.no_work[name] = bool(work) and not reply.get("tasks")
        runtime.credit = reply.get("credit") or runtime.credit
        runtime.last_rpc, runtime.last_error = now, ""
        self.backoffs[name].succeeded(now, float(reply.get("next_rpc_seconds", 0)))
        self.prune_reported(name, now)
        self.save_runtime(name)

    def report_for(self, record: TaskRecord) -> Report:
        outcome = record.outcome or {}
        success = outcome.get("status") == "success"
        output = self.journal.output_path(record).read_bytes() if success else None
        return Report(
            replica=record.replica,
            status="success" if success else "client_error",
            cpu_time=float(outcome.get("cpu_time", 0.0)),
            output=output,
            inline=output is not None and len(output) <= INLINE_BYTES_MAX,
            exit_code=int(outcome.get("exit_code", 0)),
            message=str(outcome.get("message", ""))[-1000:],
        )

    def receive_tasks(self, name: str, tasks: list[dict[str, Any]], now: float) -> None:
        session = self.sessions[name]
        for task in tasks:
            try:
                self.journal.receive(name, task, session.fetch_input(task), now)
            except (ProtocolError, requests.RequestException) as error:
                self.refuse_task(name, task, f"cannot fetch the input: {error}", now)
            except (ValueError, TypeError, KeyError) as error:
                self.log(f"{name}: ignoring a malformed task from the coordinator: {error}")
        if tasks:
            self.log(f"{name}: received {len(tasks)} task(s)")

    def refuse_task(self, name: str, task: dict[str, Any], message: str, now: float) -> None:
        """Keep a task that cannot run as a client error, so the project hears why."""
        try:
            record = self.journal.receive(name, task, b"", now)
        except (ValueError, TypeError, KeyError) as error:
            self.log(f"{name}: ignoring a malformed task from the coordinator: {error}")
            return
        self.finish(record, Outcome("client_error", 0, 0.0, message))

    def network_failed(self, name: str, now: float, error: Exception) -> None:
        delay = self.backoffs[name].failed(now, getattr(error, "retry_after", None))
        runtime = self.runtimes[name]
        runtime.last_error = f"{error}"[:300]
        self.log(f"{name}: {error}; trying again in {delay:.0f} s (crunching goes on)")
        self.save_runtime(name)

    def prune_reported(self, name: str, now: float) -> None:
        for record in self.journal.records(project=name, states=[REPORTED]):
            if record.history and record.history[-1][1] < now - KEEP_REPORTED_SECONDS:
                self.journal.forget(name, record.replica)
