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
- ``colluding``: always tells the *agreed lie*, a plausible wrong answer from the input
  alone, so every colluder tells the same one (the always-lying strategy).
- ``partner``: a colluder that tells the agreed lie only when another member of its ring
  holds (or held) a replica of the same unit and none of them answered it truthfully, and
  answers honestly otherwise, so that it is never the lone dissenter.
- ``laundering``: honest for its first ``Plan.launder_after`` results, to earn trust, then
  tells the agreed lie.
- ``replaying``: honest, but also sends each signed request again byte for byte, replays a
  stale one, and reports replicas of other hosts.
- ``crashing``: honest, but often dies between sending a call and reading its reply: the new
  tasks of that reply are lost and the finished results are reported again after a restart.

The three colluding kinds form one *ring* per process (:class:`Ring`): a thread-safe registry
of which units each member holds and how it answered, which they learn from their tasks.
With ``Plan.burst`` the ring also *bursts*: each member crunches what it holds, then the
members ask for as much work as the coordinator allows, one right after the other
(``Plan.ring_cpus``: the cores each claims, and crunches on, raise what it is allowed).

Every host has its own simulated address, sent as ``X-Forwarded-For`` (the coordinator
believes it from the loopback when ``FORWARDED_ALLOW_IPS`` says so): each host in its own
/24 of 198.18.0.0/15, colluders too, the worst case where no network relates them; with
``Plan.ring_network`` the ring shares one /24.

What each host saw comes back as a :class:`HostLog`, so the runner can check the coordinator's
books against the hosts' own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import requests
from tessera_client.protocol import HostKey, ProjectSession, ProtocolError, Report
from tessera_client.signing import sign_request

from workunits import montecarlo_pi
from workunits.interface import Checkpoint

KINDS = (
    "honest",
    "slow",
    "vanishing",
    "random",
    "colluding",
    "partner",
    "laundering",
    "replaying",
    "crashing",
)
RING_KINDS = frozenset({"colluding", "partner", "laundering"})  # they tell the same agreed lie
CHEATING_KINDS = frozenset({"random"}) | RING_KINDS
SCHEDULER_PATH = "/api/v1/scheduler"
CALL_TIMEOUT = 30.0
FLUSH_SECONDS = 60.0  # after the run, how long a host keeps trying to deliver what it finished
BURST_TASKS = 10_000  # a bursting colluder asks for everything: the coordinator's limits decide
GATHER_SECONDS = 5.0  # how long a ring member waits for the others before it asks anyway
# Simulated addresses: host i has the /24 number i of 198.18.0.0/15 (hosts 0-510); a ring
# that shares a network has the last one.
ADDRESSES = ipaddress.ip_network("198.18.0.0/15")
RING_SUBNET = ADDRESSES.num_addresses // 256 - 1
# What a host's time goes to (HostLog.spent): its task, its scheduler calls (the reply
# awaited), backing off after a failed call, waiting with nothing to do, restarting after a crash.
SPENT_ON = ("crunch", "call", "back off", "no work", "crash")


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
    launder_after: int = 15  # a laundering host's honest results before it lies
    burst: bool = True  # the ring asks for as much work as allowed, its members back to back
    ring_network: bool = False  # the ring's hosts share one /24 (else each has its own)
    ring_cpus: int = 1  # the cores a ring member claims (and crunches on); everyone else has 1


def address_of(index: int, kind: str, plan: Plan) -> str:
    """A host's simulated address: the first of its own /24, or one of the ring's /24."""
    base = int(ADDRESSES.network_address)
    if plan.ring_network and kind in RING_KINDS:
        return str(ipaddress.IPv4Address(base + RING_SUBNET * 256 + 1 + index % 254))
    return str(ipaddress.IPv4Address(base + (index % RING_SUBNET) * 256 + 1))


@dataclass
class HostLog:
    """One host's own account of the run."""

    index: int
    kind: str
    address: str = ""
    host_id: int = 0
    first_report: float | None = None  # wall-clock time of its first finished result
    results: int = 0  # results it finished (crunched)
    lies: int = 0  # of which the agreed lie
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
    # Where its time went: (what, wall-clock start, end), what being one of SPENT_ON.
    spent: list[tuple[str, float, float]] = field(default_factory=list)

    def failed(self, status: str) -> None:
        self.failed_calls[status] = self.failed_calls.get(status, 0) + 1

    @contextmanager
    def spending(self, what: str) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:
            self.spent.append((what, round(start, 3), round(time.time(), 3)))


def right_answer(data: bytes) -> bytes:
    return montecarlo_pi.compute(data, Checkpoint())


def agreed_lie(data: bytes) -> bytes:
    """A plausible wrong answer every colluder derives from the input alone."""
    samples = int(json.loads(data)["samples"])
    inside = int.from_bytes(hashlib.sha256(b"agreed lie" + data).digest()[:4], "big") % (samples + 1)
    return json.dumps({"inside": inside, "samples": samples}, sort_keys=True).encode()


def answer(kind: str, data: bytes, rng: random.Random) -> bytes:
    """The output a host of this kind returns for an input (the ring's partners decide
    with :meth:`Ring.partnered` instead)."""
    if kind == "random":
        return json.dumps({"inside": rng.randrange(10**9), "samples": 1}).encode()
    if kind == "colluding":
        return agreed_lie(data)
    return right_answer(data)


class Ring:
    """Colluders working together in one process: which units each member holds (or held)
    and how it answered them, and the bursts in which they ask for work back to back."""

    def __init__(self, size: int) -> None:
        self.size = size  # members still running
        self.answers: dict[str, dict[int, bool | None]] = {}  # unit -> member -> lied (None: not yet)
        self.changed = threading.Condition()
        self.calling = threading.Lock()  # one member asks at a time, the next right after
        self.arrived = 0
        self.round = 0

    def hold(self, unit: str, member: int) -> None:
        with self.changed:
            self.answers.setdefault(unit, {}).setdefault(member, None)

    def partnered(self, unit: str, member: int) -> bool:
        """Whether ``member`` lies about ``unit`` (and it is noted): another member holds or
        held it, and none has answered it truthfully."""
        with self.changed:
            answers = self.answers.setdefault(unit, {})
            others = [lied for other, lied in answers.items() if other != member]
            answers[member] = lie = bool(others) and False not in others
            return lie

    def answered(self, unit: str, member: int, lied: bool) -> None:
        with self.changed:
            self.answers.setdefault(unit, {})[member] = lied

    def gather(self, stop: threading.Event) -> None:
        """Wait until every running member is ready to ask for work, or GATHER_SECONDS."""
        with self.changed:
            mine, deadline = self.round, time.monotonic() + GATHER_SECONDS
            self.arrived += 1
            while self.round == mine:
                if self.arrived >= self.size or time.monotonic() >= deadline or stop.is_set():
                    self.round, self.arrived = self.round + 1, 0
                    self.changed.notify_all()
                    return
                self.changed.wait(0.2)

    def leave(self) -> None:
        with self.changed:
            self.size -= 1
            self.changed.notify_all()


class Refused(Exception):
    """The coordinator refused a call for good (4xx other than 401/429)."""


class SimHost:
    def __init__(
        self,
        url: str,
        token: str,
        index: int,
        kind: str,
        plan: Plan,
        stop: threading.Event,
        ring: Ring | None = None,
    ) -> None:
        self.url, self.token, self.kind, self.plan, self.stop = url, token, kind, plan, stop
        self.ring = ring if kind in RING_KINDS else None
        self.bursting = self.ring is not None and plan.burst
        self.cpus = plan.ring_cpus if kind in RING_KINDS else 1
        self.rng = random.Random(plan.seed * 1_000_003 + index)
        self.key = HostKey.generate()
        self.session = ProjectSession(url, self.key)
        self.http = self.session.http
        self.log = HostLog(index=index, kind=kind, address=address_of(index, kind, plan))
        self.http.headers["X-Forwarded-For"] = self.log.address
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
        with self.log.spending("back off"):
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
            with self.log.spending("call"):
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
        if self.ring is not None:
            for task in reply["tasks"]:
                self.ring.hold(task["workunit"], self.log.index)

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
                    n_cpus=self.cpus,
                    memory_bytes=8 << 30,
                )
                return True
            except (ProtocolError, OSError, requests.RequestException):
                self.back_off("register")
        return False

    def crunch(self, task: dict[str, Any]) -> None:
        """Run one task: a host with more cores crunches that many tasks per task length."""
        factor = self.plan.slow_factor if self.kind == "slow" else 1.0
        with self.log.spending("crunch"):
            self.stop.wait(self.plan.task_seconds * factor / self.cpus)
        data = self.session.fetch_input(task)  # inline here: no transfer
        output = self.output(task["workunit"], data)
        self.pending[task["replica"]] = Report(task["replica"], "success", self.plan.task_seconds, output)
        self.log.results += 1
        if self.log.first_report is None:
            self.log.first_report = time.time()

    def output(self, unit: str, data: bytes) -> bytes:
        """What this host answers; a ring member notes whether it told the agreed lie."""
        if self.kind not in RING_KINDS:
            return answer(self.kind, data, self.rng)
        if self.kind == "partner":
            lie = self.ring is not None and self.ring.partnered(unit, self.log.index)
        else:  # colluding always lies; laundering once it has done its honest results
            lie = self.kind == "colluding" or self.log.results >= self.plan.launder_after
            if self.ring is not None:
                self.ring.answered(unit, self.log.index, lie)
        self.log.lies += lie
        return agreed_lie(data) if lie else right_answer(data)

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
        try:
            if self.register() and self.live():
                self.flush()
        finally:
            if self.ring is not None:
                self.ring.leave()
        return self.log

    def ask(self, *, read_reply: bool) -> dict[str, Any] | None:
        """One scheduler call: a bursting ring member, once the ring has gathered, asks for
        everything right after its partner, and waits for the others before it crunches
        (so that it knows what they hold); anyone else tops up its buffer."""
        if not self.bursting:
            return self.call(want=max(0, self.plan.buffer - len(self.tasks)), read_reply=read_reply)
        assert self.ring is not None
        self.ring.gather(self.stop)
        with self.ring.calling:
            reply = self.call(want=BURST_TASKS, read_reply=read_reply)
            if reply is not None:
                self.take(reply)
        self.ring.gather(self.stop)  # the burst is over: every member knows what the ring holds
        return reply

    def live(self) -> bool:
        """Crunch until the run stops (True: deliver what is finished) or the host vanishes
        for good (False: it takes its results with it)."""
        while not self.stop.is_set():
            due = self.vanish_at is not None and time.monotonic() >= self.vanish_at
            if due and not self.log.vanished and not self.vanish():
                self.log.abandoned = len(self.pending)
                return False
            if self.bursting and self.tasks:  # a burst's tasks are crunched before the next burst
                self.crunch(self.tasks.pop(0))
                continue
            crash = (
                self.kind == "crashing" and bool(self.pending) and self.rng.random() < self.plan.crash_chance
            )
            reply = self.ask(read_reply=not crash)
            if crash:
                self.log.crashes += 1
                with self.log.spending("crash"):
                    self.stop.wait(self.rng.uniform(1.0, 3.0))  # the restart
                continue
            if reply is not None:
                if not self.bursting:
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
                with self.log.spending("no work"):
                    self.stop.wait(1.0)  # nothing to do: ask again soon
        return True

    def flush(self) -> None:
        """The run is over: deliver what is finished, as a client does before it exits."""
        deadline = time.monotonic() + FLUSH_SECONDS
        while self.pending and time.monotonic() < deadline:
            reply = self.call(want=0)
            if reply is not None:
                self.take(reply)
        self.log.unreported = len(self.pending)


class Fleet:
    """Simulated hosts as threads of this process, the ring kinds in one :class:`Ring`.
    ``hosts`` are (index, kind, account token); host ``index`` talks to ``urls[index % n]``."""

    def __init__(self, urls: list[str], hosts: list[tuple[int, str, str]], plan: Plan) -> None:
        self.stopping = threading.Event()
        members = sum(kind in RING_KINDS for _, kind, _ in hosts)
        self.ring = Ring(members) if members else None
        self.hosts = [
            SimHost(urls[index % len(urls)], token, index, kind, plan, self.stopping, ring=self.ring)
            for index, kind, token in hosts
        ]
        self.threads = [
            threading.Thread(target=host.run, name=f"sim-{host.kind}-{host.log.index}", daemon=True)
            for host in self.hosts
        ]

    def start(self) -> Fleet:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> list[HostLog]:
        """Stop every host; each delivers what it finished (up to FLUSH_SECONDS) first."""
        self.stopping.set()
        deadline = time.monotonic() + FLUSH_SECONDS + CALL_TIMEOUT * 2
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [host.log for host in self.hosts]


def run_hosts(urls: list[str], hosts: list[tuple[int, str, str]], plan: Plan, stop: Any, logs: Any) -> None:
    """A process's share of the hosts, as threads; their logs go back on the ``logs`` queue."""
    fleet = Fleet(urls, hosts, plan).start()
    stop.wait()
    logs.put([asdict(log) for log in fleet.stop()])
