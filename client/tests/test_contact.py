"""When the daemon calls a project, and what it says: its pace, except to hand in results when
nothing is left; the unfinished tasks it holds, and what it does when the project calls one off."""

from __future__ import annotations

import io
import os
import time

import pytest
from fake_coordinator import FakeCoordinator
from rich.console import Console

from tessera_client import contact, hardware, status_view
from tessera_client.cli import main
from tessera_client.contact import ProjectLink
from tessera_client.daemon import Daemon
from tessera_client.journal import Journal
from tessera_client.prefs import PreferenceStore
from tessera_client.protocol import USER_AGENT, HostKey
from tessera_client.state import DataDir, Project
from tessera_client.task_record import RECEIVED, REPORTED, TaskRecord

TASK = {"replica": 4, "deadline": "2030-01-01T00:00:00Z", "workunit": "wu", "upload_url": "/up"}


def link_with_a_finished_task(tmp_path, output: bytes) -> tuple[ProjectLink, Journal]:
    data = DataDir(tmp_path).ensure()
    data.save_project(Project("p", "http://127.0.0.1:9", 1, "a2V5", "SHA256:x"))
    HostKey.generate().save(data.key_file("p"))
    journal = Journal(data.tasks, owner=True)
    record = journal.receive("p", TASK, b"in", now=0.0)
    slot = journal.slot(record)
    slot.mkdir(parents=True)
    (slot / "output").write_bytes(output)
    journal.finish(
        record,
        outcome={"status": "success", "exit_code": 0, "cpu_time": 1.0},
        output=slot / "output",
        now=1.0,
    )
    link = ProjectLink(
        data.project("p"), data=data, journal=journal, log=lambda _: None, refuse=lambda *_: None,
        abort=lambda _: None, backoff_base=60.0, backoff_cap=3600.0,
    )  # fmt: skip
    link.backoff.succeeded(now=10.0, next_rpc_seconds=300)  # the project asked for 5 minutes' peace
    return link, journal


def test_a_finished_result_with_nothing_left_to_crunch_goes_at_once(tmp_path):
    link, _ = link_with_a_finished_task(tmp_path, b"small output")

    assert link.due(now=20.0)


def test_a_finished_result_goes_at_once_while_a_core_waits_for_work(tmp_path):
    # A project that sends a task per free core (its work buffer) sends the next one only when
    # asked: the result goes, and work is asked for, as soon as a core has nothing to crunch.
    link, journal = link_with_a_finished_task(tmp_path, b"small output")
    journal.receive("p", {**TASK, "replica": 5}, b"in", now=2.0)  # still to crunch

    assert not link.due(now=20.0, cpus=1)  # its one core has the other task
    assert link.due(now=20.0, cpus=2)


def test_a_refused_upload_waits_for_its_retry_and_does_not_hammer_the_project(tmp_path):
    link, journal = link_with_a_finished_task(tmp_path, b"x" * 10_000)
    [record] = journal.records()
    journal.note_retry(record, next_attempt=5000.0)

    assert not link.due(now=20.0)
    assert link.due(now=311.0)  # the project's own pace still holds
    link.backoff.failed(now=400.0)
    assert not link.due(now=400.0)  # and a failure's back-off always does


# -- the project calls tasks off ----------------------------------------------------------------
# A coordinator on a real socket: the client's own session, signing and JSON go over the wire.

SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)\n"


def task(replica: int) -> dict:
    return {**TASK, "replica": replica}


def receive(daemon: Daemon, project: str, replica: int) -> TaskRecord:
    return daemon.journal.receive(project, task(replica), b"in", now=0.0)


def finish(daemon: Daemon, replica: int) -> TaskRecord:
    record = receive(daemon, "p", replica)
    return daemon.journal.finish(
        record, outcome={"status": "client_error", "exit_code": 1, "message": "x"}, output=None, now=1.0
    )


def launch(daemon: Daemon, tmp_path, replica: int) -> TaskRecord:
    """Run a real app for the task, as the daemon does once the app is verified."""
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "main.py").write_text(SLEEPER)
    daemon.launch(receive(daemon, "p", replica), tmp_path / "app" / "main.py", now=2.0)
    return daemon.running[("p", replica)].record


def call(daemon: Daemon, coordinator: FakeCoordinator, **reply) -> dict:
    """One scheduler RPC of project "p" (asking for work, so there is something to say)."""
    coordinator.reply.update(reply)
    daemon.links["p"].contact(now=10.0, work={"tasks": 1}, host_info={})
    return coordinator.requests[-1]


def process_group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_request_names_the_unfinished_tasks_of_this_project_only(daemon, coordinator, tmp_path):
    finish(daemon, 4)
    receive(daemon, "p", 9)
    launch(daemon, tmp_path, 5)
    receive(daemon, "q", 7)

    request = call(daemon, coordinator)

    assert request["in_progress"] == [5, 9]
    assert [r["replica"] for r in request["reports"]] == [4]


def test_no_unfinished_task_sends_no_in_progress_field(daemon, coordinator):
    finish(daemon, 4)

    assert "in_progress" not in call(daemon, coordinator)


def test_at_most_so_many_unfinished_tasks_are_named_the_lowest_first(daemon, coordinator, monkeypatch):
    monkeypatch.setattr(contact, "MAX_IN_PROGRESS", 2)
    for replica in (9, 3, 7):
        receive(daemon, "p", replica)

    assert call(daemon, coordinator)["in_progress"] == [3, 7]


def test_a_running_task_called_off_is_stopped_and_forgotten(daemon, coordinator, tmp_path):
    record = launch(daemon, tmp_path, 5)
    folder = daemon.journal.task_dir("p", 5)
    assert not process_group_gone(record.pid)

    call(daemon, coordinator, abort=[5])

    assert process_group_gone(record.pid)
    assert daemon.running == {}
    assert daemon.journal.get("p", 5) is None and not folder.exists()
    assert "p: the project called off task 5" in daemon.console.file.getvalue()


def test_a_received_task_called_off_is_forgotten(daemon, coordinator):
    receive(daemon, "p", 5)
    receive(daemon, "p", 6)

    call(daemon, coordinator, abort=[5])

    assert [r.replica for r in daemon.journal.records(project="p")] == [6]
    assert not daemon.journal.task_dir("p", 5).exists()


@pytest.mark.parametrize(
    "abort",
    [[99], [7], [4], ["5"], [5.0], [True], [None, [5]], "5", 5, {"5": True}, None],
    ids=[
        "never-sent",
        "another-projects",
        "done",
        "string",
        "float",
        "bool",
        "nonsense",
        "string-not-list",
        "int-not-list",
        "object-not-list",
        "null",
    ],
)
def test_an_abort_for_anything_else_changes_nothing(daemon, coordinator, abort):
    finish(daemon, 4)
    receive(daemon, "p", 1)  # True == 1 in Python: a bool must not pass for this id
    receive(daemon, "p", 5)
    receive(daemon, "q", 7)

    call(daemon, coordinator, abort=abort)

    states = {(r.project, r.replica): r.state for r in daemon.journal.records()}
    assert states == {("p", 1): RECEIVED, ("p", 4): REPORTED, ("p", 5): RECEIVED, ("q", 7): RECEIVED}
    assert daemon.links["p"].runtime.last_error == ""
    assert "called off" not in daemon.console.file.getvalue()


def test_no_abort_field_from_an_older_coordinator_changes_nothing(daemon, coordinator):
    receive(daemon, "p", 5)

    call(daemon, coordinator)

    assert daemon.journal.get("p", 5).state == RECEIVED


@pytest.mark.parametrize("status", ["accepted", "duplicate", "cancelled"])
def test_a_report_acknowledged_in_any_way_is_done(daemon, coordinator, status):
    finish(daemon, 4)

    call(daemon, coordinator, acks=[{"replica": 4, "status": status}])
    call(daemon, coordinator)

    assert daemon.journal.get("p", 4).state == REPORTED
    assert coordinator.requests[-1]["reports"] == []  # not sent again


# -- what the client says: its elapsed times and its computer ------------------------------------

QUICK_APP = "import time\ntime.sleep(0.5)\nopen('output', 'w').write('done')\n"
DESCRIPTION_KEYS = {
    "platforms", "os_name", "os_version", "cpu_vendor", "cpu_model", "cpu_family", "cpu_features", "n_cpus",
    "memory_bytes", "disk_free_bytes", "gpus", "use_gpus", "runtimes", "python_version",
}  # fmt: skip
TIME_KEYS = {"on_fraction", "active_fraction"}  # sent by the daemon, not at attach


def test_a_report_says_how_long_the_app_ran(daemon, coordinator, tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text(QUICK_APP)
    started = time.monotonic()
    daemon.launch(receive(daemon, "p", 5), tmp_path / "app" / "main.py", now=2.0)
    while daemon.running and time.monotonic() - started < 15:
        time.sleep(0.05)
        daemon.elapsed.count(daemon.running)
        daemon.reap(now=3.0)
    wall = time.monotonic() - started

    [report] = call(daemon, coordinator)["reports"]

    assert report["status"] == "success", report
    assert 0.3 <= report["elapsed"] <= wall


def test_a_report_of_an_older_client_s_task_says_no_elapsed_time(daemon, coordinator):
    record = daemon.journal.start_run(receive(daemon, "p", 4), pid=1, now=1.0)
    record.elapsed = None  # as a record written before clients measured it reads
    daemon.journal._save(record)
    daemon.journal.finish(record, outcome={"status": "client_error", "exit_code": 1}, output=None, now=2.0)

    [report] = call(daemon, coordinator)["reports"]

    assert "elapsed" not in report and report["cpu_time"] == 0.0


def rpc_with_host_info(daemon: Daemon, coordinator: FakeCoordinator) -> dict:
    """One scheduler RPC of project "p" with what the daemon finds due to say about the host."""
    link = daemon.links["p"]
    link.contact(now=10.0, work={"tasks": 1}, host_info=daemon.host_info_due(link))
    return coordinator.requests[-1]


def test_the_computer_is_described_once_per_start_and_again_when_it_changes(daemon, coordinator):
    first = rpc_with_host_info(daemon, coordinator)["host_info"]
    second = rpc_with_host_info(daemon, coordinator)

    assert set(first) == DESCRIPTION_KEYS | TIME_KEYS  # no benchmark yet: no flops
    assert first["platforms"] == hardware.platforms() and first["use_gpus"] is True
    assert "host_info" not in second  # the project has it

    PreferenceStore(daemon.data.prefs_file).set("use_gpus", "no")
    third = rpc_with_host_info(daemon, coordinator)["host_info"]
    assert (third["use_gpus"], third["gpus"]) == (False, [])

    PreferenceStore(daemon.data.prefs_file).set("native_apps", "no")
    fourth = rpc_with_host_info(daemon, coordinator)["host_info"]
    assert "native" not in fourth["runtimes"] and "python" in fourth["runtimes"]


def test_a_new_benchmark_is_sent_with_the_description(daemon, coordinator):
    rpc_with_host_info(daemon, coordinator)
    daemon.data.save_host_info({"flops": 2.5e8, "iops": 1e8, "measured_at": 1234.0})
    daemon.refresh_projects()

    sent = rpc_with_host_info(daemon, coordinator)["host_info"]

    assert sent["flops"] == 2.5e8 and set(sent) == DESCRIPTION_KEYS | TIME_KEYS | {"flops"}
    assert daemon.links["p"].runtime.host_info_sent == 1234.0
    assert "host_info" not in rpc_with_host_info(daemon, coordinator)


def test_a_restarted_client_describes_the_computer_again(daemon, coordinator):
    daemon.data.save_host_info({"flops": 2.5e8, "measured_at": 1234.0})
    daemon.refresh_projects()
    rpc_with_host_info(daemon, coordinator)
    restarted = Daemon(daemon.data, console=Console(file=io.StringIO()))
    restarted.refresh_projects()

    try:
        sent = rpc_with_host_info(restarted, coordinator)["host_info"]
    finally:
        restarted.shutdown()

    assert sent["flops"] == 2.5e8 and sent["cpu_model"] == hardware.cpu_info().model


def test_attach_registers_the_host_with_its_description(coordinator, tmp_path):
    data = DataDir(tmp_path / "data")
    PreferenceStore(data.prefs_file).set("use_gpus", "off")

    assert main(["--data-dir", str(data.root), "attach", coordinator.url, "--token", "tsr_x"]) == 0

    sent = coordinator.requests[-1]
    assert set(sent) == DESCRIPTION_KEYS | {"public_key", "name", "platform", "flops"}
    assert sent["platform"] == sent["platforms"][0] == hardware.platforms()[0]
    assert (sent["use_gpus"], sent["gpus"], sent["n_cpus"]) == (False, [], os.cpu_count())
    assert data.project(data.projects()[0].name).host_id == 7


def test_the_projects_reasons_for_no_work_are_logged_once_and_shown(daemon, coordinator, tmp_path):
    why = ["no version for your platform (x86_64-pc-linux-gnu)", "bad\x1b[31m text"]

    call(daemon, coordinator, messages=why)
    call(daemon, coordinator, messages=why)

    log = daemon.console.file.getvalue()
    assert log.count("no version for your platform") == 1
    assert daemon.links["p"].runtime.messages == [why[0], "bad [31m text"]  # no terminal escape
    call(daemon, coordinator, messages="not a list")
    assert daemon.links["p"].runtime.messages == []


def test_a_project_wanting_a_newer_client_is_shown_and_asked_again_only_after_its_wait(daemon, coordinator):
    upgrade = "this project needs tessera-client 9.0 or later (this one is 0.2.0); upgrade it: see /client"
    coordinator.refusal = (426, {"error": "client_too_old", "detail": upgrade}, {"Retry-After": "3600"})

    call(daemon, coordinator)

    link = daemon.links["p"]
    assert coordinator.user_agents[-1] == USER_AGENT
    assert "426 client_too_old" in link.runtime.last_error and upgrade in link.runtime.last_error
    assert not link.due(now=10.0 + 3599) and link.due(now=10.0 + 3601)
    out = Console(file=io.StringIO(), width=400)
    out.print(status_view.projects_table(daemon.data, daemon.data.projects()))
    assert "tessera-client 9.0 or later" in out.file.getvalue()


def test_status_names_each_tasks_version_and_what_it_runs_on():
    mt = {"app_version": {"app": "lj", "version": 2, "runtime": "native", "plan_class": "mt", "cores": 4}}
    gpu = {
        "app_version": {
            "app": "lj",
            "version": 3,
            "runtime": "native",
            "plan_class": "cuda",
            "cores": 0.5,
            "gpu": {"vendor": "nvidia", "model": "RTX 3090"},
        }
    }

    assert status_view.version_and_use(mt) == ("lj v2 native mt", "4 cores")
    assert status_view.version_and_use(gpu) == ("lj v3 native cuda", "GPU nvidia RTX 3090 + 0.5 cores")
    assert status_view.version_and_use({"app_version": {"app": "pi", "version": 1, "runtime": "python"}}) == (
        "pi v1 python",
        "1 core",
    )
