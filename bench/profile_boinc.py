"""Where a stock BOINC client's cycle spends the server's time: uploads, then one scheduler RPC.

Run ``python -m bench.profile_boinc`` (``--batch``, ``--clients``, ``--cycles``). It seeds its
own database (``tessera_bench_profile_boinc``) as ``bench.boinc`` does, then drives the real
views in this process through Django's test client, clients taking turns, so no HTTP server or
load generator shares the profile. It prints the statements of one steady-state cycle (the
batch's uploads, then the request that reports them and fetches the next batch), the CPU time
per cycle of each part without a profiler, and a cProfile split by area. Numbers feed
docs/benchmarks.md; cProfile is in the standard library.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.boinc import Options, boinc_env, prepare
from bench.boinc_clients import (
    FORM,
    ClientOptions,
    ClientState,
    read_reply,
    request_xml,
    result_xml,
    upload_body,
    work_seconds,
)
from bench.boinc_seed import BoincClient
from bench.database import setup_django
from bench.dispatch_hosts import output_for
from bench.dispatch_seed import fill_queue
from bench.profile_rpc import StatementTimer, probe_table, refuse_unless_bench

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench_profile_boinc"

# (label, file fragment, function name): cumulative time of these frames, per cycle.
PROBES = [
    ("whole requests (Django handler)", "django/core/handlers/base.py", "get_response"),
    ("  file_upload_handler (view)", "boinc/transfers.py", "file_upload_handler"),
    ("  scheduler_rpc (view)", "boinc/views.py", "scheduler_rpc"),
    ("    parse the request XML", "boinc/request.py", "parse_request"),
    ("    boinc_host (key, host, seqno)", "boinc/scheduler.py", "boinc_host"),
    ("    _reports (rows, seals)", "boinc/scheduler.py", "_reports"),
    ("    handle_scheduler_request", "scheduler/rpc.py", "handle_scheduler_request"),
    ("      record_reports", "scheduler/reports.py", "record_reports"),
    ("      claim_work", "scheduler/dispatch.py", "claim_work"),
    ("    lost_results", "boinc/scheduler.py", "lost_results"),
    ("    render_reply", "boinc/reply.py", "render_reply"),
    ("SQL: psycopg execute (round trips)", "psycopg/cursor.py", "execute"),
    ("SQL: Django compile (as_sql)", "django/db/models/sql/compiler.py", "as_sql"),
]


class ProfiledClient:
    """One simulated BOINC 7.20 client against the in-process test client."""

    def __init__(self, client: Any, boinc: BoincClient, options: ClientOptions, batch: int) -> None:
        self.client, self.boinc, self.options = client, boinc, options
        self.state = ClientState()
        self.seconds = work_seconds(batch)

    def upload_all(self) -> None:
        for task in self.state.held:
            body = upload_body(task, output_for(task.replica_id))
            answer = self.client.post(
                "/boinc/file_upload_handler", data=body, content_type=FORM["Content-Type"]
            )
            if b"<status>0</status>" not in answer.content:
                raise RuntimeError(f"upload refused: {answer.content[:300]!r}")

    def request(self) -> int:
        results = "".join(result_xml(task, uploaded=True) for task in self.state.held)
        self.state.seqno += 1
        body = request_xml(
            self.boinc,
            self.options,
            hostid=self.state.hostid,
            seqno=self.state.seqno,
            seconds=self.seconds,
            results=results,
        )
        answer = self.client.post("/boinc/cgi", data=body, content_type=FORM["Content-Type"])
        if answer.status_code != 200:
            raise RuntimeError(f"scheduler request failed: {answer.status_code} {answer.content[:300]!r}")
        hostid, tasks, _, messages = read_reply(answer.content)
        if not tasks:
            raise RuntimeError(f"no work: {messages}")
        self.state.hostid = hostid if hostid is not None else self.state.hostid
        self.state.held = tasks
        return len(tasks)

    def cycle(self) -> int:
        self.upload_all()
        return self.request()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_boinc", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="dropped and re-created")
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8, help="clients taking turns")
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args(argv)
    refuse_unless_bench(parser, args.database_url)
    return args


def setup(args: argparse.Namespace, workdir: Path) -> list[ProfiledClient]:
    """The database seeded as bench.boinc seeds it, Django set up on it, the clients made."""
    opts = Options(
        database_url=args.database_url,
        hosts=args.clients,
        batch=args.batch,
        seconds=0.0,
        warmup=0.0,
        workers=1,
        units=args.units,
        procs=1,
        quick=True,
    )
    (workdir / "media").mkdir()
    env = boinc_env(opts, workdir)
    fixture, boinc = prepare(opts, env, workdir)
    import psycopg

    with psycopg.connect(args.database_url, autocommit=True) as conn:
        fill_queue(conn, app_ids=(fixture.app_id,), units=args.units)
    setup_django(env)
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    options = ClientOptions(pinned_key=boinc.public_key)
    return [ProfiledClient(client, one, options, args.batch) for one in boinc.clients]


def timed(clients: list[ProfiledClient], cycles: int) -> tuple[float, float]:
    """CPU ms per cycle spent on the uploads and on the scheduler request, without a profiler."""
    uploads = requests = 0.0
    for turn in range(cycles):
        one = clients[turn % len(clients)]
        started = time.process_time()
        one.upload_all()
        middle = time.process_time()
        one.request()
        uploads += middle - started
        requests += time.process_time() - middle
    return 1000 * uploads / cycles, 1000 * requests / cycles


def print_statements(one: ProfiledClient) -> None:
    from django.db import connection

    timer = StatementTimer()
    with connection.execute_wrapper(timer):
        one.upload_all()
        uploads = len(timer.statements)
        one.request()
    print(f"# one cycle: {uploads} statements for the uploads, then the scheduler request's:")
    for text, seconds in timer.statements[uploads:]:
        print(f"  {seconds * 1000:7.2f} ms  {' '.join(text.split())[:150]}")


def print_profile(clients: list[ProfiledClient], cycles: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for turn in range(cycles):
        clients[turn % len(clients)].cycle()
    profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"\n# under cProfile, {cycles} cycles (cumulative ms per cycle; the profiler inflates Python time)")
    for label, ms, calls in probe_table(stats, cycles, PROBES):
        print(f"  {label:<40} {ms:8.2f} ms  {calls:4d} calls")
    print("\n# top functions by own time")
    stats.sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tessera-profile-boinc-"))
    try:
        clients = setup(args, workdir)
        for _ in range(3):  # warm: imports, the URL resolver, every client holds a batch
            for one in clients:
                one.cycle()
        print_statements(clients[0])
        uploads, request = timed(clients, args.cycles)
        print(
            f"\n# without a profiler, CPU per cycle of {args.batch}: uploads {uploads:.1f} ms "
            f"({uploads / args.batch:.2f} ms each), scheduler request {request:.1f} ms; "
            f"{(uploads + request) / args.batch:.2f} ms per replica"
        )
        print_profile(clients, args.cycles)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
