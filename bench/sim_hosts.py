"""Simulated volunteer hosts for the scenario benchmark: honest ones and every kind of trouble.

Each host is a thread that speaks the real signed protocol (the client's signing code, its
own Ed25519 key, fresh nonces) to a real coordinator. It holds a small buffer of tasks,
"crunches" one at a time by sleeping for the task's length and computing the app's real
output, and reports in its next scheduler call. The kinds:

- ``honest``: right answers, steady speed.
- ``slow``: right answers, ``slow_factor`` times slower.
- ``vanishing``: honest until a random moment, then silent with its tasks in hand; half of
  them come back after their deadlines with the results they had finished (late reports).
- ``random``: a different wrong answer every time.
- ``colluding``: the same wrong answer for the same input, shared by every colluder.
- ``replaying``: honest, but also sends each signed request again byte for byte, replays a
  stale one, and reports replicas of other hosts.
- ``crashing``: honest, but often dies between sending a call and reading its reply: the new
  tasks of that reply are lost and the finished results are reported again after a restart.

What each host saw comes back as a :class:`HostLog`, so the runner can check the coordinator's
books against the hosts' own.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import requests
from tessera_client.protocol import HostKey, ProjectSession, ProtocolError, Report
from tessera_client.signing import sign_request

from workunits import montecarlo_pi
from workunits.interface import Checkpoint

KINDS = ("honest", "slow", "vanishing", "random", "colluding", "replaying", "crashing")
CHEATING_KINDS = frozenset({"random", "colluding"})
SCHEDULER_PATH = "/api/v1/scheduler"
CALL_TIMEOUT = 30.0
FLUSH_SECONDS = 60.0  # after the run, how long a host keeps trying to deliver what it finished


@dataclass(frozen=True)
class Plan:
    """What every host shares: the pace of the work and how often trouble happens."""

    task_seconds: float
    slow_factor: float
    delay_bound: float
    vanish_within: float  # a vanishing host goes silent within this many seconds of its first task
    buffer: int = 2
    crash_chance: float = 0.3
    replay_chance: float = 0.3
    foreign_chance: float = 0.1
    seed: int = 1


@dataclass
class HostLog:
    """One host's own account of the run."""

    index: int
    kind: str
    host_id: int = 0
    first_report: float | None = None  # wall-clock time of its first finished result
    accepted: dict[int, str] = field(default_factory=dict)  # replica -> output SHA-256, acked "accepted"
    duplicates: int = 0
    cancelled: int = 0
    unreported: int = 0  # results it finished that were never acknowledged
    abandoned: int = 0  # results a vanished host took with it (not the coordinator's to keep)
    refused_reports: int = 0  # results the coordinator refused outright (a 4xx on the call)
    replays: int = 0
    replays_accepted: int = 0
    foreign_reports: int = 0
    foreign_accepted: int = 0
    crashes: int = 0
    vanished: bool = False
    returned: bool = False
    failed_calls: dict[str, int] = field(default_factory=dict)  # HTTP status (or "network") -> count

    def failed(self, status: str) -> None:
        self.failed_calls[status] = self.failed_calls.get(status, 0) + 1


def right_answer(data: bytes) -> bytes:
    return montecarlo_pi.compute(data, Checkpoint())


def answer(kind: str, data: bytes, rng: random.Random) -> bytes:
    """The output a host of this kind returns for an input."""
    if kind == "random":
        return json.dumps({"inside": rng.randrange(10**9), "samples": 1}).encode()
    if kind == "colluding":  # a plausible lie every colluder agrees on, from the input alone
        samples = int(json.loads(data)["samples"])
        inside = int.from_bytes(hashlib.sha256(b"agreed lie" + data).digest()[:4], "big") % (samples + 1)
        return json.dumps({"inside": inside, "samples": samples}, sort_keys=True).encode()
    return right_answer(data)


class Refused(Exception):
    """The coordinator refused a call for good (4xx other than 401/429)."""


class SimHost:
    def __init__(
        self, url: str, token: str, index: int, kind: str, plan: Plan, stop: threading.Event
    ) -> None:
        self.url, self.token, self.kind, self.plan, self.stop = url, token, kind, plan, stop
        self.rng = random.Random(plan.seed * 1_000_003 + index)
        self.key = HostKey.generate()
        self.session = ProjectSession(url, self.key)
        self.http = self.session.http
        self.log = HostLog(index=index, kind=kind)
        self.tasks: list[dict[str, Any]] = []
        self.pending: dict[int, Report] = {}  # finished, not yet acknowledged
        self.sent: list[tuple[bytes, dict[str, str]]] = []  # signed requests, kept to replay
        self.vanish_at: float | None = None
        self.failures = 0

    # -- plumbing ---------------------------------------------------------------------
    def post(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        return self.http.post(
            self.url + SCHEDULER_PATH,
            data=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=CALL_TIMEOUT,
        )

    def signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = sign_request(
            self.key.signing_key, method="POST", path=SCHEDULER_PATH, body=body, host_id=self.log.host_id
        )
        return body, headers

    def back_off(self, status: str, retry_after: float = 0.0) -> None:
        self.log.failed(status)
        self.failures += 1
        delay = max(retry_after, self.rng.uniform(0, min(10.0, 0.5 * 2**self.failures)))
        self.stop.wait(delay) if not self.stop.is_set() else time.sleep(min(delay, 2.0))

    def call(self, *, want: int, read_reply: bool = True) -> dict[str, Any] | None:
        """One scheduler call carrying every unacknowledged result; None when it failed."""
        payload: dict[str, Any] = {"reports": [r.to_json() for r in self.pending.values()]}
        if want:
            payload["work_request"] = {"tasks": want}
        if self.tasks:
            payload["in_progress"] = [task["replica"] for task in self.tasks]
        body, headers = self.signed(payload)
        try:
            response = self.post(body, headers)
        except requests.RequestException:
            self.back_off("network")
            return None
        if not read_reply:
            return None
        if response.status_code in (401, 429) or response.status_code >= 500:
            self.back_off(str(response.status_code), float(response.headers.get("Retry-After") or 0))
            return None
        if response.status_code >= 400:
            self.log.failed(str(response.status_code))
            self.log.refused_reports += len(self.pending)
            self.pending.clear()  # a real client sets refused reports aside; they count as refused
            return None
        self.failures = 0
        self.sent.append((body, headers))
        return response.json()

    def take(self, reply: dict[str, Any]) -> None:
        for ack in reply["acks"]:
            report = self.pending.pop(ack["replica"], None)
            if report is None:
                continue
            if ack["status"] == "accepted":
                self.log.accepted[report.replica] = hashlib.sha256(report.output or b"").hexdigest()
            elif ack["status"] == "duplicate":
                self.log.duplicates += 1
                self.log.accepted.setdefault(report.replica, hashlib.sha256(report.output or b"").hexdigest())
            else:
                self.log.cancelled += 1
        aborted = set(reply.get("abort", []))
        self.tasks = [task for task in self.tasks if task["replica"] not in aborted]
        self.tasks.extend(reply["tasks"])

    # -- misbehaviour -----------------------------------------------------------------
    def replay(self) -> None:
        """Send a request already sent (the last, or the oldest, maybe stale): never accepted."""
        body, headers = self.sent[-1] if self.rng.random() < 0.5 else self.sent[0]
        self.log.replays += 1
        try:
            if self.post(body, headers).status_code < 300:
                self.log.replays_accepted += 1
        except requests.RequestException:
            pass

    def report_foreign(self) -> None:
        """Report, correctly signed, a replica this host was never sent."""
        mine = set(self.log.accepted) | set(self.pending) | {task["replica"] for task in self.tasks}
        if not mine:
            return
        target = max(mine) + self.rng.randint(1, 5)
        if target in mine:
            return
        output = b"not mine"
        body, headers = self.signed({"reports": [Report(target, "success", 1.0, output).to_json()]})
        self.log.foreign_reports += 1
        try:
            response = self.post(body, headers)
        except requests.RequestException:
            return
        if response.status_code < 300 and any(
            ack["replica"] == target and ack["status"] == "accepted" for ack in response.json()["acks"]
        ):
            self.log.foreign_accepted += 1

    # -- life -------------------------------------------------------------------------
    def register(self) -> bool:
        while not self.stop.is_set():
            try:
                self.log.host_id = self.session.register(
                    account_token=self.token,
                    name=f"{self.kind}-{self.log.index}",
                    platform="linux-x86_64",
                    n_cpus=1,
                    memory_bytes=8 << 30,
                )
                return True
            except (ProtocolError, OSError, requests.RequestException):
                self.back_off("register")
        return False

    def crunch(self, task: dict[str, Any]) -> None:
        factor = self.plan.slow_factor if self.kind == "slow" else 1.0
        self.stop.wait(self.plan.task_seconds * factor)
        data = self.session.fetch_input(task)  # inline here: no transfer
        output = answer(self.kind, data, self.rng)
        self.pending[task["replica"]] = Report(task["replica"], "success", self.plan.task_seconds, output)
        if self.log.first_report is None:
            self.log.first_report = time.time()

    def vanish(self) -> bool:
        """Go silent with the tasks in hand; half come back after the deadlines. False: gone."""
        self.log.vanished = True
        if self.rng.random() < 0.5:
            return False
        if self.stop.wait(self.plan.delay_bound * 1.5):
            return False
        self.log.returned = True
        while self.tasks:  # it finishes what it held, late
            self.crunch(self.tasks.pop(0))
        return True

    def run(self) -> HostLog:
        if not self.register():
            return self.log
        while not self.stop.is_set():
            due = self.vanish_at is not None and time.monotonic() >= self.vanish_at
            if due and not self.log.vanished and not self.vanish():
                self.log.abandoned = len(self.pending)
                return self.log
            crash = (
                self.kind == "crashing" and bool(self.pending) and self.rng.random() < self.plan.crash_chance
            )
            reply = self.call(want=max(0, self.plan.buffer - len(self.tasks)), read_reply=not crash)
            if crash:
                self.log.crashes += 1
                self.stop.wait(self.rng.uniform(1.0, 3.0))  # the restart
                continue
            if reply is not None:
                self.take(reply)
                if self.kind == "replaying" and self.rng.random() < self.plan.replay_chance:
                    self.replay()
                if self.kind == "replaying" and self.rng.random() < self.plan.foreign_chance:
                    self.report_foreign()
            if self.kind == "vanishing" and self.vanish_at is None and self.tasks:
                self.vanish_at = time.monotonic() + self.rng.uniform(0, self.plan.vanish_within)
            if self.tasks:
                self.crunch(self.tasks.pop(0))
            elif reply is not None:
                self.stop.wait(1.0)  # nothing to do: ask again soon
        self.flush()
        return self.log

    def flush(self) -> None:
        """The run is over: deliver what is finished, as a client does before it exits."""
        deadline = time.monotonic() + FLUSH_SECONDS
        while self.pending and time.monotonic() < deadline:
            reply = self.call(want=0)
            if reply is not None:
                self.take(reply)
        self.log.unreported = len(self.pending)


def run_hosts(urls: list[str], hosts: list[tuple[int, str, str]], plan: Plan, stop: Any, logs: Any) -> None:
    """A process's share of the hosts, as threads; their logs go back on the ``logs`` queue."""
    local_stop = threading.Event()
    results: list[HostLog] = []

    def one(index: int, kind: str, token: str) -> None:
        results.append(SimHost(urls[index % len(urls)], token, index, kind, plan, local_stop).run())

    threads = [threading.Thread(target=one, args=host, daemon=True) for host in hosts]
    for thread in threads:
        thread.start()
    stop.wait()
    local_stop.set()
    for thread in threads:
        thread.join(FLUSH_SECONDS + CALL_TIMEOUT * 2)
    logs.put([asdict(log) for log in results])
