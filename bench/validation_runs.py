"""The validation benchmark's two timed runs: the coordinator's validator and the raw ceiling.

Each run judges every seeded unit, chunk after chunk, once no dispatch benchmark shares the
machine; the clock and the CPU samples (this process, its database backend, the machine)
cover the judging alone, not the connection or the wait.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from bench.cpu import machine_cpu, process_cpu, wait_for_quiet_machine
from bench.database import django_backend_pid
from bench.validation_raw import raw_chunk

if TYPE_CHECKING:
    from bench.validation import Options
    from bench.validation_seed import Seeded


@dataclass
class Cpu:
    """CPU seconds of this process, of the database backend serving it, and of the machine."""

    python: float
    backend: float
    machine: tuple[float, float, float]

    @staticmethod
    def sample(backend_pid: int) -> Cpu:
        """The three now."""
        return Cpu(time.process_time(), process_cpu(backend_pid), machine_cpu())

    def cores_until(self, later: Cpu, seconds: float) -> dict[str, float]:
        """Cores each used between this sample and a later one."""
        _, idle, steal = (a - b for a, b in zip(later.machine, self.machine, strict=True))
        return {
            "python": (later.python - self.python) / seconds,
            "db": (later.backend - self.backend) / seconds,
            "machine_idle": idle / seconds,
            "steal": steal / seconds,
        }


@dataclass
class RunResult:
    """One run's figures (validator or raw) and what its checks found."""

    mode: str
    units: int
    replicas: int
    seconds: float
    chunks: int
    cpu: dict[str, float]
    waited_s: float
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.replicas / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "replicas_per_s": round(self.per_s, 1),
            "units_per_s": round(self.units / self.seconds, 1) if self.seconds else None,
            "seconds": round(self.seconds, 3),
            "chunks": self.chunks,
            "ms_per_chunk": round(1000 * self.seconds / self.chunks, 2) if self.chunks else None,
            "cpu_cores": {name: round(value, 2) for name, value in self.cpu.items()},
            # CPU per replica: what each side costs, whatever else runs on the machine.
            "cpu_us_per_replica": {
                name: round(1e6 * self.cpu[name] * self.seconds / self.replicas, 1)
                for name in ("python", "db")
            },
            "waited_for_dispatch_s": round(self.waited_s, 1),
        }


def run_validator(opts: Options, seeded: Seeded) -> RunResult:
    """One validator, one thread: validate_due_units until no unit is left, timed.

    ``validate_due_units`` does at most ``max_chunks`` chunks per call (one sweep); calls
    are repeated, a bounded number of times, as the periodic sweep would.
    """
    from django.utils import timezone

    from coordinator.validation import services

    pid = django_backend_pid()  # connects before the clock starts
    waited = wait_for_quiet_machine(opts.wait)
    judged, calls = 0, 0
    before = Cpu.sample(pid)
    started = time.perf_counter()
    while judged < seeded.units and calls < math.ceil(seeded.units / opts.chunk) + 5:
        done = services.validate_due_units(now=timezone.now(), chunk=opts.chunk)
        calls += 1
        judged += done
        if done == 0:
            break
    seconds = time.perf_counter() - started
    after = Cpu.sample(pid)
    if judged != seeded.units:
        raise SystemExit(f"the validator judged {judged} units of {seeded.units} in {calls} calls")
    return RunResult(
        mode="validator",
        units=judged,
        replicas=seeded.replicas,
        seconds=seconds,
        chunks=math.ceil(judged / opts.chunk),
        cpu=before.cores_until(after, seconds),
        waited_s=waited,
    )


def run_raw(opts: Options, seeded: Seeded) -> RunResult:
    """The ceiling: raw_chunk in one transaction per chunk, until no unit is left, timed."""
    with psycopg.connect(opts.database_url) as conn:
        app_id = conn.execute("SELECT id FROM work_app WHERE name = 'bench-validation'").fetchone()[0]
        conn.commit()
        waited = wait_for_quiet_machine(opts.wait)
        pid = conn.info.backend_pid
        judged, chunks = 0, 0
        before = Cpu.sample(pid)
        started = time.perf_counter()
        for _ in range(math.ceil(seeded.units / opts.chunk) + 5):
            with conn.transaction(), conn.cursor() as cur:
                done = raw_chunk(cur, opts.chunk, app_id, datetime.now(UTC))
            if done == 0:
                break
            judged += done
            chunks += 1
        seconds = time.perf_counter() - started
        after = Cpu.sample(pid)
    if judged != seeded.units:
        raise SystemExit(f"the raw run judged {judged} units of {seeded.units}")
    return RunResult(
        mode="raw",
        units=judged,
        replicas=seeded.replicas,
        seconds=seconds,
        chunks=chunks,
        cpu=before.cores_until(after, seconds),
        waited_s=waited,
    )
