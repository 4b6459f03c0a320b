"""``tessera service``: the unit, agent or task each platform's manager gets, checked by the
managers' own tools where they are here, and installed for real where a user manager runs."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tessera_client import service
from tessera_client.cli import main
from tessera_client.state import DataDir, Project

ODD_FOLDER = 'data dir %n $HOME "quoted"'  # what systemd would expand or split if not escaped


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not here (systemd ships it): the unit file is not checked")
    return tool


def user_manager_runs() -> bool:
    if shutil.which("systemctl") is None:
        return False
    done = subprocess.run(["systemctl", "--user", "is-system-running"], capture_output=True, text=True)
    return done.stdout.strip() in ("running", "degraded")


def test_the_systemd_unit_runs_this_python_on_this_folder_and_systemd_accepts_it(tmp_path):
    plan = service.plan_for("linux", tmp_path / ODD_FOLDER, tmp_path / "home")
    unit = plan.content.decode()

    assert plan.path == tmp_path / "home" / ".config" / "systemd" / "user" / "tessera.service"
    assert f'ExecStart="{sys.executable}" "-m" "tessera_client" "--data-dir" ' in unit
    assert '/data dir %%n $$HOME \\"quoted\\"" "run"' in unit, "specifiers and variables are escaped"
    assert "KillSignal=SIGINT" in unit and "WantedBy=default.target" in unit
    checked = tmp_path / "tessera.service"
    checked.write_bytes(plan.content)
    verified = subprocess.run([systemd_analyze(), "verify", str(checked)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    broken = tmp_path / "broken.service"  # the positive control: verify does refuse a bad unit
    broken.write_text(unit.replace(f'"{sys.executable}"', '"/nonexistent/python"'))
    assert subprocess.run([systemd_analyze(), "verify", str(broken)], capture_output=True).returncode != 0


def test_the_launchd_agent_is_a_plist_of_the_same_command(tmp_path):
    plan = service.plan_for("darwin", tmp_path / ODD_FOLDER, tmp_path / "home")
    agent = plistlib.loads(plan.content)

    assert plan.path == tmp_path / "home" / "Library" / "LaunchAgents" / "org.tessera.client.plist"
    assert agent["ProgramArguments"] == service.command_line(tmp_path / ODD_FOLDER)
    assert agent["Label"] == "org.tessera.client" and agent["RunAtLoad"] is True
    assert plan.enable == [["launchctl", "load", "-w", str(plan.path)]]


def test_the_windows_task_runs_at_log_on_with_the_command_quoted(tmp_path):
    plan = service.plan_for("win32", tmp_path / ODD_FOLDER, tmp_path / "home")

    [create] = plan.enable
    assert create[:2] == ["schtasks", "/Create"] and "ONLOGON" in create and plan.path is None
    assert create[create.index("/TR") + 1] == subprocess.list2cmdline(
        service.command_line(tmp_path / ODD_FOLDER)
    )


def test_an_unknown_platform_says_to_run_the_client_by_hand(tmp_path):
    with pytest.raises(service.ServiceError, match="tessera run"):
        service.plan_for("sunos5", tmp_path, tmp_path)


def tessera(home: Path, *args: str) -> tuple[int, str]:
    """The ``tessera`` command with ``home`` as the user's home."""
    import io
    from contextlib import redirect_stdout

    saved = {key: os.environ.get(key) for key in ("HOME", "XDG_CONFIG_HOME")}
    os.environ["HOME"] = str(home)
    os.environ.pop("XDG_CONFIG_HOME", None)
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            code = main(["--data-dir", str(home / "data"), *args])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, " ".join(out.getvalue().split())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the systemd user unit is Linux's")
def test_install_refuses_without_a_project_and_a_refusing_manager_leaves_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    code, said = tessera(home, "service", "install")
    assert code == 2 and "attach a project first" in said

    DataDir(home / "data").ensure().save_project(Project("p", "http://127.0.0.1:9", 1, "a2V5", "SHA256:x"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no systemctl: the manager cannot be asked
    code, said = tessera(home, "service", "install")
    assert code == 2 and "systemctl is not on PATH" in said
    assert not (home / ".config" / "systemd" / "user" / "tessera.service").exists(), "nothing left behind"
    unit = home / ".config" / "systemd" / "user" / "tessera.service"
    assert tessera(home, "service", "status") == (0, f"systemd service ({unit}): not installed")


@pytest.mark.skipif(
    not user_manager_runs(),
    reason="no systemd user manager runs here (systemd is not PID 1, or no user session):"
    " the real install is not tried",
)
def test_a_real_user_unit_is_installed_enabled_and_removed(tmp_path):
    plan = service.plan_for(sys.platform, tmp_path / "data", Path.home())
    assert plan.path is not None and not plan.path.exists(), (
        "a tessera service is already installed for this user"
    )
    service.install(plan)
    try:
        enabled = subprocess.run(
            ["systemctl", "--user", "is-enabled", "tessera"], capture_output=True, text=True
        )
        assert enabled.stdout.strip() == "enabled"
        assert service.state(plan) != "not installed"
    finally:
        assert service.uninstall(plan)
    assert not plan.path.exists() and service.state(plan) == "not installed"
