"""The validation benchmark's profile: where one validator run's time goes.

One more validator run under cProfile gives the cumulative time of chosen functions (found
by their code objects) and the functions with the most own time; another, chunk by chunk
with Django's query log and an execute wrapper on, counts and times each chunk's statements,
so that the SQL time of a chunk splits from the Python time around it.
"""

from __future__ import annotations

import cProfile
import math
import pstats
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bench.cpu import wait_for_quiet_machine
from bench.database import django_backend_pid
from bench.validation_checks import verify
from bench.validation_seed import seed

if TYPE_CHECKING:
    from bench.validation import Options

# (label, "module:qualname"): the cumulative time of these functions, found by their code
# objects (so two functions of one name in one file are told apart).
PROBES = [
    ("validate_due_units", "coordinator.validation.services:validate_due_units"),
    ("  units_awaiting_validation (ids)", "coordinator.validation.selectors:units_awaiting_validation"),
    ("  validate_units (one transaction per chunk)", "coordinator.validation.services:validate_units"),
    ("    _judge_unit (quorum, claims; pure Python)", "coordinator.validation.services:_judge_unit"),
    ("    ledger.append", "coordinator.validation.ledger:append"),
    ("      entry_hash (JSON + SHA-256)", "tessera_client.ledger:entry_hash"),
    ("    standing.settle (credit, then reputation)", "coordinator.standing.services:settle"),
    ("      _credit_rows (SELECT FOR UPDATE + RAC)", "coordinator.standing.services:_credit_rows"),
    ("      _add_credit_days", "coordinator.standing.services:_add_credit_days"),
    ("      _fold_events (reputation, quotas)", "coordinator.standing.services:_fold_events"),
    ("QuerySet.bulk_update (9 calls a chunk)", "django.db.models.query:QuerySet.bulk_update"),
    ("  When(pk=…, then=…) objects built", "django.db.models.expressions:When.__init__"),
    ("  QuerySet.update (resolve, compile, run)", "django.db.models.query:QuerySet.update"),
    (
        "    resolve the CASE WHEN (add_update_values)",
        "django.db.models.sql.subqueries:UpdateQuery.add_update_values",
    ),
    (
        "    compile the UPDATE (SQLUpdateCompiler.as_sql)",
        "django.db.models.sql.compiler:SQLUpdateCompiler.as_sql",
    ),
    ("QuerySet.bulk_create (ledger, reputation)", "django.db.models.query:QuerySet.bulk_create"),
    ("QuerySet._fetch_all (SELECTs, model instances)", "django.db.models.query:QuerySet._fetch_all"),
    ("  Model.__init__", "django.db.models.base:Model.__init__"),
    ("psycopg Cursor.execute (all statements)", "psycopg.cursor:Cursor.execute"),
    ("COMMIT", "django.db.backends.base.base:BaseDatabaseWrapper.commit"),
]


def _code_key(target: str) -> tuple[str, int, str] | None:
    """pstats' key (file, first line, name) of the function at ``module:qualname``."""
    import importlib
    import inspect

    module_name, _, qualname = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        code = inspect.unwrap(obj).__code__
    except (ImportError, AttributeError):
        return None
    return code.co_filename, code.co_firstlineno, code.co_name


def probe_table(stats: pstats.Stats, total: float) -> list[tuple[str, float, float, int]]:
    """(label, seconds, share of the profiled total, calls) per probe, from cumulative times."""
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for label, target in PROBES:
        key = _code_key(target)
        _, calls, _, cumulative, _ = table.get(key, (0, 0, 0.0, 0.0, {})) if key else (0, 0, 0.0, 0.0, {})
        rows.append((label, cumulative, cumulative / total if total else 0.0, calls))
    return rows


def top_functions(stats: pstats.Stats, count: int = 15) -> list[tuple[str, float, int]]:
    """The functions with the most own time: (where, seconds, calls)."""
    rows = []
    for (filename, line, funcname), (_, ncalls, tt, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = re.sub(r"^.*/(site-packages|main)/", "", filename)
        rows.append((f"{short}:{line}({funcname})", tt, ncalls))
    rows.sort(key=lambda row: row[1], reverse=True)
    return rows[:count]


_TABLE = re.compile(r'(?:FROM|UPDATE|INTO)\s+"([a-z_]+)"', re.IGNORECASE)


def statement_kind(text: str) -> str:
    """A short name for a statement: its verb and first table, and FOR UPDATE when it locks."""
    words = text.lstrip().split(None, 1)
    verb = words[0].upper() if words else "?"
    match = _TABLE.search(text)
    table = match.group(1) if match else ""
    lock = " FOR UPDATE" if "FOR UPDATE" in text.upper() else ""
    if verb == "UPDATE" and re.search(r"\bCASE WHEN\b", text):
        verb = "UPDATE … CASE WHEN"
    if verb == "INSERT" and "ON CONFLICT" in text.upper():
        verb = "INSERT … ON CONFLICT"
    if verb == "INSERT" and re.search(r"\bUNNEST\(", text, re.IGNORECASE):
        verb = "INSERT … SELECT FROM UNNEST"
    return f"{verb} {table}{lock}".strip()


@dataclass
class Profile:
    seconds: float  # the profiled run's wall time (cProfile inflates it)
    probes: list[tuple[str, float, float, int]]
    top: list[tuple[str, float, int]]
    chunks: int
    statements_per_chunk: float  # from connection.queries, BEGIN and COMMIT not counted
    sql_kb_per_chunk: float
    statements: list[tuple[str, float, float, float]]  # kind, per chunk, ms per chunk, KB per chunk
    sql_ms_per_chunk: float  # statements as the execute wrapper times them, and BEGIN/COMMIT
    chunk_ms: float  # median wall time of a chunk, query logging on
    units: int


def profile_validator(opts: Options) -> Profile:
    """cProfile around validate_due_units on a fresh seed, then statements per chunk on another.

    The second run drives validate_units chunk by chunk with Django's connection.queries on
    (CaptureQueriesContext) and times every statement with an execute wrapper, so the SQL
    time of a chunk splits from the Python time around it.
    """
    opts = replace(opts, units=opts.profile_units)
    stats, seconds, total = _cprofile_run(opts)
    counted = _count_statements(opts)
    chunks = len(counted.counts)
    statements = sorted(
        (
            (kind, n / chunks, 1000 * t / chunks, size / chunks / 1024)
            for kind, (n, t, size) in counted.kinds.items()
        ),
        key=lambda row: row[2],
        reverse=True,
    )
    return Profile(
        seconds=seconds,
        probes=probe_table(stats, total),
        top=top_functions(stats),
        chunks=chunks,
        statements_per_chunk=statistics.mean(counted.counts),
        sql_kb_per_chunk=statistics.mean(counted.sizes) / 1024,
        statements=statements,
        sql_ms_per_chunk=sum(row[2] for row in statements),
        chunk_ms=statistics.median(counted.chunk_times),
        units=counted.units,
    )


def _cprofile_run(opts: Options) -> tuple[pstats.Stats, float, float]:
    """validate_due_units under cProfile on a fresh seed: (stats, wall seconds, its cumulative time)."""
    from django.utils import timezone

    from coordinator.validation import services

    seeded = seed(opts.database_url, opts)
    django_backend_pid()
    wait_for_quiet_machine(opts.wait)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    judged = 0
    for _ in range(math.ceil(seeded.units / opts.chunk) + 5):
        profiler.enable()
        done = services.validate_due_units(now=timezone.now(), chunk=opts.chunk)
        profiler.disable()
        judged += done
        if done == 0 or judged >= seeded.units:
            break
    seconds = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    key = _code_key("coordinator.validation.services:validate_due_units")
    total = stats.stats[key][3] if key in stats.stats else seconds  # type: ignore[attr-defined]
    verify(opts.database_url, seeded, "profiled validator")
    return stats, seconds, total


@dataclass
class _Counted:
    """Per chunk: statements (BEGIN/COMMIT aside), bytes of SQL, wall ms; per kind: n, s, bytes."""

    units: int
    counts: list[int]
    sizes: list[int]
    chunk_times: list[float]
    kinds: dict[str, list[float]]


def _count_statements(opts: Options) -> _Counted:
    """validate_units chunk by chunk on a fresh seed, every statement logged and timed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from coordinator.validation import selectors, services

    seeded = seed(opts.database_url, opts)
    django_backend_pid()
    wait_for_quiet_machine(opts.wait)
    timings: list[tuple[str, float]] = []

    def timed(execute: Callable[..., Any], text: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(text, params, many, context)
        finally:
            timings.append((text, time.perf_counter() - began))

    counted = _Counted(seeded.units, [], [], [], defaultdict(lambda: [0, 0.0, 0.0]))
    for _ in range(math.ceil(seeded.units / opts.chunk) + 5):
        timings.clear()
        began = time.perf_counter()
        with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(timed):
            ids = selectors.units_awaiting_validation(limit=opts.chunk)
            done = services.validate_units(unit_ids=ids, now=timezone.now()) if ids else 0
        if not done:
            break
        counted.chunk_times.append(1000 * (time.perf_counter() - began))
        _tally(counted, captured.captured_queries, timings)
    verify(opts.database_url, seeded, "statement-counting validator")
    return counted


def _tally(counted: _Counted, queries: list[dict[str, Any]], timings: list[tuple[str, float]]) -> None:
    """Add one chunk's logged queries and timed statements to the counts."""
    # Django logs BEGIN and COMMIT among the queries (with their time), not through the wrapper.
    control = [q for q in queries if q["sql"] in ("BEGIN", "COMMIT")]
    counted.counts.append(len(queries) - len(control))
    counted.sizes.append(sum(len(q["sql"]) for q in queries))
    timings.extend((q["sql"], float(q["time"])) for q in control)
    for text, took in timings:
        kind = counted.kinds[statement_kind(text)]
        kind[0] += 1
        kind[1] += took
        kind[2] += len(text)


def print_profile(profile: Profile, opts: Options) -> None:
    """Where the validator's time goes: probes, own time, and the statements of a chunk."""
    print()
    print(
        f"# cProfile of validate_due_units over {profile.units:,} units ({profile.seconds:.1f} s under the"
        " profiler; shares of its cumulative time):"
    )
    for label, seconds, share, calls in profile.probes:
        print(f"  {label:<58} {seconds:>8.2f} s {100 * share:>6.1f} %  {calls:>9,} calls")
    print("# most own time:")
    for where, seconds, calls in profile.top:
        print(f"  {seconds:>7.2f} s {calls:>10,}  {where}")
    print(
        f"# statements per chunk of {opts.chunk} units ({2 * opts.chunk} replicas), from connection.queries:"
        f" {profile.statements_per_chunk:.1f} and BEGIN/COMMIT, {profile.sql_kb_per_chunk:.0f} KB of SQL"
        " as logged"
    )
    for kind, per_chunk, ms, kb in profile.statements:
        print(f"  {per_chunk:>5.1f} x {kind:<52} {ms:>7.1f} ms {kb:>7.1f} KB")
    print(
        f"# per chunk: {profile.chunk_ms:.0f} ms wall (median, query logging on), of which statements and"
        f" COMMIT {profile.sql_ms_per_chunk:.0f} ms"
    )
