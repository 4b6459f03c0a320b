"""What the dashboard shows and what it may do, run on the daemon's loop.

:meth:`DashboardBackend.state` is one snapshot of the client, as JSON for the page: projects
with their credit and its history, tasks with progress, CPU time and deadline, preferences
with where each value comes from, notices and the event log. :meth:`DashboardBackend.act`
does what the page's buttons ask, each through the same files the ``tessera`` commands
write, so the dashboard can do nothing the command line cannot. Every field of a request is
checked before anything changes.
"""

from __future__ import annotations

import threading
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from tessera_client import __version__, control, notices, status_view
from tessera_client.app_contract import read_progress
from tessera_client.credit_history import figure
from tessera_client.prefs import FIELDS, Preferences
from tessera_client.task_record import DONE, RECEIVED, REPORTED, RUNNING, UPLOADED, TaskRecord

if TYPE_CHECKING:
    from tessera_client.daemon import Daemon

TASK_WORDS = {DONE: "ready to upload", UPLOADED: "ready to report", REPORTED: "reported"}
TEXT_MAX = 2000  # the longest string field a request may carry


class DashboardError(ValueError):
    """A request the dashboard cannot do as asked; answered 400 with this message."""


def text_field(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    """A string field of a request, stripped, or None when optional and absent."""
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise DashboardError(f"{key} is required")
        return None
    if not isinstance(value, str) or len(value) > TEXT_MAX:
        raise DashboardError(f"{key} must be text of at most {TEXT_MAX} characters")
    return value.strip()


class DashboardBackend:
    """The dashboard's view of ``daemon`` and its actions on it."""

    ACTIONS = ("suspend", "resume", "prefs", "share", "detach", "attach", "read-notices")

    def __init__(self, daemon: Daemon) -> None:
        self.daemon, self.data = daemon, daemon.data
        self._attaching = threading.Lock()  # one attach at a time: two could pick the same name

    # -- the snapshot ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        daemon = self.daemon
        return {
            "version": __version__,
            "now": daemon.clock(),
            "suspended": {
                "all": control.all_suspended(self.data),
                "reason": daemon.suspended_because,
            },
            "projects": [self._project(link) for link in daemon.links.values()],
            "tasks": [self._task(record) for record in sorted(daemon.journal.records(), key=_task_order)],
            "prefs": self._preferences(),
            "notices": self._notices(),
            "events": [[moment, text] for moment, text in daemon.events],
        }

    def _project(self, link: Any) -> dict[str, Any]:
        project, runtime = link.project, link.runtime
        credit = runtime.credit
        return {
            "name": project.name,
            "title": project.project_name,
            "url": project.url,
            "host_id": project.host_id,
            "share": project.resource_share,
            "suspended": project.suspended,
            "host_total": figure(credit, "host_total"),
            "host_rac": figure(credit, "host_rac"),
            "volunteer_total": figure(credit, "volunteer_total"),
            "history": runtime.credit_history,
            "next_contact": link.backoff.next_time,
            "problem": runtime.last_error or "; ".join(runtime.messages),
            "unread": len(notices.unread(self.data, project.name, runtime)),
        }

    def _task(self, record: TaskRecord) -> dict[str, Any]:
        running = self.daemon.running.get((record.project, record.replica))
        outcome = record.outcome or {}
        link = self.daemon.links.get(record.project)
        if running is not None:
            state = "suspended" if running.process.suspended else "running"
            progress = running.process.progress()
            cpu = running.cpu_before + running.process.cpu_time()
        elif record.state in (RECEIVED, RUNNING):
            state = "project suspended" if link and link.project.suspended else "waiting to run"
            progress, cpu = read_progress(self.daemon.journal.slot(record)), record.cpu_time
        else:
            failed = outcome.get("status") not in (None, "success")
            state = "failed" if failed else TASK_WORDS.get(record.state, record.state)
            progress, cpu = 1.0, float(outcome.get("cpu_time", record.cpu_time))
        version, uses = status_view.version_and_use(record.task)
        return {
            "project": record.project,
            "replica": record.replica,
            "workunit": str(record.task.get("workunit", record.replica)),
            "version": version,
            "uses": uses,
            "state": state,
            "progress": progress,
            "cpu_time": cpu,
            "deadline": record.deadline,
            "note": str(outcome.get("message", ""))[:200],
        }

    def _preferences(self) -> list[dict[str, Any]]:
        suggested = self.daemon.suggested_prefs()
        effective = self.daemon.prefs.effective(suggested)
        sources = self.daemon.prefs.sources(suggested)
        kinds = {f.name: str(f.type) for f in fields(Preferences)}
        return [
            {
                "key": key,
                "meaning": meaning,
                "value": getattr(effective, key),
                "source": sources.get(key, "default"),
                "kind": kinds[key],
            }
            for key, meaning in FIELDS.items()
        ]

    def _notices(self) -> list[dict[str, Any]]:
        shown = []
        for name, link in self.daemon.links.items():
            seen = notices.read_up_to(self.data, name)
            shown += [
                {**notice, "project": name, "unread": notice["id"] > seen} for notice in link.runtime.notices
            ]
        return sorted(shown, key=lambda notice: notice["created_at"], reverse=True)

    # -- the actions ----------------------------------------------------------------------
    def act(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Do ``action`` (one of :attr:`ACTIONS` but attach) with the request's ``body``."""
        handlers = {
            "suspend": lambda: control.suspend(self.data, self._project_named(body, required=False)),
            "resume": lambda: control.resume(self.data, self._project_named(body, required=False)),
            "prefs": lambda: self._set_preferences(body),
            "share": lambda: self._set_share(body),
            "detach": lambda: self._detach(body),
            "read-notices": lambda: self._read_notices(body),
        }
        message = handlers[action]()
        self.daemon.reload_settings()  # the change holds from this very look of the loop
        self.daemon.log(f"dashboard: {message}")
        return {"message": message}

    def _project_named(self, body: dict[str, Any], *, required: bool = True) -> str | None:
        name = text_field(body, "project", required=required)
        if name is not None and name not in self.daemon.links:
            raise DashboardError(f"no project named {name!r} is attached")
        return name

    def _set_preferences(self, body: dict[str, Any]) -> str:
        changes, removed = body.get("set", {}), body.get("unset", [])
        if not isinstance(changes, dict) or not isinstance(removed, list):
            raise DashboardError('send {"set": {preference: value}, "unset": [preference, ...]}')
        self.daemon.prefs.update(changes, removed)
        return "preferences saved: " + ", ".join([*changes, *(f"{key} unset" for key in removed)])

    def _set_share(self, body: dict[str, Any]) -> str:
        name = self._project_named(body)
        share = body.get("share")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1_000_000:
            raise DashboardError(
                "a resource share is a positive number up to 1000000 (BOINC's default is 100)"
            )
        project = self.data.project(str(name))
        project.resource_share = float(share)
        self.data.save_project(project)
        return f"{name}: resource share {share:g}"

    def _detach(self, body: dict[str, Any]) -> str:
        name = str(self._project_named(body))
        unreported = [r for r in self.daemon.journal.records(project=name) if r.state != REPORTED]
        if unreported and body.get("abandon") is not True:
            raise DashboardError(
                f"{name} has {len(unreported)} task(s) not yet reported; detaching abandons them"
            )
        self.data.remove_project(name)  # the reload that follows stops its apps and forgets its tasks
        return f"detached from {name}"

    def _read_notices(self, body: dict[str, Any]) -> str:
        chosen = self._project_named(body, required=False)
        for name, link in self.daemon.links.items():
            if chosen in (None, name):
                notices.mark_read(self.data, name, link.runtime.notices)
        return "notices marked as read"

    def attach(self, body: dict[str, Any]) -> dict[str, Any]:
        """Attach a project (on the request's own thread: it talks to the project; the daemon
        picks the new project up from its folder, as after ``tessera attach``)."""
        from tessera_client.attaching import AttachRequest, attach  # only when the form is used

        request = AttachRequest(
            url=str(text_field(body, "url")),
            token=str(text_field(body, "token")),
            name=text_field(body, "name", required=False),
        )
        with self._attaching:
            project, info = attach(self.data, request)
        words = (
            f"attached to {info.get('name') or project.url} as {project.name} (host {project.host_id}),"
            f" signing key {project.fingerprint}"
        )
        self.daemon.log(f"dashboard: {words}")
        return {"message": words, "fingerprint": project.fingerprint}


def _task_order(record: TaskRecord) -> tuple[bool, float]:
    """Unfinished tasks first, the nearest deadline first (as ``tessera status``)."""
    return (record.state == REPORTED, record.deadline)
