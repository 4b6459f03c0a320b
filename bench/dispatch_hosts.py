"""The dispatch benchmark's load generator: simulated hosts, threads in child processes.

Each host loops until the run's end: report what it holds as successes and fetch the next
batch, either over HTTP with the client library's signed scheduler RPC (``http``) or as
the same report and claim in one plain psycopg transaction (``raw``, the ceiling). What
each saw comes back to the parent as a :class:`HostRecord`; the parent keeps the clock.
"""

from __future__ import annotations

import ast
import hashlib
import os
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.database import REPO
from bench.dispatch_seed import DELAY_BOUND, BenchHost

OUTPUT_BYTES = 64  # each report's inline output; it travels base64 in the request
RPC_TIMEOUT = 15.0
ERROR_STREAK_LIMIT = 3  # after this many failed RPCs in a row a host forgets what it held


@dataclass
class HostRecord:
    """What one simulated host saw: every RPC's start and latency, and what it carried."""

    started: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))
    dispatched: array = field(default_factory=lambda: array("i"))
    reported: array = field(default_factory=lambda: array("i"))
    replica_ids: array = field(default_factory=lambda: array("q"))
    errors: list[tuple[float, str]] = field(default_factory=list)

    def rpc(self, began: float, finished: float, got: list[int], reported: int) -> None:
        """One RPC that succeeded: when, how long, what it fetched and how many reports it acked."""
        self.started.append(began)
        self.latency.append(finished - began)
        self.dispatched.append(len(got))
        self.reported.append(reported)
        self.replica_ids.extend(got)

    def merge(self, other: HostRecord) -> None:
        for name in ("started", "latency", "dispatched", "reported", "replica_ids"):
            getattr(self, name).extend(getattr(other, name))
        self.errors.extend(other.errors)

    def window_figures(self, measure_from: float, end: float) -> dict[str, Any]:
        """Figures of a subclass's own for the measured window, added to the run's JSON (none here)."""
        return {}


def output_for(replica_id: int) -> bytes:
    """The small inline output a simulated host reports for a replica."""
    return f"ok {replica_id} ".encode().ljust(OUTPUT_BYTES, b".")


def _count(counter: Any, amount: int) -> None:
    if amount:
        with counter.get_lock():
            counter.value += amount


def _http_host(
    base_url: str, host: BenchHost, batch: int, times: tuple[float, float], counter: Any
) -> HostRecord:
    """One host's loop: report what it holds as successes and fetch the next batch, until the end."""
    from nacl.signing import SigningKey
    from tessera_client.protocol import HostKey, ProjectSession, ProtocolError, Report

    start, end = times
    record = HostRecord()
    session = ProjectSession(
        base_url, HostKey(SigningKey(host.seed)), host_id=host.host_id, timeout=RPC_TIMEOUT
    )
    # Each host on a network of its own, as the proxy in front of the coordinator says: the
    # claim then checks the unit's other holders for related hosts, as in production.
    session.http.headers["X-Forwarded-For"] = f"198.18.{host.host_id % 250}.{1 + host.host_id // 250}"
    held: list[int] = []
    streak = 0
    time.sleep(max(0.0, start - time.monotonic()))
    while time.monotonic() < end:
        reports = [Report(replica=r, status="success", cpu_time=1.0, output=output_for(r)) for r in held]
        began = time.monotonic()
        try:
            reply = session.scheduler_rpc(reports=reports, tasks=batch)
        except ProtocolError as error:
            record.errors.append((time.monotonic(), f"{error.status} {error.code}"))
        except Exception as error:  # connection refused or reset, timeout: counted, never fatal
            record.errors.append((time.monotonic(), type(error).__name__))
        else:
            finished = time.monotonic()
            got = [task["replica"] for task in reply["tasks"]]
            record.rpc(began, finished, got, len(reply["acks"]))
            _count(counter, len(got))
            held, streak = got, 0
            continue
        streak += 1
        if streak >= ERROR_STREAK_LIMIT:
            held, streak = [], 0  # stop re-reporting what keeps failing
        time.sleep(0.05)
    session.http.close()
    return record


RAW_REPORT = """
UPDATE work_replica AS r
SET state = 'over', outcome = 'success', received_at = now(), cpu_time = 1.0, exit_code = 0,
    message = '', output_sha256 = v.sha256, output_size = octet_length(v.data), output_inline = v.data
FROM unnest(%s::bigint[], %s::text[], %s::bytea[]) AS v(id, sha256, data)
WHERE r.id = v.id AND r.host_id = %s AND r.state = 'in_progress'
"""
# The filters of claim_work, as plain SQL: the volunteer holds no replica of the unit, and no
# trusted host has the unit out alone (adaptive replication); read from one share's queue in
# its index's order, as dispatch reads it (the benchmark's units are the project's own).
# OFFSET 0 keeps each NOT EXISTS a per-row index probe: without it PostgreSQL may plan an
# anti-join that reads every replica the volunteer ever held, or the whole table (see
# docs/benchmarks.md).
RAW_CLAIM = """
SELECT r.id, r.workunit_id FROM work_replica AS r
WHERE r.state = 'unsent' AND NOT r.reserved AND r.share_id IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM work_replica AS mine
      WHERE mine.workunit_id = r.workunit_id AND mine.volunteer_id = %s OFFSET 0)
  AND NOT EXISTS (
      SELECT 1 FROM work_replica AS alone
      WHERE alone.workunit_id = r.workunit_id AND alone.trusted_single
        AND (alone.state = 'in_progress' OR (alone.outcome = 'success' AND alone.validate_state <> 'invalid'))
      OFFSET 0)
ORDER BY r.share_id, r.priority DESC, r.dispatch_key
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
RAW_ASSIGN = f"""
UPDATE work_replica
SET state = 'in_progress', host_id = %s, volunteer_id = %s, app_version_id = %s,
    sent_at = now(), deadline = now() + interval '{DELAY_BOUND} seconds'
WHERE id = ANY(%s) AND state = 'unsent'
"""


def candidates_per_task() -> int:
    """How many candidates claim_work locks per task wanted, read from its source.

    The raw claim must lock as many rows as the coordinator's, and the coordinator's module
    cannot be imported without Django; the constant is found by parsing instead (2 if absent).
    """
    source = REPO / "coordinator" / "scheduler" / "dispatch.py"
    try:
        tree = ast.parse(source.read_text())
    except (OSError, SyntaxError):
        return 2
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            names = [target.id for target in node.targets if isinstance(target, ast.Name)]
            if "CANDIDATES_PER_TASK" in names and isinstance(node.value.value, int):
                return node.value.value
    return 2


def _raw_host(
    url: str,
    host: BenchHost,
    batch: int,
    version_id: int,
    candidates: int,
    times: tuple[float, float],
    counter: Any,
) -> HostRecord:
    """The same work as one host's RPC in one plain transaction: report, claim, assign."""
    start, end = times
    record = HostRecord()
    held: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:
        time.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < end:
            outputs = [output_for(r) for r in held]
            shas = [hashlib.sha256(data).hexdigest() for data in outputs]
            began = time.monotonic()
            try:
                reported, chosen = _raw_rpc(
                    conn, host, held, shas, outputs, batch=batch, version_id=version_id, candidates=candidates
                )
            except Exception as error:  # deadlock, serialization failure…: counted, never fatal
                record.errors.append((time.monotonic(), type(error).__name__))
                time.sleep(0.05)
                continue
            finished = time.monotonic()
            record.rpc(began, finished, chosen, reported)
            _count(counter, len(chosen))
            held = chosen
    return record


def _raw_rpc(
    conn: psycopg.Connection,
    host: BenchHost,
    held: list[int],
    shas: list[str],
    outputs: list[bytes],
    *,
    batch: int,
    version_id: int,
    candidates: int,
) -> tuple[int, list[int]]:
    """One "RPC" in one transaction; returns (replicas reported, replicas assigned).

    The claim is claim_work's: ``candidates`` x batch rows locked with SKIP LOCKED in
    dispatch-index order, one replica per unit kept (the unique (unit, volunteer) rule), the
    rest released at commit.
    """
    with conn.transaction(), conn.cursor() as cur:
        reported = 0
        if held:
            cur.execute(RAW_REPORT, (held, shas, outputs, host.host_id))
            reported = cur.rowcount
        cur.execute(RAW_CLAIM, (host.volunteer_id, candidates * batch))
        chosen, units = [], set()
        for replica_id, unit_id in cur.fetchall():
            if unit_id not in units:
                units.add(unit_id)
                chosen.append(replica_id)
                if len(chosen) == batch:
                    break
        if chosen:
            cur.execute(RAW_ASSIGN, (host.host_id, host.volunteer_id, version_id, chosen))
            if cur.rowcount != len(chosen):
                raise RuntimeError("a claimed replica was not unsent")
    return reported, chosen


def load_process(
    mode: str,
    target: str,
    hosts: list[BenchHost],
    batch: int,
    version_id: int,
    candidates: int,
    ready: Any,
    go: Any,
    times: Any,
    counter: Any,
    results: Any,
) -> None:
    """A child process of simulated hosts, one thread each; sends back one merged record."""
    if mode == "http":
        import tessera_client.protocol  # noqa: F401  (import before the clock starts)
    ready.put(os.getpid())
    if not go.wait(120):
        results.put(None)
        return
    window = (times[0], times[1])
    records: list[HostRecord] = [HostRecord() for _ in hosts]

    def run(index: int, host: BenchHost) -> None:
        try:
            if mode == "http":
                records[index] = _http_host(target, host, batch, window, counter)
            else:
                records[index] = _raw_host(target, host, batch, version_id, candidates, window, counter)
        except Exception as error:
            records[index].errors.append((time.monotonic(), f"host crashed: {error!r}"))

    threads = [threading.Thread(target=run, args=(i, h), daemon=True) for i, h in enumerate(hosts)]
    for thread in threads:
        thread.start()
    deadline = window[1] + RPC_TIMEOUT + 10
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    merged = HostRecord()
    for record in records:
        merged.merge(record)
    results.put(merged)
