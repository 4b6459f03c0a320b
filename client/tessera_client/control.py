"""Suspending and resuming work, as BOINC Manager's "Suspend" buttons: all of it, or one project.

Both live on disk so that ``tessera suspend``, the dashboard and a restarted client agree: all
work is suspended while :attr:`DataDir.suspend_file` exists; a project while its settings say
``suspended``. The daemon holds the apps of a suspended client (they stay in memory, as under
the other reasons to pause) and stops those of a suspended project, which resume from their
checkpoints, so the other projects get the cores. A suspended project asks for no new work;
its finished results are still reported, so its volunteers' credit is not held up.
"""

from __future__ import annotations

import time

from tessera_client.state import DataDir

SUSPENDED_BY_VOLUNTEER = "suspended by the volunteer"


def all_suspended(data: DataDir) -> bool:
    return data.suspend_file.exists()


def suspend(data: DataDir, project: str | None = None) -> str:
    """Suspend all work, or ``project``'s; returns what was done, in words."""
    if project is None:
        data.ensure()
        data.suspend_file.write_text(f"{time.time():.0f}\n")
        return "All work is suspended."
    settings = data.project(project)
    settings.suspended = True
    data.save_project(settings)
    return f"{settings.name} is suspended."


def resume(data: DataDir, project: str | None = None) -> str:
    """Undo :func:`suspend`; returns what was done, in words."""
    if project is None:
        data.suspend_file.unlink(missing_ok=True)
        return "Work is resumed."
    settings = data.project(project)
    settings.suspended = False
    data.save_project(settings)
    return f"{settings.name} is resumed."
