"""One attached project as the daemon talks to it: uploads, the scheduler RPC, back-off.

Network manners, after BOINC's client: outputs too large to travel inline are uploaded
first, reports go in batches, a failed contact backs off exponentially with full jitter
(never before the coordinator's ``Retry-After``), and a refused report is retried alone so
one bad report cannot hold the others back. Each call names the unfinished tasks held, so the
project can call off those it no longer wants (BOINC's result abort).
"""

from __future__ import annotations

from typing import Any, Callable

import requests

from tessera_client import credit_history, notices
from tessera_client.backoff import Backoff
from tessera_client.host_tools import clean
from tessera_client.journal import Journal
from tessera_client.protocol import ProjectSession, ProtocolError, Report
from tessera_client.scheduling import WorkWanted
from tessera_client.state import DataDir, Project
from tessera_client.task_record import DONE, RECEIVED, REPORTED, RUNNING, UPLOADED, TaskRecord

INLINE_BYTES_MAX = 4096  # outputs up to this size travel inside the report (docs/protocol.md)
MAX_REPORTS_PER_RPC = 100
MAX_IN_PROGRESS = 1000  # unfinished tasks named per RPC (docs/protocol.md)
KEEP_REPORTED_SECONDS = 86_400.0  # finished tasks stay in `tessera status` this long
REFUSED_UPLOAD_RETRY_SECONDS = 3600.0


REPORT_REFUSALS = {
    "not_your_replica",
    "unknown_replica",
    "already_reported",
    "output_missing",
    "output_mismatch",
}


def report_at_fault(error: ProtocolError) -> bool:
    """Did the coordinator refuse the RPC because of a report (not our signature, clock or
    host info)? Only then may a report be set aside."""
    if error.code in REPORT_REFUSALS:
        return True
    return error.status == 400 and isinstance(error.detail, dict) and set(error.detail) == {"reports"}


class ProjectLink:
    """The daemon's side of one project: its session, back-off and what it learnt."""

    def __init__(
        self,
        project: Project,
        *,
        data: DataDir,
        journal: Journal,
        log: Callable[[str], None],
        refuse: Callable[[TaskRecord, str], None],
        abort: Callable[[TaskRecord], None],
        backoff_base: float,
        backoff_cap: float,
    ) -> None:
        self.project, self.name = project, project.name
        self.data, self.journal, self.log, self.refuse = data, journal, log, refuse
        self.abort = abort  # the daemon stops and forgets a task the project called off
        self.runtime = data.runtime(project.name)
        self.backoff = Backoff.from_json(self.runtime.backoff, base=backoff_base, cap=backoff_cap)
        self.session = ProjectSession(project.url, data.host_key(project.name), project.host_id)
        self.no_work = False  # the last request for work found none
        self.report_singly = False  # a batch was refused: find the bad report, one at a time
        self.described: dict[str, Any] = {}  # the host_info this project last took, in this process

    def close(self) -> None:
        self.session.close()

    def save(self) -> None:
        self.runtime.backoff = self.backoff.to_json()
        self.data.save_runtime(self.name, self.runtime)

    # -- when ---------------------------------------------------------------------------
    def due(self, now: float, cpus: int = 1) -> bool:
        """Time to call: the coordinator's pace allows it, or results wait while one of the
        ``cpus`` cores has nothing of this project's left to crunch (that pace only meters
        asking for work, and a project that sends a task per free core waits for this call to
        send the next; a failure's back-off always holds)."""
        if self.backoff.ready(now):
            return True
        return self.backoff.failures == 0 and self.results_wait_with_a_core_free(now, cpus)

    def results_wait_with_a_core_free(self, now: float, cpus: int = 1) -> bool:
        """Results that can go now wait, and this project holds fewer tasks to crunch than
        ``cpus``. An upload the coordinator refused waits for its own retry time, not for this."""
        waiting = [
            r
            for r in self.journal.records(project=self.name, states=[DONE, UPLOADED])
            if r.state == UPLOADED or not self.needs_upload(r) or r.next_attempt <= now
        ]
        return (
            bool(waiting) and len(self.journal.records(project=self.name, states=[RECEIVED, RUNNING])) < cpus
        )

    def contact(self, now: float, *, work: WorkWanted, host_info: dict[str, Any]) -> None:
        """Upload what must be uploaded, then report and ask for work in one RPC if there is
        anything to say."""
        if not self.upload_outputs(now):
            return
        reports = self.reports_due()
        if reports or work or host_info:
            self.scheduler_rpc(reports, work, host_info, now)
        if notices.due(self.runtime, now):
            self.fetch_notices(now)

    def fetch_notices(self, now: float) -> None:
        """Look at the project's news (hourly); a failure waits for the next look."""
        try:
            arrived = notices.refresh(self.session, self.runtime, now)
        except (ProtocolError, requests.RequestException, ValueError) as error:
            self.log(f"{self.name}: could not read the project's notices: {error}")
            arrived = 0
        if arrived:
            self.log(f"{self.name}: {arrived} new notice(s); `tessera status` shows them")
        self.save()

    @staticmethod
    def needs_upload(record: TaskRecord) -> bool:
        outcome = record.outcome or {}
        return outcome.get("status") == "success" and int(outcome.get("output_size", 0)) > INLINE_BYTES_MAX

    def upload_outputs(self, now: float) -> bool:
        """Upload large outputs; False when the coordinator cannot be reached (stop for now)."""
        for record in self.journal.records(project=self.name, states=[DONE]):
            if not self.needs_upload(record) or record.next_attempt > now:
                continue
            try:
                self.session.upload_output(
                    record.task["upload_url"], self.journal.output_path(record).read_bytes()
                )
            except ProtocolError as error:
                if error.code == "already_reported":
                    self.journal.mark_uploaded(record, now)  # a repeat after a crash
                elif error.is_temporary or error.status == 401:
                    self.failed(now, error)
                    return False
                else:
                    self.log(f"{self.name}: upload of replica {record.replica} refused: {error}")
                    self.journal.note_retry(record, next_attempt=now + REFUSED_UPLOAD_RETRY_SECONDS)
                continue
            except requests.RequestException as error:
                self.failed(now, error)
                return False
            self.journal.mark_uploaded(record, now)
        return True

    def reports_due(self) -> list[TaskRecord]:
        ready = [
            r
            for r in self.journal.records(project=self.name, states=[DONE, UPLOADED])
            if r.state == UPLOADED or not self.needs_upload(r)
        ]
        return ready[: 1 if self.report_singly else MAX_REPORTS_PER_RPC]

    def report_for(self, record: TaskRecord) -> Report:
        outcome = record.outcome or {}
        success = outcome.get("status") == "success"
        output = self.journal.output_path(record).read_bytes() if success else None
        fuel = outcome.get("fuel")
        return Report(
            replica=record.replica,
            status="success" if success else "client_error",
            cpu_time=float(outcome.get("cpu_time", 0.0)),
            output=output,
            inline=output is not None and len(output) <= INLINE_BYTES_MAX,
            exit_code=int(outcome.get("exit_code", 0)),
            # The coordinator keeps 1,000 characters of text; NUL is no text (an app's stderr may hold it).
            message=str(outcome.get("message", "")).replace("\x00", "")[-1000:],
            fuel=fuel if success and isinstance(fuel, int) and not isinstance(fuel, bool) else None,
            elapsed=record.elapsed,
        )

    def in_progress(self) -> list[int]:
        """The unfinished tasks held, lowest replica first, as many as one RPC may name."""
        held = self.journal.records(project=self.name, states=[RECEIVED, RUNNING])
        return sorted(r.replica for r in held)[:MAX_IN_PROGRESS]

    def scheduler_rpc(
        self, records: list[TaskRecord], work: WorkWanted, host_info: dict[str, Any], now: float
    ) -> None:
        sent = self.in_progress()
        try:
            reply = self.session.scheduler_rpc(
                reports=[self.report_for(r) for r in records],
                host_info=host_info,
                in_progress=sent,
                **work,
            )
        except ProtocolError as error:
            self.refused(records, error, now)
            return
        except (requests.RequestException, ValueError) as error:
            self.failed(now, error)
            return
        for record in records:
            self.journal.mark_reported(record, now)
        if records:
            self.log(f"{self.name}: reported {len(records)} result(s)")
        self.report_singly = self.report_singly and bool(records)
        if host_info:
            self.runtime.host_info_sent = float(self.data.host_info().get("measured_at", now))
            self.described = host_info
        self.receive_tasks(reply.get("tasks") or [], now)
        self.call_off(reply.get("abort"), set(sent))
        self.no_work = bool(work) and not reply.get("tasks")
        self.hear(reply.get("messages"), now)
        self.runtime.credit = reply.get("credit") or self.runtime.credit
        credit_history.note(self.runtime, now)
        self.runtime.last_rpc, self.runtime.last_error = now, ""
        self.backoff.succeeded(now, float(reply.get("next_rpc_seconds", 0)))
        self.prune_reported(now)
        self.save()

    def hear(self, messages: Any, now: float) -> None:
        """The project's reasons for sending no work (a list of texts): logged when they change,
        kept for ``tessera status``; anything else is ignored."""
        texts = messages if isinstance(messages, list) else []
        said = [clean(text, 200) for text in texts if isinstance(text, str)][:5]
        if said and said != self.runtime.messages:
            self.log(f"{self.name}: " + "; ".join(said))
        self.runtime.messages = said

    def refused(self, records: list[TaskRecord], error: ProtocolError, now: float) -> None:
        """The whole RPC was refused: wait if the coordinator is unwell or does not know us; if a
        report is at fault, narrow it down, and drop the one report it will never take."""
        if error.is_temporary or not records or not report_at_fault(error):
            self.failed(now, error)
        elif len(records) > 1:
            self.log(f"{self.name}: a report was refused ({error}); sending them one at a time")
            self.report_singly = True
        else:
            self.log(f"{self.name}: the report of replica {records[0].replica} was refused: {error}")
            self.journal.mark_reported(records[0], now)  # it will never be taken; keep its history

    def receive_tasks(self, tasks: list[dict[str, Any]], now: float) -> None:
        for task in tasks:
            try:
                self.journal.receive(self.name, task, self.session.fetch_input(task), now)
            except (ProtocolError, requests.RequestException) as error:
                self.keep_refused(task, f"cannot fetch the input: {error}", now)
            except (ValueError, TypeError, KeyError) as error:
                self.log(f"{self.name}: ignoring a malformed task from the coordinator: {error}")
        if tasks:
            self.log(f"{self.name}: received {len(tasks)} task(s)")

    def call_off(self, abort: Any, sent: set[int]) -> None:
        """Hand the daemon each task the project no longer wants. Only ids this call named and
        still unfinished count: a finished result is reported as usual, and a reply cannot
        reach any other task."""
        if abort is None:
            return  # an older coordinator
        if not isinstance(abort, list):
            self.log(f"{self.name}: ignoring a malformed list of tasks to abort: {abort!r:.200}")
            return
        for replica in abort:
            if isinstance(replica, bool) or not isinstance(replica, int) or replica not in sent:
                continue
            record = self.journal.get(self.name, replica)
            if record is not None and record.state in (RECEIVED, RUNNING):
                self.abort(record)

    def keep_refused(self, task: dict[str, Any], message: str, now: float) -> None:
        """Journal a task that cannot run, as a client error, so the project hears why."""
        try:
            record = self.journal.receive(self.name, task, b"", now)
        except (ValueError, TypeError, KeyError) as error:
            self.log(f"{self.name}: ignoring a malformed task from the coordinator: {error}")
            return
        self.refuse(record, message)

    def failed(self, now: float, error: Exception) -> None:
        delay = self.backoff.failed(now, getattr(error, "retry_after", None))
        self.runtime.last_error = f"{error}"[:300]
        self.log(f"{self.name}: {error}; trying again in {delay:.0f} s (crunching goes on)")
        self.save()

    def prune_reported(self, now: float) -> None:
        for record in self.journal.records(project=self.name, states=[REPORTED]):
            if record.history and record.history[-1][1] < now - KEEP_REPORTED_SECONDS:
                self.journal.forget(self.name, record.replica)

    def download(self, url: str, size: int, progress: Callable[[int], None]) -> bytes:
        return self.session.download(url, max_bytes=size, progress=progress)
