"""The daemon's CPU throttle and suspension, on a real app process."""

from __future__ import annotations

import time

from rich.console import Console

from tessera_client.daemon import Daemon
from tessera_client.prefs import Preferences
from tessera_client.running_apps import Running
from tessera_client.sandbox import AppProcess, Limits
from tessera_client.state import DataDir

BUSY = "while True:\n    pass\n"


def busy_app(tmp_path) -> AppProcess:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text(BUSY)
    limits = Limits(
        cpu_seconds=60,
        memory_bytes=512 << 20,
        file_bytes=1 << 20,
        processes=4,
        wall_deadline=time.time() + 60,
    )
    return AppProcess.start(entrypoint=tmp_path / "app" / "main.py", slot=tmp_path / "slot", limits=limits)


def crunch_for(daemon: Daemon, prefs: Preferences, reason: str | None, seconds: float) -> None:
    until = time.time() + seconds
    while time.time() < until:
        wake = daemon.apply_throttle(prefs, reason, time.time())
        time.sleep(max(0.0, min(wake, until) - time.time()))


def daemon_running(tmp_path, process: AppProcess) -> Daemon:
    daemon = Daemon(DataDir(tmp_path / "data"), console=Console(quiet=True))
    daemon.running[("p", 1)] = Running(
        record=None, process=process, progress_id=0, cpu_before=0.0, saved_at=0.0
    )
    return daemon


def test_a_throttled_app_gets_about_its_share_of_the_cpu(tmp_path):
    process = busy_app(tmp_path)
    daemon = daemon_running(tmp_path, process)
    try:
        before = process.cpu_time()
        crunch_for(daemon, Preferences(cpu_percent=25), None, 3.0)
        used = process.cpu_time() - before
    finally:
        process.kill("test over")

    assert 0.2 < used < 1.6  # 0.75 s expected; a full core would be 3 s


def test_a_suspended_app_gets_no_cpu_and_resumes(tmp_path):
    process = busy_app(tmp_path)
    daemon = daemon_running(tmp_path, process)
    try:
        crunch_for(daemon, Preferences(), "the computer is in use", 0.3)
        before = process.cpu_time()
        time.sleep(1.0)
        paused = process.cpu_time() - before
        assert process.suspended
        crunch_for(daemon, Preferences(), None, 1.0)
        resumed = process.cpu_time() - before - paused
    finally:
        process.kill("test over")

    assert paused < 0.05
    assert resumed > 0.3 and not process.suspended
