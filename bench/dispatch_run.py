"""One timed run of the dispatch benchmark: load processes, a measured window, its figures.

The load processes start and report ready before the clock starts; warm-up seconds pass
unmeasured; throughput counts the RPCs that complete inside the measured window, and the
CPU of the server, the database and the load generator is read from /proc at its edges.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from bench.cpu import cpu_cores, cpu_sample, postgres_pids
from bench.database import database_name
from bench.dispatch_hosts import RPC_TIMEOUT, HostRecord, candidates_per_task, load_process
from bench.dispatch_seed import BenchHost, Fixture, QueueTopUp, replicas_sent
from bench.report import percentile

if TYPE_CHECKING:
    from bench.dispatch import Options


@dataclass
class RunResult:
    """One run's figures (HTTP or raw, one queue length), as measured in the window."""

    mode: str
    queue: int
    seconds: float
    rpcs: int
    replicas_per_s: float
    reported_per_s: float
    rpc_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    errors: dict[str, int]
    duplicates: int
    unaccounted: int
    cpu: dict[str, float]
    queue_low_water: int = 0  # fewest unsent replicas the top-up let the queue fall to
    slowest_topup_s: float = 0.0
    topup_error: str | None = None
    # Figures a load generator adds of its own (``HostRecord.window_figures``), e.g. uploads.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def own_cores(self) -> float:
        """Cores this benchmark's processes used (server, database, load generator)."""
        return sum(self.cpu.get(name, 0.0) for name in ("server", "db", "loadgen"))

    @property
    def other_cores(self) -> float:
        """Cores other processes on the machine used meanwhile: the noise of a shared machine."""
        return max(0.0, self.cpu.get("machine_busy", 0.0) - self.own_cores)

    @property
    def replicas_per_cpu_s(self) -> float:
        """Replicas per second of CPU spent by this benchmark: steadier than the rate when
        other processes take a share of the machine."""
        return self.replicas_per_s / self.own_cores if self.own_cores else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "replicas_per_s": round(self.replicas_per_s, 1),
            "replicas_per_cpu_s": round(self.replicas_per_cpu_s, 1),
            "other_processes_cores": round(self.other_cores, 2),
            "reported_per_s": round(self.reported_per_s, 1),
            "rpc_per_s": round(self.rpc_per_s, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "mean_batch": round(self.mean_batch, 2),
            "rpcs": self.rpcs,
            "errors": self.errors,
            "duplicate_assignments": self.duplicates,
            "unaccounted_replicas": self.unaccounted,
            "queue_low_water_replicas": self.queue_low_water,
            "slowest_top_up_s": round(self.slowest_topup_s, 3),
            "cpu_cores": {name: round(value, 2) for name, value in self.cpu.items()},
            # CPU each part spent per RPC: the machine's 2 cores divided among them.
            "cpu_ms_per_rpc": {
                name: round(1000 * self.cpu[name] / self.rpc_per_s, 2) if self.rpc_per_s else None
                for name in ("server", "db", "loadgen")
                if name in self.cpu
            },
        }


class LoadGenerator:
    """The load processes of one run (spawned, hosts split among them) and what they share."""

    def __init__(
        self,
        mode: str,
        target: str,
        *,
        hosts: Sequence[BenchHost] | Sequence[Any],
        opts: Options,
        version_id: int,
        load: Callable[..., None] = load_process,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.ready, self.results = ctx.Queue(), ctx.Queue()
        self.go = ctx.Event()
        self.times = ctx.Array("d", 2)
        self.counter = ctx.Value("q", 0)  # replicas dispatched, for the queue top-up
        shares = [hosts[i :: opts.procs] for i in range(opts.procs)]
        self.procs = [
            ctx.Process(
                target=load,
                args=(
                    mode,
                    target,
                    share,
                    opts.batch,
                    version_id,
                    candidates_per_task(),
                    self.ready,
                    self.go,
                    self.times,
                    self.counter,
                    self.results,
                ),
                name=f"bench-{mode}-{index}",
                daemon=True,
            )
            for index, share in enumerate(shares)
            if share
        ]

    def start(self) -> None:
        """Start every load process and wait until each has imported what it needs."""
        for proc in self.procs:
            proc.start()
        _await_ready(self.ready, self.procs)

    def set_window(self, start: float, end: float) -> None:
        """When the hosts start (after the warm-up's start) and stop, on the monotonic clock."""
        self.times[0], self.times[1] = start, end

    def release(self) -> None:
        """Let the hosts go: each waits for the window's start, then loops until its end."""
        self.go.set()

    @property
    def pids(self) -> list[int]:
        """The load processes, for the ``loadgen`` CPU group."""
        return [p.pid for p in self.procs if p.pid]

    def collect(self) -> HostRecord:
        """Every process's merged record, once its hosts have stopped (of the records' own
        class, which may carry more than ``HostRecord``)."""
        merged: HostRecord | None = None
        for _ in self.procs:
            part = self.results.get(timeout=RPC_TIMEOUT + 60)
            if part is None:
                continue
            if merged is None:
                merged = part
            else:
                merged.merge(part)
        return merged if merged is not None else HostRecord()

    def stop(self) -> None:
        """Join every process that started; terminate one that lingers."""
        for proc in self.procs:
            if proc.pid is None:
                continue  # never started
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def _await_ready(ready: Any, procs: list[Any], limit: float = 120.0) -> None:
    """Wait for every load process to say it is ready, failing fast if one dies instead."""
    deadline = time.monotonic() + limit
    waiting = len(procs)
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{waiting} load processes were not ready after {limit:.0f} s")
        try:
            ready.get(timeout=1.0)
            waiting -= 1
        except queue_module.Empty:
            dead = [proc.name for proc in procs if proc.exitcode is not None]
            if dead:
                raise RuntimeError(f"load processes died while starting: {', '.join(dead)}") from None


def timed_run(
    mode: str,
    *,
    target: str,
    opts: Options,
    fixture: Fixture,
    queue: int,
    cpu_groups: dict[str, list[int]],
    app_ids: tuple[int, ...] = (),
    load_target: Callable[..., None] = load_process,
    hosts: Sequence[Any] | None = None,
) -> RunResult:
    """Drive all hosts for warm-up + measured seconds on a queue of ``queue`` units.

    Throughput counts the RPCs that complete inside the measured window; latencies are theirs.
    ``load_target`` and ``hosts`` replace the simulated hosts (``dispatch_hosts.load_process``
    with the fixture's hosts) by another kind of client with the same arguments.
    """
    load = LoadGenerator(
        mode,
        target,
        hosts=fixture.hosts if hosts is None else hosts,
        opts=opts,
        version_id=fixture.app_version_id,
        load=load_target,
    )
    topup = QueueTopUp(
        opts.database_url, app_ids=app_ids or (fixture.app_id,), next_unit=queue + 1, dispatched=load.counter
    )
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        sent_before = replicas_sent(conn)
    window, cpu, merged = _drive(load, topup, opts, cpu_groups)
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        sent_after = replicas_sent(conn)
    return _figures(
        mode,
        queue,
        merged,
        window,
        cpu,
        # Replicas the database sent that no client saw (an RPC that timed out after committing).
        unaccounted=(sent_after - sent_before) - len(merged.replica_ids),
        queue_low_water=2 * queue - topup.largest_deficit,
        slowest_topup_s=topup.slowest_insert,
        topup_error=repr(topup.error) if topup.error else None,
    )


def _drive(
    load: LoadGenerator, topup: QueueTopUp, opts: Options, cpu_groups: dict[str, list[int]]
) -> tuple[tuple[float, float], dict[str, float], HostRecord]:
    """Start the load and the top-up, sleep through the warm-up and the measured window, and
    collect what the hosts saw; both are stopped whatever happens. Returns the window, the
    cores each group used in it, and the merged record."""
    try:
        load.start()
        start = time.monotonic() + 0.5
        measure_from = start + opts.warmup
        end = measure_from + opts.seconds
        load.set_window(start, end)
        topup.start()
        load.release()
        cpu = _measure_cpu(opts, dict(cpu_groups, loadgen=load.pids), measure_from, end)
        merged = load.collect()
    finally:
        load.stop()
        topup.stop()
    return (measure_from, end), cpu, merged


def _measure_cpu(
    opts: Options, groups: dict[str, list[int]], measure_from: float, end: float
) -> dict[str, float]:
    """Sleep through the warm-up and the measured window; the cores each group used in the latter."""
    groups["db"] = postgres_pids(database_name(opts.database_url))
    time.sleep(max(0.0, measure_from - time.monotonic()))
    groups["db"] = postgres_pids(database_name(opts.database_url))
    before = cpu_sample(groups)
    time.sleep(max(0.0, end - time.monotonic()))
    after = cpu_sample(groups)
    return cpu_cores(before, after, end - measure_from)


def _figures(
    mode: str,
    queue: int,
    merged: HostRecord,
    window: tuple[float, float],
    cpu: dict[str, float],
    **checks: Any,
) -> RunResult:
    """Rates, latencies and errors of the RPCs that completed inside the measured window."""
    measure_from, end = window
    in_window = [
        i for i, began in enumerate(merged.started) if measure_from <= began + merged.latency[i] < end
    ]
    seconds = end - measure_from
    latencies = sorted(merged.latency[i] * 1000 for i in in_window)
    dispatched = sum(merged.dispatched[i] for i in in_window)
    reported = sum(merged.reported[i] for i in in_window)
    errors = Counter(kind for at, kind in merged.errors if measure_from <= at < end)
    all_errors = Counter(kind for _, kind in merged.errors)
    for kind, count in all_errors.items():
        if kind not in errors:
            errors[f"{kind} (outside window)"] = count
    ids = merged.replica_ids
    return RunResult(
        mode=mode,
        queue=queue,
        seconds=seconds,
        extra=merged.window_figures(measure_from, end),
        rpcs=len(in_window),
        replicas_per_s=dispatched / seconds,
        reported_per_s=reported / seconds,
        rpc_per_s=len(in_window) / seconds,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        mean_batch=dispatched / len(in_window) if in_window else 0.0,
        errors=dict(errors),
        duplicates=len(ids) - len(set(ids)),
        cpu=cpu,
        **checks,
    )
