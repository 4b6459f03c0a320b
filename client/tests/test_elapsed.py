"""A task's elapsed time: what its app ran, suspensions left out, kept across restarts and sent
with its report; a record from an older client has none and sends none."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tessera_client.elapsed import SAVE_SECONDS, ElapsedTime
from tessera_client.journal import Journal
from tessera_client.task_record import TaskRecord

TASK = {"replica": 5, "deadline": "2030-01-01T00:00:00Z", "workunit": "wu"}
KEY = ("p", 5)
SUCCESS = {"status": "success", "exit_code": 0, "cpu_time": 3.0, "message": ""}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProcess:
    suspended: bool = False


@dataclass
class FakeApp:
    process: FakeProcess = field(default_factory=FakeProcess)


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(tmp_path / "tasks", owner=True)


def running_task(journal: Journal) -> TaskRecord:
    record = journal.receive("p", TASK, b"in", now=0.0)
    return journal.start_run(record, pid=42, now=1.0)


def test_only_the_time_the_app_was_not_suspended_counts(journal):
    running_task(journal)
    clock, app = Clock(), FakeApp()
    elapsed = ElapsedTime(journal, clock)
    elapsed.started(KEY)

    clock.now += 10
    elapsed.count({KEY: app})
    app.process.suspended = True  # the throttle, or the volunteer at the keyboard
    clock.now += 100
    elapsed.count({KEY: app})
    app.process.suspended = False
    clock.now += 5
    elapsed.count({KEY: app})
    elapsed.save({})  # the app ended

    assert journal.get(*KEY).elapsed == pytest.approx(15.0)


def test_a_running_task_s_time_is_saved_now_and_then_and_survives_a_restart(journal, tmp_path):
    running_task(journal)
    clock, app = Clock(), FakeApp()
    elapsed = ElapsedTime(journal, clock)
    elapsed.started(KEY)
    clock.now += SAVE_SECONDS / 2
    elapsed.count({KEY: app})
    elapsed.save({KEY: app})
    assert journal.get(*KEY).elapsed == 0.0  # not yet: the journal is not written every second

    clock.now += SAVE_SECONDS / 2
    elapsed.count({KEY: app})
    elapsed.save({KEY: app})
    assert journal.get(*KEY).elapsed == pytest.approx(SAVE_SECONDS)

    # The client stops and starts again: the app resumes, and its time adds to the saved time.
    reopened = Journal(tmp_path / "tasks", owner=True)
    again = ElapsedTime(reopened, clock)
    again.started(KEY)
    clock.now += 7
    again.count({KEY: app})
    again.save({}, everything=True)
    assert reopened.get(*KEY).elapsed == pytest.approx(SAVE_SECONDS + 7)


def test_the_end_of_a_task_is_saved_with_its_result(journal):
    record = running_task(journal)
    clock, app = Clock(), FakeApp()
    elapsed = ElapsedTime(journal, clock)
    elapsed.started(KEY)
    clock.now += 12.5
    elapsed.count({KEY: app})
    journal.finish(record, outcome=dict(SUCCESS, status="client_error"), output=None, now=2.0)

    elapsed.save({})

    assert journal.get(*KEY).elapsed == pytest.approx(12.5)
    assert elapsed.unsaved == {} and elapsed.counted_at == {}  # nothing kept for a finished task


def test_a_task_called_off_while_it_ran_is_simply_forgotten(journal):
    running_task(journal)
    clock = Clock()
    elapsed = ElapsedTime(journal, clock)
    elapsed.started(KEY)
    clock.now += 3
    elapsed.count({KEY: FakeApp()})
    journal.forget(*KEY)

    elapsed.save({})

    assert elapsed.unsaved == {}


def test_a_record_of_an_older_client_has_no_elapsed_time_once_its_app_ran(journal, tmp_path):
    record = running_task(journal)
    written = record.to_json()
    del written["elapsed"]
    never_ran = dict(written, runs=0, state="received")

    assert TaskRecord.from_json(written).elapsed is None
    assert TaskRecord.from_json(never_ran).elapsed == 0.0

    # Such a record in the journal stays unknown however long its app runs on.
    path = journal.task_dir(*KEY) / "task.json"
    path.write_text(json.dumps(written))
    reopened = Journal(tmp_path / "tasks", owner=True)
    reopened.add_elapsed(reopened.get(*KEY), 30.0)
    assert reopened.get(*KEY).elapsed is None


@pytest.mark.parametrize("value", ["12", True, -1.0, float("nan"), float("inf"), [1]])
def test_a_damaged_elapsed_time_reads_as_unknown_not_as_a_damaged_record(journal, value):
    written = dict(running_task(journal).to_json(), elapsed=value)

    assert TaskRecord.from_json(written).elapsed is None
