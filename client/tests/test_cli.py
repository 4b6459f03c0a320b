"""The `tessera` command: help everywhere, clear errors, and nothing changed by a mistake."""

from __future__ import annotations

import json

import pytest

from tessera_client.cli import build_parser, main
from tessera_client.journal import Journal
from tessera_client.state import DataDir, Project

COMMANDS = [
    "attach",
    "run",
    "status",
    "detach",
    "share",
    "prefs",
    "benchmark",
    "suspend",
    "resume",
    "dashboard",
]


def tessera(tmp_path, capsys, *args: str) -> tuple[int, str]:
    code = main(["--data-dir", str(tmp_path), *args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])

    assert exit_.value.code == 0
    assert f"tessera {command}" in capsys.readouterr().out


def test_a_bad_preference_is_refused_by_name_and_changes_nothing(tmp_path, capsys):
    assert tessera(tmp_path, capsys, "prefs", "set", "cpu_percent", "50")[0] == 0

    code, out = tessera(tmp_path, capsys, "prefs", "set", "cpu_percent", "150")

    assert code == 2
    assert "cpu_percent must be a number from 1 to 100" in out
    assert json.loads((tmp_path / "prefs.json").read_text()) == {"cpu_percent": 50}


def test_prefs_show_where_each_value_comes_from(tmp_path, capsys):
    tessera(tmp_path, capsys, "prefs", "set", "work_buf_hours", "3")

    code, out = tessera(tmp_path, capsys, "prefs")

    assert code == 0
    assert "work_buf_hours │ 3.0 │ local" in out
    assert "cpu_percent │ 100 │ default" in out
    tessera(tmp_path, capsys, "prefs", "unset", "work_buf_hours")
    assert "work_buf_hours │ 1.0 │ default" in tessera(tmp_path, capsys, "prefs")[1]


def test_running_with_no_project_says_how_to_attach(tmp_path, capsys):
    code, out = tessera(tmp_path, capsys, "run")

    assert code == 1 and "tessera attach URL --token TOKEN" in out


def test_an_unreachable_project_is_a_clear_error_and_nothing_is_attached(tmp_path, capsys):
    code, out = tessera(tmp_path, capsys, "attach", "http://127.0.0.1:9", "--token", "tsr_x")

    assert code == 2 and "cannot reach the project" in out
    assert DataDir(tmp_path).projects() == []


def attached(tmp_path) -> DataDir:
    data = DataDir(tmp_path).ensure()
    data.save_project(Project("demo", "http://127.0.0.1:9", 3, "a2V5", "SHA256:ab"))
    return data


def test_detach_refuses_to_abandon_unreported_tasks_unless_told(tmp_path, capsys):
    data = attached(tmp_path)
    task = {"replica": 5, "deadline": "2030-01-01T00:00:00Z", "workunit": "wu-5"}
    Journal(data.tasks).receive("demo", task, b"input", now=0.0)

    code, out = tessera(tmp_path, capsys, "detach", "demo")

    assert code == 2 and "1 task(s) not yet reported" in out
    assert [p.name for p in data.projects()] == ["demo"]
    assert tessera(tmp_path, capsys, "detach", "demo", "--yes")[0] == 0
    assert data.projects() == [] and Journal(data.tasks).records() == []


def test_status_lists_projects_and_tasks(tmp_path, capsys):
    data = attached(tmp_path)
    task = {"replica": 5, "deadline": "2030-01-01T00:00:00Z", "workunit": "wu-5"}
    Journal(data.tasks).receive("demo", task, b"input", now=0.0)

    code, out = tessera(tmp_path, capsys, "status")

    assert code == 0
    assert "demo" in out and "wu-5" in out and "received" in out


def test_share_changes_the_resource_share_and_refuses_nonsense(tmp_path, capsys):
    data = attached(tmp_path)

    assert tessera(tmp_path, capsys, "share", "demo", "250")[0] == 0
    assert data.project("demo").resource_share == 250
    code, out = tessera(tmp_path, capsys, "share", "demo", "-1")
    assert code == 2 and "positive number" in out
    assert data.project("demo").resource_share == 250


def test_benchmark_records_the_speed_for_the_projects(tmp_path, capsys):
    code, out = tessera(tmp_path, capsys, "benchmark", "--seconds", "0.2")

    assert code == 0 and "million operations per second" in out
    figures = json.loads((tmp_path / "host.json").read_text())
    assert figures["flops"] > 0 and figures["iops"] > 0 and figures["measured_at"] > 0


def test_the_volunteer_can_turn_the_gpus_off(tmp_path, capsys):
    assert tessera(tmp_path, capsys, "prefs", "set", "use_gpus", "no")[0] == 0

    code, out = tessera(tmp_path, capsys, "prefs")

    assert code == 0 and "use_gpus │ False │ local" in out
    assert json.loads((tmp_path / "prefs.json").read_text()) == {"use_gpus": False}
