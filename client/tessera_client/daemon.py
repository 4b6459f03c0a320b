"""The daemon behind ``tessera run``: fetch work, verify and run signed apps, upload, report.

One thread does everything in a loop that wakes about once a second (more often only while
the CPU throttle flips tasks on and off), so the client idles at a fraction of a percent
of one core. State lives in the journal on disk: a crash or a power cut at any moment
loses at most the work since a task's last checkpoint, never a finished result, and a
report repeated after a crash is acknowledged by the coordinator as a duplicate.

The daemon holds the policy (which task runs, what to ask each project for, when to pause);
:mod:`tessera_client.running_apps` starts, watches and finishes the apps themselves.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console

from tessera_client import conditions, control, host_info, scheduling
from tessera_client.app_outcome import Outcome
from tessera_client.app_supply import AppSupply
from tessera_client.bundles import AppCache
from tessera_client.contact import ProjectLink
from tessera_client.elapsed import ElapsedTime
from tessera_client.journal import Journal
from tessera_client.leftover_apps import kill_leftover
from tessera_client.prefs import Preferences, PreferenceStore
from tessera_client.running_apps import Running, RunningApps, progress_display
from tessera_client.state import DataDir, suggested_preferences
from tessera_client.task_record import RECEIVED, REPORTED, RUNNING, TaskRecord
from tessera_client.wakeup import Wakeup

if TYPE_CHECKING:
    from tessera_client.dashboard_server import DashboardServer

EVENTS_KEPT = 300  # the event log's lines the dashboard can show


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
        dashboard_port: int | None = None,
    ) -> None:
        self.data, self.console = data.ensure(), console or Console(stderr=True)
        self.exit_when_idle, self.clock = exit_when_idle, clock
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.journal = Journal(data.tasks, owner=True)
        self.apps = AppCache(data.apps)
        self.prefs = PreferenceStore(data.prefs_file)
        self.n_cores = os.cpu_count() or 1
        self.links: dict[str, ProjectLink] = {}
        self._stamps: dict[Path, tuple[int, int] | None] = {}  # what files looked like when last read
        self._prefs: Preferences | None = None
        self._host_info: dict[str, Any] = {}  # the last benchmark's figures
        self.host = host_info.HostDescription(self.data.root)
        self.elapsed = ElapsedTime(self.journal)
        self.stopping = False
        self.suspended_because: str | None = None
        self.progress = progress_display(self.console)
        self.apps_running = RunningApps(
            self.journal, self.progress, self.log, clock, isolate_network=isolate_network
        )
        self.apps_running.native_allowed = lambda: self.effective_prefs().native_apps
        self.supply = AppSupply(self.apps, self.progress, self.log, clock, self.finish)
        self.events: deque[tuple[float, str]] = deque(maxlen=EVENTS_KEPT)
        self.dashboard_port = dashboard_port  # None: no dashboard
        self.dashboard: DashboardServer | None = None

    @property
    def running(self) -> dict[tuple[str, int], Running]:
        """The apps running now, by (project, replica)."""
        return self.apps_running.running

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> int:
        """Crunch until Ctrl-C (or, with ``exit_when_idle``, until there is nothing left)."""
        previous = {sig: signal.signal(sig, self._ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.refresh_projects()
            if not self.links:
                self.console.print("No project attached: run `tessera attach URL --token TOKEN` first.")
                return 1
            self.recover()
            with self.progress, Wakeup() as wakeup:  # an app that ends wakes the loop at once
                self.open_dashboard(wakeup.poke)
                while not self.stopping:
                    wake = self.step()
                    if self.exit_when_idle and self.idle():
                        self.log("nothing left to do: every result is reported and no work is offered")
                        break
                    wakeup.sleep(min(wake - self.clock(), 1.0))
        finally:
            if self.dashboard is not None:
                self.dashboard.close()
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def step(self) -> float:
        """One pass over everything; returns when the loop should look again."""
        if self.dashboard is not None:
            self.dashboard.serve_pending()  # the dashboard's requests, between two looks
        now = self.clock()
        self.refresh_projects()
        prefs = self.effective_prefs()
        self.elapsed.count(self.running)
        self.reap(now)
        self.stop_suspended_projects(now)
        reason = self.suspend_reason(prefs)
        if reason != self.suspended_because:
            self.log(f"suspended: {reason}" if reason else "resumed")
            self.suspended_because = reason
        if reason is None:
            self.start_tasks(prefs, now)
        self.elapsed.count(self.running)  # before the throttle changes which apps run
        self.host.time.tick(now, computing=reason is None)
        wake = min(now + 1.0, self.apply_throttle(prefs, reason, now))
        cpus = prefs.cpus(self.n_cores)
        for link in list(self.links.values()):
            if link.due(now, cpus):
                link.contact(now, work=self.work_wanted(link, prefs), host_info=self.host_info_due(link))
        self.update_display()
        return wake

    def idle(self) -> bool:
        """Nothing runs, every result is reported, and no project offers work."""
        unfinished = [r for r in self.journal.records() if r.state != REPORTED]
        return not self.running and not unfinished and all(link.no_work for link in self.links.values())

    def _ask_to_stop(self, signum: int, frame: Any) -> None:
        if self.stopping:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.stopping = True
        self.log("stopping: running tasks will resume from their checkpoints next time")

    def shutdown(self) -> None:
        """Stop the apps (their checkpoints stay) and close connections; nothing is lost."""
        self.elapsed.count(self.running)
        self.elapsed.save(self.running, everything=True)
        self.host.time.save(self.clock())
        self.apps_running.stop_all()
        for link in self.links.values():
            link.close()

    def log(self, message: str) -> None:
        """One line of the run's story; never markup, as messages quote what apps and servers said."""
        self.events.append((time.time(), message))
        self.console.print(
            f"{time.strftime('%H:%M:%S')} {message}", markup=False, highlight=False, soft_wrap=True
        )

    def open_dashboard(self, wake: Callable[[], None]) -> None:
        """Listen for the dashboard on 127.0.0.1 (see :mod:`tessera_client.dashboard_server`)."""
        if self.dashboard_port is None:
            return
        from tessera_client.dashboard_server import DashboardServer  # only `tessera run` needs it
        from tessera_client.dashboard_view import DashboardBackend

        try:
            self.dashboard = DashboardServer(
                self.data, DashboardBackend(self), port=self.dashboard_port, wake=wake
            )
        except OSError as error:
            self.log(f"no dashboard: cannot listen on 127.0.0.1:{self.dashboard_port} ({error})")

    # -- projects ---------------------------------------------------------------------
    def changed(self, path: Path) -> bool:
        """Has ``path`` changed since the last look? The loop re-reads files only then, as
        re-reading every second would be most of what an idle client costs."""
        try:
            found = path.stat()
            stamp: tuple[int, int] | None = (found.st_mtime_ns, found.st_size)
        except OSError:
            stamp = None
        seen = path in self._stamps and self._stamps[path] == stamp
        self._stamps[path] = stamp
        return not seen

    def reload_settings(self) -> None:
        """Read the preferences and projects again now (the dashboard changed them), even if
        their files' timestamps did not move."""
        self._prefs = None
        self.refresh_projects(force=True)

    def refresh_projects(self, force: bool = False) -> None:
        """Pick up attaches, detaches, new shares and a new benchmark while the daemon runs."""
        if self.changed(self.data.host_file):
            self._host_info = self.data.host_info()
            self.host.forget()  # `tessera benchmark` ran: look at the hardware again too
        if not self.changed(self.data.root / "projects") and not force:
            return
        self._prefs = None
        current = {p.name: p for p in self.data.projects()}
        for name in set(self.links) - set(current):
            self.log(f"{name}: detached; abandoning its tasks")
            for key in [k for k in self.running if k[0] == name]:
                self.apps_running.drop(key)
            self.journal.forget_project(name)
            self.links.pop(name).close()
        for name, project in current.items():
            if name not in self.links:
                self.links[name] = ProjectLink(
                    project,
                    data=self.data,
                    journal=self.journal,
                    log=self.log,
                    refuse=lambda record, message: self.finish(
                        record, Outcome("client_error", 0, 0.0, message)
                    ),
                    abort=self.abort_task,
                    backoff_base=self.backoff_base,
                    backoff_cap=self.backoff_cap,
                )
            self.links[name].project = project  # a new resource share, say

    def abort_task(self, record: TaskRecord) -> None:
        """The project called the task off (a cancelled batch): its work would be wasted, so stop
        the app and forget the task; there is nothing to report."""
        cpu = self.apps_running.drop((record.project, record.replica))
        if cpu is not None:
            self.add_usage(record.project, cpu, self.clock())
        self.journal.forget(record.project, record.replica)
        self.log(f"{record.project}: the project called off task {record.replica}")

    def effective_prefs(self) -> Preferences:
        """Local settings over the suggestions of the project with the largest share."""
        if self._prefs is not None and not self.changed(self.data.prefs_file):
            return self._prefs
        self.changed(self.data.prefs_file)
        self._prefs = self.prefs.effective(self.suggested_prefs())
        return self._prefs

    def suggested_prefs(self) -> dict[str, Any]:
        """The suggestions of the project with the largest share, which the volunteer's own override."""
        return suggested_preferences(link.project for link in self.links.values())

    def suspend_reason(self, prefs: Preferences) -> str | None:
        """Why no app may run now (the volunteer suspended all work, or their preferences), or None."""
        if control.all_suspended(self.data):
            return control.SUSPENDED_BY_VOLUNTEER
        return conditions.suspend_reason(
            prefs,
            local_time=datetime.now().time(),
            idle_seconds=conditions.user_idle_seconds(),
            on_ac=conditions.on_ac_power(),
        )

    def flops(self) -> float:
        """This computer's measured speed per core (a default until a benchmark ran)."""
        return float(self._host_info.get("flops") or scheduling.DEFAULT_FLOPS)

    def shares(self) -> dict[str, float]:
        """Each attached project's resource share."""
        return {name: link.project.resource_share for name, link in self.links.items()}

    def usage(self, now: float) -> dict[str, float]:
        """Each project's recent CPU use, decayed to ``now``."""
        return {
            name: scheduling.decayed(link.runtime.cpu_usage, link.runtime.usage_time, now)
            for name, link in self.links.items()
        }

    # -- running apps -----------------------------------------------------------------
    def recover(self) -> None:
        """After a crash: make sure no app of ours still runs unsupervised; restart resumes it."""
        for record in self.journal.records(states=[RUNNING]):
            if record.pid and kill_leftover(record.pid, self.journal.slot(record)):
                self.log(f"{record.project}: stopped a leftover app of replica {record.replica}")

    def runnable(self, now: float) -> list[TaskRecord]:
        """Tasks waiting for a core, in the order the resource shares give them one."""
        waiting = {
            (r.project, r.replica): r
            for r in self.journal.records(states=[RECEIVED, RUNNING])
            if (r.project, r.replica) not in self.running
            and r.project in self.links
            and not self.links[r.project].project.suspended
        }
        flops = self.flops()
        candidates = [
            scheduling.Candidate(
                r.project, r.replica, r.deadline, scheduling.estimated_seconds(r.task, flops)
            )
            for r in waiting.values()
        ]
        order = scheduling.run_order(candidates, self.shares(), self.usage(now))
        return [waiting[(c.project, c.replica)] for c in order]

    def stop_suspended_projects(self, now: float) -> None:
        """Stop the apps of a project the volunteer suspended; they resume from their checkpoints."""
        for key in [k for k in self.running if k[0] in self.links and self.links[k[0]].project.suspended]:
            cpu = self.apps_running.preempt(key)
            self.add_usage(key[0], cpu, now)
            self.log(f"{key[0]}: project suspended; task {key[1]} stops at its checkpoint")

    def add_usage(self, name: str, cpu_seconds: float, now: float) -> None:
        """Count ``cpu_seconds`` to the project's recent use."""
        if name in self.links:
            runtime = self.links[name].runtime
            runtime.cpu_usage = scheduling.decayed(runtime.cpu_usage, runtime.usage_time, now) + cpu_seconds
            runtime.usage_time = now

    def start_tasks(self, prefs: Preferences, now: float) -> None:
        """Start waiting tasks on the free cores, in the shares' order (an ``mt`` task takes N)."""
        total, in_use = prefs.cpus(self.n_cores), self.apps_running.cores_in_use()
        for record in self.runnable(now):
            cores = scheduling.task_cores(record.task, host_cores=total)
            if self.stopping or not scheduling.fits(cores, in_use=in_use, host_cores=total):
                return
            if record.deadline <= now:
                self.finish(record, Outcome("client_error", 0, 0.0, "deadline passed before it could start"))
                continue
            entrypoint = self.supply.app_for(record, self.links[record.project])
            if entrypoint is None:
                continue
            self.launch(record, entrypoint, now, host_cores=total)
            in_use += cores

    def launch(
        self, record: TaskRecord, entrypoint: Path, now: float, host_cores: float | None = None
    ) -> None:
        """Run the task's app, under the limits the task asks for (on at most ``host_cores``)."""
        limits = scheduling.task_limits(
            record.task, flops=self.flops(), deadline=record.deadline, host_cores=host_cores
        )
        self.apps_running.launch(record, entrypoint, limits, now)
        self.elapsed.started((record.project, record.replica))

    def reap(self, now: float) -> None:
        """Keep the results of the apps that ended, and count their CPU time to their projects."""
        for project, cpu_seconds in self.apps_running.reap(now):
            self.add_usage(project, cpu_seconds, now)
        self.elapsed.save(self.running)  # the ended tasks' at once, before they are reported

    def finish(self, record: TaskRecord, outcome: Outcome, cpu_before: float | None = None) -> None:
        """The task is over, with ``outcome``: keep its result (see :meth:`RunningApps.finish`)."""
        self.apps_running.finish(record, outcome, cpu_before)

    def apply_throttle(self, prefs: Preferences, reason: str | None, now: float) -> float:
        """Suspend everything while crunching is not allowed, and duty-cycle for the CPU limit."""
        throttle = conditions.Throttle(prefs.cpu_percent)
        self.apps_running.hold(reason is None and throttle.running_at(now))
        if prefs.cpu_percent >= 100 or reason is not None or not self.running:
            return now + 1.0
        return throttle.next_change(now)

    def update_display(self) -> None:
        """Show each running app's progress."""
        self.apps_running.update_display()

    # -- what to ask the projects for ---------------------------------------------------
    def work_wanted(self, link: ProjectLink, prefs: Preferences) -> scheduling.WorkWanted:
        """BOINC's work fetch: fill this project's share of the work buffer, unless stopping or
        the disk limit is reached."""
        if self.stopping or link.project.suspended or self.disk_used() >= prefs.disk_max_gb * 1e9:
            return {}
        queued = self.journal.records(project=link.name, states=[RECEIVED, RUNNING])
        flops, seconds = self.flops(), 0.0
        for record in queued:
            left = self.apps_running.fraction_left((link.name, record.replica))
            seconds += scheduling.estimated_seconds(record.task, flops) * left
        shares = self.shares()
        return scheduling.work_request(
            cpus=prefs.cpus(self.n_cores),
            share=shares[link.name] / (sum(shares.values()) or 1.0),
            buffer_hours=prefs.work_buf_hours,
            queued_tasks=len(queued),
            queued_seconds=seconds,
        )

    def disk_used(self) -> int:
        """Bytes the client keeps on disk: tasks and apps."""
        apps = sum(f.stat().st_size for f in self.data.apps.rglob("*") if f.is_file())
        return self.journal.disk_usage() + apps

    def host_info_due(self, link: ProjectLink) -> dict[str, Any]:
        """What this computer is and how fast, if this project has not heard it yet (host_info)."""
        info = self.host.current(self.effective_prefs(), self._host_info, self.disk_used)
        measured_at = float(self._host_info.get("measured_at") or 0)
        return host_info.due(
            info, described=link.described, measured_at=measured_at, sent_at=link.runtime.host_info_sent
        )
