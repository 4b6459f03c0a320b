"""``tessera service``: the client as a per-user service that starts by itself.

Linux: a systemd user unit (``~/.config/systemd/user/tessera.service``); it starts at log-in,
and at boot once ``loginctl enable-linger`` lets the user's manager run without a session.
macOS: a launchd agent (``~/Library/LaunchAgents/org.tessera.client.plist``), started at log-in.
Windows: a scheduled task run at log-on. Each runs ``tessera run`` with this Python and this
data folder, and stops it as Ctrl-C does, so running tasks checkpoint and nothing is lost.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

NAME = "tessera"
LAUNCHD_LABEL = "org.tessera.client"
RUN_TIMEOUT_S = 60


class ServiceError(Exception):
    """The service manager refused, or is not there (its words are in the message)."""


@dataclass(frozen=True)
class Plan:
    """What installing the service writes and runs on this platform, and how to undo it."""

    manager: str  # systemd, launchd or schtasks
    path: Path | None  # the file installed (None: the manager keeps it)
    content: bytes
    enable: list[list[str]] = field(default_factory=list)
    disable: list[list[str]] = field(default_factory=list)
    query: list[str] = field(default_factory=list)
    note: str = ""


def command_line(data_dir: Path) -> list[str]:
    """``tessera run`` by this interpreter, for this data folder, whatever PATH the manager has."""
    return [sys.executable, "-m", "tessera_client", "--data-dir", str(Path(data_dir).resolve()), "run"]


def systemd_quote(argument: str) -> str:
    """One ExecStart word: quoted, with systemd's specifiers (%) and variables ($) escaped."""
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_unit(argv: list[str]) -> str:
    return (
        "[Unit]\n"
        "Description=Tessera volunteer-computing client\n"
        "\n"
        "[Service]\n"
        f"ExecStart={' '.join(systemd_quote(word) for word in argv)}\n"
        "# Stopped as Ctrl-C stops it: running tasks checkpoint, finished results stay.\n"
        "KillSignal=SIGINT\n"
        "TimeoutStopSec=60\n"
        "Restart=on-failure\n"
        "RestartSec=60\n"
        "Nice=10\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def launchd_agent(argv: list[str], log_dir: Path) -> bytes:
    return plistlib.dumps(
        {
            "Label": LAUNCHD_LABEL,
            "ProgramArguments": argv,
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "ProcessType": "Background",
            "StandardOutPath": str(log_dir / "service.log"),
            "StandardErrorPath": str(log_dir / "service.log"),
        }
    )


def plan_for(platform: str, data_dir: Path, home: Path) -> Plan:
    """The service for ``platform`` (``sys.platform``) running the client on ``data_dir``."""
    argv = command_line(data_dir)
    if platform.startswith("linux"):
        return _systemd_plan(argv, Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config"))
    if platform == "darwin":
        return _launchd_plan(argv, home, Path(data_dir).resolve())
    if platform == "win32":
        return _windows_plan(argv)
    raise ServiceError(f"no service manager known on {platform}: run `tessera run` yourself")


def _systemd_plan(argv: list[str], config: Path) -> Plan:
    return Plan(
        "systemd",
        config / "systemd" / "user" / f"{NAME}.service",
        systemd_unit(argv).encode(),
        enable=[["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", NAME]],
        disable=[["systemctl", "--user", "disable", "--now", NAME]],
        query=["systemctl", "--user", "is-active", NAME],
        note="It starts when you log in; `loginctl enable-linger` starts it at boot without one.",
    )


def _launchd_plan(argv: list[str], home: Path, log_dir: Path) -> Plan:
    path = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    return Plan(
        "launchd",
        path,
        launchd_agent(argv, log_dir),
        enable=[["launchctl", "load", "-w", str(path)]],
        disable=[["launchctl", "unload", "-w", str(path)]],
        query=["launchctl", "list", LAUNCHD_LABEL],
        note="It starts when you log in.",
    )


def _windows_plan(argv: list[str]) -> Plan:
    at_log_on = ["/SC", "ONLOGON", "/RL", "LIMITED", "/TR", subprocess.list2cmdline(argv)]
    return Plan(
        "schtasks",
        None,
        b"",
        enable=[["schtasks", "/Create", "/F", "/TN", "Tessera", *at_log_on]],
        disable=[["schtasks", "/Delete", "/F", "/TN", "Tessera"]],
        query=["schtasks", "/Query", "/TN", "Tessera"],
        note="It starts when you log on.",
    )


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        raise ServiceError(f"{argv[0]} is not on PATH")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if check and done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise ServiceError(f"`{shlex.join(argv)}` failed: {said or f'exit status {done.returncode}'}")
    return done


def install(plan: Plan) -> None:
    """Write the unit (atomically) and have the manager start it now and at each log-in; when
    the manager refuses, leave things as they were."""
    previous = plan.path.read_bytes() if plan.path is not None and plan.path.exists() else None
    if plan.path is not None:
        plan.path.parent.mkdir(parents=True, exist_ok=True)
        partial = plan.path.with_name(plan.path.name + ".tmp")
        partial.write_bytes(plan.content)
        os.replace(partial, plan.path)
    try:
        for argv in plan.enable:
            _run(argv)
    except ServiceError:
        if plan.path is not None:
            if previous is None:
                plan.path.unlink()
            else:
                plan.path.write_bytes(previous)
        raise


def uninstall(plan: Plan) -> bool:
    """Stop the service and remove it; False when it was not installed."""
    installed = plan.path.exists() if plan.path is not None else _run(plan.query, check=False).returncode == 0
    if not installed:
        return False
    for argv in plan.disable:
        _run(argv, check=False)  # already stopped or never enabled: removing it is what matters
    if plan.path is not None:
        plan.path.unlink()
        if plan.manager == "systemd":
            _run(["systemctl", "--user", "daemon-reload"], check=False)
    return True


def state(plan: Plan) -> str:
    """``not installed``, or what the manager says of it (``active``, ``inactive``…)."""
    if plan.path is not None and not plan.path.exists():
        return "not installed"
    try:
        done = _run(plan.query, check=False)
    except ServiceError as error:
        return f"installed; {error}"
    if plan.manager == "systemd":
        return done.stdout.strip() or "unknown"
    return (
        "running or loaded"
        if done.returncode == 0
        else ("not installed" if plan.path is None else "not running")
    )
