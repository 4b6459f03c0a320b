"""``tessera status``'s tables: the attached projects and every task, in plain text cells."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from rich.table import Table
from rich.text import Text

from tessera_client import scheduling
from tessera_client.app_contract import read_progress
from tessera_client.journal import Journal
from tessera_client.state import DataDir, Project
from tessera_client.task_record import TaskRecord


def plain_row(table: Table, *cells: str) -> None:
    """Cells as plain text: they quote servers and apps, whose brackets are not rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def when(timestamp: float) -> str:
    """A moment, short: the time today, else the day and time."""
    if not timestamp or timestamp == float("inf"):
        return "-"
    moment = datetime.fromtimestamp(timestamp, timezone.utc).astimezone()
    same_day = moment.date() == datetime.now(timezone.utc).astimezone().date()
    return moment.strftime("%H:%M" if same_day else "%b %d %H:%M")


def projects_table(data: DataDir, projects: list[Project]) -> Table:
    """One row per project: its share, credit, and when and why it is contacted next."""
    table = Table(title="Projects")
    columns = (
        "project",
        "url",
        "host",
        "share",
        "host credit",
        "recent",
        "your credit",
        "next contact",
        "problem",
    )
    for column in columns:
        table.add_column(column)
    for project in projects:
        runtime = data.runtime(project.name)
        credit = runtime.credit or {}
        next_time = float(runtime.backoff.get("next_time", 0.0))
        plain_row(
            table,
            project.name,
            project.url,
            str(project.host_id),
            f"{project.resource_share:g}",
            f"{float(credit.get('host_total', 0)):.2f}",
            f"{float(credit.get('host_rac', 0)):.2f}",
            f"{float(credit.get('volunteer_total', 0)):.2f}",
            when(next_time) if next_time > time.time() else "now",
            "; ".join(
                part
                for part in (
                    "suspended" if project.suspended else "",
                    runtime.last_error or "; ".join(runtime.messages),
                )
                if part
            ),
        )
    return table


def version_and_use(task: dict[str, Any]) -> tuple[str, str]:
    """The task's app version as the volunteer reads it ("lj v2 native mt"), and what it runs on
    ("4 cores", "GPU nvidia RTX 3090 + 0.5 core")."""
    version = task.get("app_version")
    if not isinstance(version, dict):
        return "", ""
    kind = [str(version.get("runtime") or "")]
    if version.get("plan_class") not in (None, "", "cpu"):
        kind.append(str(version["plan_class"]))
    name = " ".join(
        part for part in (f"{version.get('app', '')} v{version.get('version', '')}", *kind) if part
    )
    cores = scheduling.task_cores(task)
    on = f"{cores:g} core" + ("s" if cores != 1 else "")
    gpu = version.get("gpu")
    if isinstance(gpu, dict):
        on = f"GPU {gpu.get('vendor', '')} {gpu.get('model', '')}".rstrip() + f" + {on}"
    return name, on


def tasks_table(journal: Journal, records: list[TaskRecord]) -> Table:
    """One row per task, unfinished ones first, the nearest deadline first."""
    tasks = Table(title="Tasks")
    for column in ("project", "work unit", "version", "state", "progress", "CPU time", "deadline", "note"):
        tasks.add_column(column, no_wrap=column in ("state", "progress"))
    for record in sorted(records, key=lambda r: (r.state == "reported", r.deadline)):
        outcome = record.outcome or {}
        progress = read_progress(journal.slot(record)) if record.state in ("received", "running") else 1.0
        plain_row(
            tasks,
            record.project,
            str(record.task.get("workunit", record.replica)),
            ", ".join(part for part in version_and_use(record.task) if part),
            record.state,
            f"{100 * progress:.0f}%",
            f"{float(outcome.get('cpu_time', record.cpu_time)):.1f} s",
            when(record.deadline),
            str(outcome.get("message", ""))[:60],
        )
    return tasks


def notices_table(rows: list[tuple[str, dict[str, Any]]], title: str = "Notices") -> Table:
    """Notices as (project, notice) rows, oldest first: their text is the project's, so plain."""
    table = Table(title=title)
    for column in ("project", "date", "notice"):
        table.add_column(column)
    for project, notice in rows:
        plain_row(
            table,
            project,
            notice["created_at"][:16].replace("T", " "),
            f"{notice['title']}: {notice['body']}",
        )
    return table
