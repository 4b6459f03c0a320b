"""The task journal: atomic records, legal moves only, kept results, and survival of SIGKILL."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

import tessera_client
from tessera_client.journal import Journal
from tessera_client.task_record import (
    DONE,
    RECEIVED,
    REPORTED,
    RUNNING,
    STATES,
    UPLOADED,
    IllegalTransition,
    TaskRecord,
    parse_time,
)

DEADLINE = "2030-01-02T03:04:05Z"
SUCCESS = {"status": "success", "exit_code": 0, "cpu_time": 12.5, "message": ""}
FAILURE = {"status": "client_error", "exit_code": 3, "cpu_time": 1.0, "message": "exit code 3"}
LEGAL = {
    (RECEIVED, RUNNING),
    (RUNNING, RUNNING),
    (RECEIVED, DONE),
    (RUNNING, DONE),
    (DONE, UPLOADED),
    (DONE, REPORTED),
    (UPLOADED, REPORTED),
}
TARGETS = (RUNNING, DONE, UPLOADED, REPORTED)  # received is only ever the first state


def make_task(replica: int = 7, **extra) -> dict:
    task = {
        "replica": replica,
        "workunit": f"wu-{replica}",
        "deadline": DEADLINE,
        "fpops_estimate": 4e12,
        "app_version": {"app": "demo", "version": 1},
    }
    task.update(extra)
    return task


def bring_to(journal: Journal, state: str, replica: int = 7, project: str = "proj") -> TaskRecord:
    """A record in ``state``, reached through the legal moves."""
    record = journal.receive(project, make_task(replica), b"input bytes", now=100.0)
    if state == RECEIVED:
        return record
    journal.start_run(record, pid=4242, now=101.0)
    if state == RUNNING:
        return record
    journal.finish(record, outcome=FAILURE, output=None, now=102.0)
    if state == DONE:
        return record
    if state == UPLOADED:
        return journal.mark_uploaded(record, now=103.0)
    return journal.mark_reported(record, now=104.0)


def move(journal: Journal, record: TaskRecord, target: str, now: float = 200.0) -> TaskRecord:
    if target == RUNNING:
        return journal.start_run(record, pid=99, now=now)
    if target == DONE:
        return journal.finish(record, outcome=FAILURE, output=None, now=now)
    if target == UPLOADED:
        return journal.mark_uploaded(record, now=now)
    return journal.mark_reported(record, now=now)


def write_output(journal: Journal, record: TaskRecord, data: bytes) -> Path:
    slot = journal.slot(record)
    slot.mkdir(parents=True, exist_ok=True)
    (slot / "output").write_bytes(data)
    return slot / "output"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    return child.pid


# -- receiving --------------------------------------------------------------------------
def test_receive_keeps_the_input_and_the_task_as_sent(tmp_path):
    journal = Journal(tmp_path)
    task = make_task(7)
    record = journal.receive("proj", task, b"the input", now=50.0)
    assert (record.project, record.replica, record.state) == ("proj", 7, RECEIVED)
    assert record.task == task and record.task is not task
    assert record.history == [[RECEIVED, 50.0]]
    assert journal.input_path(record).read_bytes() == b"the input"
    assert journal.input_path(record) == tmp_path / "proj" / "7" / "input"
    assert json.loads((tmp_path / "proj" / "7" / "task.json").read_text())["state"] == RECEIVED
    assert record.deadline == parse_time(DEADLINE)
    assert record.estimated_seconds(2e9) == pytest.approx(2000.0)
    assert record.estimated_seconds(0) is None


def test_receiving_the_same_replica_again_changes_nothing(tmp_path):
    journal = Journal(tmp_path)
    first = journal.receive("proj", make_task(7), b"first", now=1.0)
    journal.start_run(first, pid=10, now=2.0)
    again = journal.receive("proj", make_task(7, workunit="other"), b"second", now=3.0)
    assert again == journal.get("proj", 7)
    assert again.state == RUNNING and again.task["workunit"] == "wu-7"
    assert journal.input_path(again).read_bytes() == b"first"


@pytest.mark.parametrize("replica", ["7", 0, -3, True, 7.0, None])
def test_a_replica_that_is_not_a_positive_int_is_refused(tmp_path, replica):
    journal = Journal(tmp_path)
    with pytest.raises(ValueError, match="replica"):
        journal.receive("proj", make_task(replica), b"", now=1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "project", ["..", ".", "../evil", "a/b", "a\\b", "", ".hidden", "a..b", "x" * 65, "/abs", "a b", 5]
)
def test_unsafe_project_names_are_refused(tmp_path, project):
    journal = Journal(tmp_path / "tasks")
    with pytest.raises(ValueError, match="project name"):
        journal.receive(project, make_task(7), b"", now=1.0)
    with pytest.raises(ValueError):
        journal.forget_project(project)
    assert list((tmp_path / "tasks").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks"]


@pytest.mark.parametrize("deadline", [None, "soon", "2030-13-01T00:00:00Z", 1234567890])
def test_a_task_without_a_readable_deadline_is_refused(tmp_path, deadline):
    journal = Journal(tmp_path)
    with pytest.raises(ValueError):
        journal.receive("proj", make_task(7, deadline=deadline), b"", now=1.0)
    assert journal.records() == []


def test_deadlines_parse_with_z_offsets_and_any_fraction():
    base = parse_time("2030-01-02T03:04:05Z")
    assert base == 1893553445.0
    assert parse_time("2030-01-02T05:04:05+02:00") == base
    assert parse_time("2030-01-02T03:04:05") == base  # no zone: UTC
    assert parse_time("2030-01-02T03:04:05.5Z") == pytest.approx(base + 0.5)
    assert parse_time("2030-01-02T03:04:05.123456789+00:00") == pytest.approx(base + 0.123456)


# -- moving between states --------------------------------------------------------------
@pytest.mark.parametrize("start,target", sorted(LEGAL))
def test_every_legal_move_is_recorded(tmp_path, start, target):
    journal = Journal(tmp_path)
    record = bring_to(journal, start)
    before = list(record.history)
    moved = move(journal, record, target, now=500.0)
    assert moved.state == target
    assert moved.history == [*before, [target, 500.0]]
    assert record == moved  # the caller's copy is kept current
    assert Journal(tmp_path).get("proj", 7) == moved


@pytest.mark.parametrize(
    "start,target", sorted((s, t) for s in STATES for t in TARGETS if (s, t) not in LEGAL)
)
def test_every_illegal_move_is_refused_and_changes_nothing(tmp_path, start, target):
    journal = Journal(tmp_path)
    record = bring_to(journal, start)
    before = journal.get("proj", 7)
    with pytest.raises(IllegalTransition, match=f"cannot go from '{start}' to '{target}'"):
        move(journal, record, target)
    assert journal.get("proj", 7) == before


def test_a_stale_copy_cannot_undo_a_later_move(tmp_path):
    journal = Journal(tmp_path)
    record = journal.receive("proj", make_task(7), b"x", now=1.0)
    stale = TaskRecord(**asdict(record))
    journal.start_run(record, pid=5, now=2.0)
    journal.finish(record, outcome=FAILURE, output=None, now=3.0)
    with pytest.raises(IllegalTransition):
        journal.start_run(stale, pid=6, now=4.0)
    assert journal.get("proj", 7).state == DONE


def test_moving_a_forgotten_task_is_refused(tmp_path):
    journal = Journal(tmp_path)
    record = journal.receive("proj", make_task(7), b"x", now=1.0)
    journal.forget("proj", 7)
    with pytest.raises(IllegalTransition, match="not in the journal"):
        journal.start_run(record, pid=5, now=2.0)


def test_restarts_count_runs_and_keep_cpu_time(tmp_path):
    journal = Journal(tmp_path)
    record = journal.receive("proj", make_task(7), b"x", now=1.0)
    journal.start_run(record, pid=11, now=2.0)
    journal.save_cpu_time(record, 30.0)
    journal.start_run(record, pid=12, now=3.0)  # after a crash
    reloaded = Journal(tmp_path).get("proj", 7)
    assert (reloaded.runs, reloaded.pid, reloaded.cpu_time) == (2, 12, 30.0)
    assert [h[0] for h in reloaded.history] == [RECEIVED, RUNNING, RUNNING]
    journal.finish(record, outcome=dict(FAILURE, cpu_time=45.0), output=None, now=4.0)
    assert (record.pid, record.cpu_time) == (None, 45.0)
    with pytest.raises(IllegalTransition):
        journal.save_cpu_time(record, 50.0)


def test_note_retry_counts_attempts_only_for_finished_tasks(tmp_path):
    journal = Journal(tmp_path)
    record = bring_to(journal, RECEIVED)
    with pytest.raises(IllegalTransition, match="nothing to retry"):
        journal.note_retry(record, next_attempt=10.0)
    bring_to(journal, DONE, replica=8)
    done = journal.get("proj", 8)
    journal.note_retry(done, next_attempt=10.0)
    journal.note_retry(done, next_attempt=20.0)
    reloaded = Journal(tmp_path).get("proj", 8)
    assert (reloaded.upload_attempts, reloaded.next_attempt, reloaded.state) == (2, 20.0, DONE)
    journal.mark_uploaded(done, now=30.0)
    assert (done.upload_attempts, done.next_attempt) == (0, 0.0)


# -- results ----------------------------------------------------------------------------
def test_finish_keeps_the_output_and_its_hash_before_the_record(tmp_path):
    journal = Journal(tmp_path)
    record = journal.receive("proj", make_task(7), b"in", now=1.0)
    journal.start_run(record, pid=1, now=2.0)
    result = os.urandom(5000)
    output = write_output(journal, record, result)
    journal.finish(record, outcome=SUCCESS, output=output, now=3.0)
    assert journal.output_path(record).read_bytes() == result
    assert record.outcome == dict(SUCCESS, output_sha256=hashlib.sha256(result).hexdigest(), output_size=5000)
    assert SUCCESS.get("output_sha256") is None  # the caller's dict is not changed
    journal.mark_reported(record, now=4.0)
    assert not journal.slot(record).exists() and not journal.input_path(record).exists()
    assert journal.output_path(record).read_bytes() == result  # kept until forget
    assert Journal(tmp_path).get("proj", 7).outcome["output_size"] == 5000


def test_a_failure_keeps_no_output(tmp_path):
    journal = Journal(tmp_path)
    record = bring_to(journal, RUNNING)
    write_output(journal, record, b"partial")
    journal.finish(record, outcome=FAILURE, output=None, now=3.0)
    assert record.outcome == FAILURE and not journal.output_path(record).exists()


def test_a_success_needs_an_output(tmp_path):
    journal = Journal(tmp_path)
    record = bring_to(journal, RUNNING)
    with pytest.raises(ValueError, match="output"):
        journal.finish(record, outcome=SUCCESS, output=None, now=3.0)
    assert journal.get("proj", 7).state == RUNNING


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_an_output_that_is_a_link_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"private key")
    journal = Journal(tmp_path / "tasks")
    record = bring_to(journal, RUNNING)
    journal.slot(record).mkdir(parents=True)
    (journal.slot(record) / "output").symlink_to(secret)
    journal.finish(record, outcome=SUCCESS, output=journal.slot(record) / "output", now=3.0)
    assert record.state == DONE and record.outcome["status"] == "client_error"
    assert "symbolic link" in record.outcome["message"]
    assert not journal.output_path(record).exists()


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_clearing_a_slot_never_follows_links_out_of_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    journal = Journal(tmp_path / "tasks")
    record = bring_to(journal, DONE)
    slot = journal.slot(record)
    (slot / "deep").mkdir(parents=True)
    (slot / "deep" / "file").write_text("x")
    (slot / "link").symlink_to(outside)
    os.chmod(slot / "deep", 0o500)  # an app may leave a folder it cannot write
    journal.mark_reported(record, now=5.0)
    assert not slot.exists()
    assert (outside / "keep.txt").read_text() == "keep me"


# -- reloading, damage and crashes ------------------------------------------------------
def test_records_reload_equal_in_a_new_journal(tmp_path):
    journal = Journal(tmp_path)
    for replica, state in zip((3, 10, 2, 25), (RECEIVED, RUNNING, DONE, REPORTED)):
        bring_to(journal, state, replica=replica)
    bring_to(journal, UPLOADED, replica=4, project="other")
    before = journal.records()
    after = Journal(tmp_path, owner=True).records()
    assert after == before
    assert [(r.project, r.replica) for r in after] == [
        ("other", 4),
        ("proj", 2),
        ("proj", 3),
        ("proj", 10),
        ("proj", 25),
    ]
    assert [r.replica for r in journal.records(project="proj", states=[RUNNING, DONE])] == [2, 10]
    assert journal.records(project="nobody") == []


def test_a_damaged_record_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    journal = Journal(tmp_path)
    bring_to(journal, RECEIVED, replica=1)
    bring_to(journal, RECEIVED, replica=2)
    bring_to(journal, RECEIVED, replica=3)
    damaged = tmp_path / "proj" / "2" / "task.json"
    damaged.write_text('{"project": "proj", "replica": 2, "sta')
    (tmp_path / "proj" / "3" / "task.json").write_text(json.dumps({"project": "proj", "replica": 99}))
    caplog.set_level(logging.WARNING, logger="tessera_client.journal")
    fresh = Journal(tmp_path, owner=True)
    assert [r.replica for r in fresh.records()] == [1]
    assert fresh.get("proj", 2) is None
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(damaged) in m for m in messages)
    assert any(str(tmp_path / "proj" / "3" / "task.json") in m for m in messages)
    count = len(caplog.records)
    fresh.records()
    assert len(caplog.records) == count  # each damaged record is reported once
    assert damaged.exists()  # kept for whoever wants to look


def test_a_leftover_temporary_file_is_ignored_and_cleared(tmp_path):
    journal = Journal(tmp_path)
    record = bring_to(journal, RUNNING)
    folder = tmp_path / "proj" / "7"
    good = (folder / "task.json").read_bytes()
    truncated = folder / f".task.json.{dead_pid()}.abcdef.tmp"
    truncated.write_bytes(good[: len(good) // 2])
    empty = folder / f".task.json.{dead_pid()}.123456.tmp"
    empty.write_bytes(b"")
    old = folder / f".output.{os.getpid()}.fedcba.tmp"  # ours, but too old to be live
    old.write_bytes(b"half an output")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert Journal(tmp_path).get("proj", 7) == record  # a reader ignores them
    assert truncated.exists()  # and only the owner clears them
    fresh = Journal(tmp_path, owner=True)
    assert fresh.get("proj", 7) == record
    assert (folder / "task.json").read_bytes() == good
    assert not truncated.exists() and not empty.exists() and not old.exists()
    assert not journal.output_path(record).exists()


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    journal = Journal(tmp_path)
    bring_to(journal, RECEIVED)
    live = tmp_path / "proj" / "7" / f".task.json.{os.getpid()}.abcdef.tmp"
    live.write_bytes(b"{")
    Journal(tmp_path, owner=True)
    assert live.exists()


def test_a_write_cut_short_keeps_the_old_record(tmp_path, monkeypatch):
    journal = Journal(tmp_path)
    record = bring_to(journal, RECEIVED)
    before = (tmp_path / "proj" / "7" / "task.json").read_bytes()

    def power_cut(*args):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        journal.start_run(record, pid=1, now=2.0)
    monkeypatch.undo()
    assert (tmp_path / "proj" / "7" / "task.json").read_bytes() == before
    assert Journal(tmp_path).get("proj", 7).state == RECEIVED
    assert [p.name for p in (tmp_path / "proj" / "7").iterdir() if p.name.endswith(".tmp")] == []


def test_a_receive_cut_short_before_its_record_is_cleared(tmp_path):
    journal = Journal(tmp_path)
    bring_to(journal, RECEIVED, replica=1)
    orphan = tmp_path / "proj" / "2"
    orphan.mkdir()
    (orphan / "input").write_bytes(b"input without a record")
    assert [r.replica for r in Journal(tmp_path).records()] == [1]
    assert orphan.exists()
    Journal(tmp_path, owner=True)
    assert not orphan.exists() and (tmp_path / "proj" / "1" / "task.json").exists()


# -- forgetting and disk use ------------------------------------------------------------
def test_forget_and_forget_project(tmp_path):
    journal = Journal(tmp_path)
    for replica in (1, 2, 3):
        bring_to(journal, RECEIVED, replica=replica)
    bring_to(journal, RECEIVED, replica=1, project="other")
    journal.forget("proj", 2)
    journal.forget("proj", 2)  # twice is harmless
    assert [r.replica for r in journal.records(project="proj")] == [1, 3]
    assert not (tmp_path / "proj" / "2").exists()
    assert journal.forget_project("proj") == 2
    assert not (tmp_path / "proj").exists()
    assert [(r.project, r.replica) for r in journal.records()] == [("other", 1)]
    assert journal.forget_project("proj") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


def test_a_forget_cut_short_is_finished_by_the_owner(tmp_path):
    journal = Journal(tmp_path)
    bring_to(journal, RECEIVED, replica=1)
    bring_to(journal, RECEIVED, replica=2)
    os.rename(tmp_path / "proj" / "2", tmp_path / "proj" / ".forget-2-abc")  # as _discard does first
    assert [r.replica for r in journal.records()] == [1]
    Journal(tmp_path, owner=True)
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["1"]


def test_disk_usage_counts_the_files_under_the_root(tmp_path):
    journal = Journal(tmp_path)
    assert journal.disk_usage() == 0
    record = journal.receive("proj", make_task(7), b"i" * 1000, now=1.0)
    with_record = journal.disk_usage()
    assert with_record == 1000 + (tmp_path / "proj" / "7" / "task.json").stat().st_size
    write_output(journal, record, b"o" * 5000)
    assert journal.disk_usage() == with_record + 5000
    journal.forget("proj", 7)
    assert journal.disk_usage() == 0


# -- a real crash -----------------------------------------------------------------------
WRITER = r"""
import os, sys, time
from pathlib import Path
from tessera_client.journal import Journal

root, base = Path(sys.argv[1]), int(sys.argv[2])
journal = Journal(root, owner=True)
outcome = {"status": "success", "exit_code": 0, "cpu_time": 1.0, "message": ""}
print("ready", flush=True)
i = 0
while True:
    replica = base + i
    task = {"replica": replica, "deadline": "2030-01-01T00:00:00Z", "padding": "x" * 3000}
    record = journal.receive("proj", task, bytes(3000), time.time())
    journal.start_run(record, os.getpid(), time.time())
    slot = journal.slot(record)
    slot.mkdir(parents=True, exist_ok=True)
    (slot / "checkpoint").write_bytes(b"c" * 100)
    (slot / "output").write_bytes(("result of %d\n" % replica).encode() * 500)
    journal.finish(record, outcome=outcome, output=slot / "output", now=time.time())
    journal.mark_uploaded(record, time.time())
    journal.mark_reported(record, time.time())
    if i % 3 == 2:
        journal.forget("proj", replica)
    i += 1
"""


def check_after_crash(root: Path) -> int:
    """Every record loads, went through the legal moves, and has what its state promises."""
    journal = Journal(root, owner=True)
    records = journal.records()
    order = [RECEIVED, RUNNING, DONE, UPLOADED, REPORTED]
    for record in records:
        assert record.state in STATES
        assert [h[0] for h in record.history] == order[: order.index(record.state) + 1]
        if record.state in (RECEIVED, RUNNING):
            assert journal.input_path(record).read_bytes() == bytes(3000)
        else:
            expected = (f"result of {record.replica}\n").encode() * 500
            assert journal.output_path(record).read_bytes() == expected
            assert record.outcome["output_sha256"] == hashlib.sha256(expected).hexdigest()
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".forget-")]
    assert leftovers == []
    return len(records)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_records_survive_sigkill_at_random_moments(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tessera_client.journal")
    env = dict(os.environ, PYTHONPATH=str(Path(tessera_client.__file__).parent.parent))
    rng = random.Random()
    seen = 0
    for run in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str((run + 1) * 100000)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert child.stdout.readline().strip() == b"ready"
            delay = rng.uniform(0.02, 0.4)
            time.sleep(delay)
            assert child.poll() is None, "the writer died by itself"
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)
            child.stdout.close()
        seen = check_after_crash(tmp_path)
    assert seen > 0
    assert [r.getMessage() for r in caplog.records] == []  # no record was ever damaged


def test_the_owner_serves_records_from_memory_and_readers_see_the_same(tmp_path):
    owner = Journal(tmp_path, owner=True)
    task = {"replica": 9, "deadline": "2030-01-01T00:00:00Z"}
    record = owner.receive("demo", task, b"in", now=1.0)
    owner.start_run(record, pid=123, now=2.0)

    reader = Journal(tmp_path)
    assert [(r.replica, r.state, r.runs) for r in reader.records()] == [(9, "running", 1)]
    assert owner.get("demo", 9).state == "running"
    (tmp_path / "demo" / "9" / "task.json").unlink()  # the owner does not go back to the disk
    assert [r.replica for r in owner.records(states=["running"])] == [9]
    assert reader.records() == []
    owner.forget("demo", 9)
    assert owner.records() == []
