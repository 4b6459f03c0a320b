"""Where one scheduler RPC's time goes: its SQL statements and a cProfile of the server side.

Run ``python -m bench.profile_rpc`` (``--units``, ``--batch``, ``--hosts``, ``--rpcs``). It
seeds its own database (``tessera_bench_profile``) exactly as ``bench.dispatch`` does, then
drives the real view in this process through Django's test client, hosts taking turns, so
no HTTP server or load generator shares the profile. It prints the statements of one
steady-state RPC (report a batch, fetch a batch), the wall and CPU time per RPC without a
profiler, the plan of the dispatch query next to the raw claim's, and how the profiled time
splits. Numbers feed docs/benchmarks.md; cProfile is in the standard library.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import json
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.database import check_schema, coordinator_env, migrate, recreate_database, setup_django
from bench.dispatch_hosts import RAW_CLAIM, candidates_per_task, output_for
from bench.dispatch_seed import SEEDED_COLUMNS, BenchHost, Fixture, seed_fixture, seed_queue

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench_profile"

# (label, file fragment, function name): cumulative time of these frames, per RPC.
PROBES = [
    ("whole request (Django handler)", "django/core/handlers/base.py", "get_response"),
    ("  authentication (signature + nonce)", "accounts/authentication.py", "authenticate"),
    ("    Ed25519 verify (PyNaCl)", "tessera_client/signing.py", "signature_is_valid"),
    ("    nonce INSERT (own transaction)", "django/db/models/query.py", "create"),
    ("  request JSON parse", "rest_framework/parsers.py", "parse"),
    ("  request serializer validation", "rest_framework/serializers.py", "is_valid"),
    ("  rpc.scheduler_rpc", "scheduler/rpc.py", "scheduler_rpc"),
    ("    record_reports", "scheduler/reports.py", "record_reports"),
    ("      write_reports (one UPDATE)", "scheduler/report_writer.py", "write_reports"),
    ("      QuerySet.update (compile + run)", "django/db/models/query.py", "update"),
    ("    claim_work", "scheduler/dispatch.py", "claim_work"),
    ("      claim_context (plain SQL)", "scheduler/dispatch_sql.py", "claim_context"),
    ("      candidates (plain SQL)", "scheduler/dispatch_sql.py", "candidates"),
    ("  reply_payload (incl. reverse())", "scheduler/api.py", "reply_payload"),
    ("    django reverse()", "django/urls/base.py", "reverse"),
    ("  response JSON render", "rest_framework/renderers.py", "render"),
    ("  dramatiq hint (stub broker)", "core/hints.py", "hint"),
    ("SQL: psycopg execute (round trips)", "psycopg/cursor.py", "execute"),
    ("SQL: Django compile (as_sql)", "django/db/models/sql/compiler.py", "as_sql"),
    ("SQL: COMMIT", "django/db/backends/base/base.py", "commit"),
]


class ProfiledHost:
    """One host signing requests to the in-process test client, holding what it was sent."""

    def __init__(self, client: Any, host: BenchHost, batch: int) -> None:
        from nacl.signing import SigningKey

        self.client = client
        self.host = host
        self.key = SigningKey(host.seed)
        self.batch = batch
        self.held: list[int] = []

    def body(self) -> bytes:
        from tessera_client.protocol import Report

        reports = [Report(replica=r, status="success", cpu_time=1.0, output=output_for(r)) for r in self.held]
        payload = {"reports": [r.to_json() for r in reports], "work_request": {"tasks": self.batch}}
        return json.dumps(payload, separators=(",", ":")).encode()

    def rpc(self) -> dict[str, Any]:
        from tessera_client.signing import sign_request

        body = self.body()
        path = "/api/v1/scheduler"
        headers = sign_request(self.key, method="POST", path=path, body=body, host_id=self.host.host_id)
        response = self.client.post(path, data=body, content_type="application/json", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"RPC failed: {response.status_code} {response.content[:300]!r}")
        reply = response.json()
        self.held = [task["replica"] for task in reply["tasks"]]
        return reply


def probe_table(
    stats: pstats.Stats, rpcs: int, probes: list[tuple[str, str, str]] = PROBES
) -> list[tuple[str, float, int]]:
    """(label, ms per RPC, calls per RPC) for each probe, from cumulative times."""
    rows = []
    for label, fragment, name in probes:
        cumulative, calls = 0.0, 0
        for (filename, _, funcname), (_, ncalls, _, ct, _) in stats.stats.items():
            if funcname == name and filename.endswith(fragment):
                cumulative += ct
                calls += ncalls
        rows.append((label, 1000 * cumulative / rpcs, round(calls / rpcs)))
    return rows


def client_cost_ms(host: ProfiledHost, reply: dict[str, Any], repeat: int = 200) -> float:
    """CPU a simulated host spends per RPC outside HTTP: build reports, sign, parse the reply."""
    from tessera_client.signing import sign_request

    text = json.dumps(reply)
    started = time.process_time()
    for _ in range(repeat):
        body = host.body()
        sign_request(host.key, method="POST", path="/api/v1/scheduler", body=body, host_id=1)
        json.loads(text)
    return 1000 * (time.process_time() - started) / repeat


class StatementTimer:
    """A Django execute wrapper: every statement's text and wall time, in microseconds."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, float]] = []
        self.claim: tuple[str, Any] | None = None  # the last dispatch query and its parameters

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "SKIP LOCKED" in sql:
            self.claim = (sql, params)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.statements.append((sql, time.perf_counter() - started))


def explain(sql: str, params: Any) -> str:
    """EXPLAIN ANALYZE a statement in a transaction that is rolled back (it takes row locks)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        plan = "\n".join("    " + row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_rpc", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="dropped and re-created")
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=8, help="hosts taking turns (siblings get taken)")
    parser.add_argument("--rpcs", type=int, default=300)
    args = parser.parse_args(argv)
    refuse_unless_bench(parser, args.database_url)
    return args


def refuse_unless_bench(parser: argparse.ArgumentParser, url: str) -> None:
    """Exit with a usage error unless the database's name says it is a benchmark's to drop."""
    if "bench" not in url.rsplit("/", 1)[-1]:
        parser.error("the database is dropped; its name must contain 'bench'")


def prepare(args: argparse.Namespace) -> Fixture:
    """The database seeded as bench.dispatch seeds it, and Django set up on it in this process."""
    media = Path(tempfile.mkdtemp(prefix="tessera-profile-"))
    atexit.register(shutil.rmtree, media, ignore_errors=True)
    env = coordinator_env(args.database_url, media, args.batch)
    recreate_database(args.database_url)
    migrate(env)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        check_schema(conn, SEEDED_COLUMNS)
        fixture = seed_fixture(conn, hosts=args.hosts, media_root=media)
        seed_queue(conn, app_ids=(fixture.app_id,), units=args.units)
    setup_django(env)
    return fixture


class Turns:
    """Hosts taking turns at the RPC; remembers who called last."""

    def __init__(self, hosts: list[ProfiledHost]) -> None:
        self.hosts = hosts
        self.turn = iter(range(10**9))
        self.last = hosts[0]

    def __call__(self) -> dict[str, Any]:
        self.last = self.hosts[next(self.turn) % len(self.hosts)]
        return self.last.rpc()


def print_one_rpc(rpc: Turns, args: argparse.Namespace) -> dict[str, Any]:
    """The statements of one steady-state RPC, each with its wall time; returns its reply."""
    from django.db import connection

    timer = StatementTimer()
    with connection.execute_wrapper(timer):
        reply = rpc()
    fetched = len(reply["tasks"])
    print(f"# one RPC reporting {args.batch} and fetching {fetched}: {len(timer.statements)} statements")
    for text, seconds in timer.statements:
        text = " ".join(text.split())
        print(f"  {seconds * 1000:7.2f} ms  {text[:140]}")
    return reply


def print_cost(rpc: Turns, args: argparse.Namespace) -> None:
    """Wall and CPU time per RPC with no profiler and no statement timer."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    for _ in range(args.rpcs):
        rpc()
    wall = (time.perf_counter() - started) * 1000 / args.rpcs
    cpu = (time.process_time() - cpu_started) * 1000 / args.rpcs
    print(f"\n# without a profiler: {wall:.1f} ms wall and {cpu:.1f} ms of this process's CPU per RPC")


def print_statement_kinds(rpc: Turns, args: argparse.Namespace) -> StatementTimer:
    """Statements over many RPCs, grouped by kind; returns the timer (it holds the last claim)."""
    from django.db import connection

    timer = StatementTimer()
    with connection.execute_wrapper(timer):
        for _ in range(args.rpcs):
            rpc()
    by_kind: dict[str, list[float]] = {}
    for text, seconds in timer.statements:
        words = text.split()
        kind = " ".join(words[:4]) if words[0] == "SELECT" else " ".join(words[:3])
        if "FOR UPDATE SKIP LOCKED" in text:
            kind = "SELECT candidates … FOR UPDATE SKIP LOCKED"
        by_kind.setdefault(kind[:70], []).append(seconds)
    print(f"\n# statements over {args.rpcs} RPCs, by kind (ms per RPC, incl. Django's cursor wrapper)")
    for kind, times in sorted(by_kind.items(), key=lambda item: -sum(item[1])):
        print(f"  {1000 * sum(times) / args.rpcs:7.2f} ms  {len(times) / args.rpcs:4.1f}x  {kind}")
    return timer


def print_plans(timer: StatementTimer, host: ProfiledHost, args: argparse.Namespace) -> None:
    """The plan of the coordinator's dispatch query next to the raw claim's."""
    if timer.claim is None:
        return
    volunteer = host.host.volunteer_id
    print(f"\n# the coordinator's dispatch query now, for volunteer {volunteer}:")
    print(explain(*timer.claim))
    print("\n# the same claim with OFFSET 0 in the NOT EXISTS (bench.dispatch's raw claim):")
    print(explain(RAW_CLAIM, [volunteer, candidates_per_task() * args.batch]))


def print_profile(rpc: Turns, host: ProfiledHost, reply: dict[str, Any], args: argparse.Namespace) -> None:
    """cProfile over many RPCs: the probes, the host's own cost, and the top functions."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.rpcs):
        rpc()
    profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"\n# under cProfile, {args.rpcs} RPCs (cumulative ms per RPC; the profiler inflates Python time)")
    for label, ms, calls in probe_table(stats, args.rpcs):
        print(f"  {label:<40} {ms:8.2f} ms  {calls:4d} calls")
    own = client_cost_ms(host, reply)
    print(f"\n# the simulated host's own CPU per RPC (reports, signing, reply parse): {own:.2f} ms")
    print("\n# top functions by own time")
    stats.sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    """Seed, warm up, then print the statements, timings, plans and profile of the RPC."""
    args = parse_args(argv)
    fixture = prepare(args)
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    hosts = [ProfiledHost(client, host, args.batch) for host in fixture.hosts]
    rpc = Turns(hosts)
    for _ in range(4 * len(hosts)):  # warm: imports, URL resolver, every host holds a batch
        rpc()
    reply = print_one_rpc(rpc, args)
    print_cost(rpc, args)
    timer = print_statement_kinds(rpc, args)
    print_plans(timer, rpc.last, args)
    print_profile(rpc, hosts[0], reply, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
