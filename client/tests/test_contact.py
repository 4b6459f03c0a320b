"""When the daemon calls a project: its pace, except to hand in results when nothing is left."""

from __future__ import annotations

from tessera_client.contact import ProjectLink
from tessera_client.journal import Journal
from tessera_client.protocol import HostKey
from tessera_client.state import DataDir, Project

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
        backoff_base=60.0, backoff_cap=3600.0,
    )  # fmt: skip
    link.backoff.succeeded(now=10.0, next_rpc_seconds=300)  # the project asked for 5 minutes' peace
    return link, journal


def test_a_finished_result_with_nothing_left_to_crunch_goes_at_once(tmp_path):
    link, _ = link_with_a_finished_task(tmp_path, b"small output")

    assert link.due(now=20.0)


def test_a_refused_upload_waits_for_its_retry_and_does_not_hammer_the_project(tmp_path):
    link, journal = link_with_a_finished_task(tmp_path, b"x" * 10_000)
    [record] = journal.records()
    journal.note_retry(record, next_attempt=5000.0)

    assert not link.due(now=20.0)
    assert link.due(now=311.0)  # the project's own pace still holds
    link.backoff.failed(now=400.0)
    assert not link.due(now=400.0)  # and a failure's back-off always does
