"""Suspending work as the volunteer asks: all of it (the apps are held, as for any reason to
pause), or one project (its apps stop at their checkpoints and the cores go to the others; it
asks for no new work); ``tessera suspend`` and ``resume``; and the credit history kept for the
dashboard's chart."""

from __future__ import annotations

import json

import pytest

from tessera_client import control, credit_history
from tessera_client.cli import main
from tessera_client.daemon import Daemon
from tessera_client.prefs import PreferenceError, PreferenceStore
from tessera_client.state import DataDir, Project, Runtime
from tessera_client.task_record import RUNNING

SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"
TASK = {"deadline": "2030-01-01T00:00:00Z", "workunit": "wu", "upload_url": "/up"}


def launch(daemon: Daemon, tmp_path, project: str, replica: int) -> None:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "main.py").write_text(SLEEPER)
    record = daemon.journal.receive(project, {**TASK, "replica": replica}, b"in", now=0.0)
    daemon.launch(record, tmp_path / "app" / "main.py", now=2.0)


def test_a_suspended_project_stops_its_apps_at_their_checkpoints_and_asks_for_nothing(daemon, tmp_path):
    launch(daemon, tmp_path, "p", 1)
    launch(daemon, tmp_path, "q", 2)
    process = daemon.running[("p", 1)].process

    control.suspend(daemon.data, "p")
    daemon.reload_settings()
    daemon.stop_suspended_projects(now=3.0)

    assert set(daemon.running) == {("q", 2)}, "q's app goes on; p's stopped"
    assert process.poll(3.0) is None and process.cpu_time() >= 0  # stopped, not finished: no outcome
    record = daemon.journal.get("p", 1)
    assert record.state == RUNNING and record.outcome is None, "the task stays, to resume later"
    assert [r.replica for r in daemon.runnable(now=3.0)] == []
    assert daemon.work_wanted(daemon.links["p"], daemon.effective_prefs()) == {}
    assert daemon.work_wanted(daemon.links["q"], daemon.effective_prefs()) != {}

    control.resume(daemon.data, "p")
    daemon.reload_settings()
    assert [r.replica for r in daemon.runnable(now=4.0)] == [1]


def test_suspending_all_work_holds_every_app_and_resuming_lets_them_go(daemon, tmp_path):
    launch(daemon, tmp_path, "p", 1)
    prefs = daemon.effective_prefs()

    control.suspend(daemon.data)
    reason = daemon.suspend_reason(prefs)
    daemon.apply_throttle(prefs, reason, now=3.0)

    assert reason == control.SUSPENDED_BY_VOLUNTEER
    assert daemon.running[("p", 1)].process.suspended, "held in memory, as for any reason to pause"
    control.resume(daemon.data)
    daemon.apply_throttle(prefs, daemon.suspend_reason(prefs), now=4.0)
    assert not daemon.running[("p", 1)].process.suspended


def test_tessera_suspend_and_resume(tmp_path, capsys):
    data = DataDir(tmp_path).ensure()
    data.save_project(Project("p", "http://127.0.0.1:9", 1, "a2V5", "SHA256:x"))

    assert main(["--data-dir", str(tmp_path), "suspend"]) == 0
    assert main(["--data-dir", str(tmp_path), "suspend", "p"]) == 0
    out = capsys.readouterr().out
    assert "All work is suspended." in out and "p is suspended." in out
    main(["--data-dir", str(tmp_path), "status"])
    status = " ".join(capsys.readouterr().out.split())
    assert "All work is suspended" in status and "suspended" in status.split("All work")[1]
    assert main(["--data-dir", str(tmp_path), "resume"]) == 0
    assert main(["--data-dir", str(tmp_path), "resume", "p"]) == 0
    assert not data.suspend_file.exists() and not data.project("p").suspended
    assert main(["--data-dir", str(tmp_path), "suspend", "nope"]) == 2
    assert "no project named 'nope'" in capsys.readouterr().out


def test_preferences_set_together_are_all_checked_before_any_is_written(tmp_path):
    store = PreferenceStore(tmp_path / "prefs.json")
    store.set("work_buf_hours", "2")

    with pytest.raises(PreferenceError, match="cpu_percent"):
        store.update({"max_cpus": 2, "cpu_percent": 0})
    with pytest.raises(PreferenceError, match="no preference"):
        store.update({}, ["nope"])

    assert json.loads((tmp_path / "prefs.json").read_text()) == {"work_buf_hours": 2.0}
    store.update({"max_cpus": "2"}, ["work_buf_hours"])
    assert json.loads((tmp_path / "prefs.json").read_text()) == {"max_cpus": 2}


def test_the_credit_history_keeps_changes_only_and_stays_small():
    runtime = Runtime()
    for step in range(1000):
        runtime.credit = {"host_total": step // 2, "volunteer_total": "not a number"}
        credit_history.note(runtime, now=float(step))

    history = runtime.credit_history
    assert len(history) <= credit_history.KEPT
    assert history[-1] == [998.0, 499.0, 0.0], "the latest change, the bad figure as 0"
    assert [point[1] for point in history] == sorted(point[1] for point in history)
    assert history[0][1] == 0.0, "the oldest point survives the thinning"
    runtime.credit = {"host_total": float("nan")}
    credit_history.note(runtime, now=2000.0)
    assert runtime.credit_history[-1][1] == 0.0, "never a NaN, which JSON cannot carry"
    runtime.credit_history = ["damaged", [1, 2]]  # a runtime file edited by hand
    runtime.credit = {"host_total": 5}
    credit_history.note(runtime, now=3000.0)
    assert runtime.credit_history == [[3000.0, 5.0, 0.0]]
