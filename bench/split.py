"""Splitting benchmark: how long a million-unit batch takes to become work units, in how much memory.

Run ``python -m bench.split`` (``--quick`` for 100,000 units, ``--help`` for the knobs).

On its own PostgreSQL database (the name must contain "bench"), migrated by the coordinator's
own migrations, it publishes the Monte Carlo app and then, in this one process:

* **ours**: ``submit_batch`` (which runs the app's splitter once over every unit to check
  and count them) and ``split_due_batches`` (chunks of ``--chunk`` units, each a
  transaction with ``bulk_create`` and the lifecycle's first replicas): the coordinator's
  own code through Django's ORM.
* **raw**: the ceiling. The same inputs from the same splitter, in the same chunks, inserted
  with plain psycopg: one ``INSERT … SELECT FROM unnest(…) RETURNING id`` for the units and
  one for their replicas per chunk, one transaction per chunk; no Django, no lifecycle.

Memory is the growth of the process's peak resident size (``ru_maxrss``) over each run: it
must not grow with the batch. It prints a table and ends with one line of JSON
(``units``, ``ours_s``, ``raw_s``, ``ratio_to_raw``, ``count_pass_s``, ``peak_rss_growth_mb``…).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.database import coordinator_env, migrate, recreate_database, setup_django
from bench.report import print_json_line, print_pairs

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench_split"
RAW_UNITS = """
INSERT INTO work_workunit (
    app_id, batch_id, batch_index, name, input_inline, input_file, input_sha256, input_size,
    min_quorum, target_nresults, max_error_results, max_total_results, delay_bound,
    priority, memory_bytes, fpops_estimate, state, failure_reason, transition_time,
    need_validate, canonical_replica_id, created)
SELECT %(app)s, %(batch)s, v.i, v.name, v.data, '', v.sha, octet_length(v.data),
       2, 2, 3, 6, 604800, 0, 0, 2e9, 'active', '', now(), false, NULL, now()
FROM unnest(%(index)s::int[], %(name)s::text[], %(data)s::bytea[], %(sha)s::text[]) AS v(i, name, data, sha)
RETURNING id
"""
RAW_REPLICAS = """
INSERT INTO work_replica (
    workunit_id, state, outcome, validate_state, priority, output_sha256, output_file,
    uploaded_sha256, message, created)
SELECT u, 'unsent', 'init', 'init', 0, '', '', '', '', now()
FROM unnest(%s::bigint[]) AS u CROSS JOIN generate_series(1, 2)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--quick", action="store_true", help="100,000 units")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.units = 100_000
    return opts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(parameters: dict[str, Any], chunk: int) -> dict[str, Any]:
    from django.utils import timezone

    from coordinator.science import services
    from coordinator.work.models import Replica, WorkUnit

    services.SPLIT_CHUNK = chunk
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    batch = services.submit_batch(owner=None, app_name="montecarlo_pi", name="bench", parameters=parameters)
    counted = time.perf_counter()
    services.split_due_batches(now=timezone.now(), budget_seconds=10**6)
    seconds = time.perf_counter() - started
    units = WorkUnit.objects.filter(batch=batch).count()
    if units != parameters["units"] or Replica.objects.filter(workunit__batch=batch).count() != 2 * units:
        raise SystemExit(f"ours made {units} units of {parameters['units']}")
    return {
        "batch": batch.pk,
        "app": batch.app_id,
        "ours_s": round(seconds, 2),
        "count_pass_s": round(counted - started, 2),
        "peak_rss_growth_mb": round(peak_rss_mb() - rss_before, 1),
    }


def run_raw(url: str, parameters: dict[str, Any], chunk: int, *, app: int, batch: int) -> dict[str, Any]:
    from workunits import montecarlo_pi

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    inputs = enumerate(montecarlo_pi.split(parameters))
    made = 0
    with psycopg.connect(url) as conn:
        while block := list(itertools.islice(inputs, chunk)):
            with conn.transaction():
                rows = conn.execute(
                    RAW_UNITS,
                    {
                        "app": app,
                        "batch": batch,
                        "index": [i for i, _ in block],
                        "name": [f"raw-{batch}-{i}" for i, _ in block],
                        "data": [data for _, data in block],
                        "sha": [hashlib.sha256(data).hexdigest() for _, data in block],
                    },
                ).fetchall()
                conn.execute(RAW_REPLICAS, ([row[0] for row in rows],))
            made += len(block)
    return {
        "raw_s": round(time.perf_counter() - started, 2),
        "raw_units": made,
        "raw_peak_rss_growth_mb": round(peak_rss_mb() - rss_before, 1),
    }


def run(opts: argparse.Namespace) -> dict[str, Any]:
    recreate_database(opts.database_url)
    with tempfile.TemporaryDirectory(prefix="tessera-split-bench-") as folder:
        env = coordinator_env(opts.database_url, Path(folder) / "media", batch=1)
        env["PROJECT_KEY_FILE"] = str(Path(folder) / "project.key")
        migrate(env)
        setup_django(env)
        from coordinator.core import keys
        from coordinator.work.publishing import publish_app

        publish_app(name="montecarlo_pi", signing_key=keys.create_project_key(keys.project_key_path()))
        parameters = {"seed": 1, "units": opts.units, "samples_per_unit": 2_000_000}
        ours = run_ours(parameters, opts.chunk)
        # A second batch row for the raw rows, so both runs insert under the same constraints.
        from coordinator.work.models import Batch

        raw_batch = Batch.objects.create(name="raw", app_id=ours["app"], units_planned=opts.units)
        raw = run_raw(opts.database_url, parameters, opts.chunk, app=ours["app"], batch=raw_batch.pk)
    units = opts.units
    return {
        "benchmark": "split",
        "units": units,
        "chunk": opts.chunk,
        **{k: v for k, v in ours.items() if k not in ("batch", "app")},
        "ours_units_per_s": round(units / ours["ours_s"]),
        **raw,
        "raw_units_per_s": round(units / raw["raw_s"]),
        "ratio_to_raw": round(raw["raw_s"] / ours["ours_s"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    figures = run(parse_args(argv))
    print_pairs(
        [
            ("units", f"{figures['units']:,} (chunks of {figures['chunk']})"),
            ("ours: check and count", f"{figures['count_pass_s']} s"),
            ("ours: in all", f"{figures['ours_s']} s, {figures['ours_units_per_s']:,} units/s"),
            ("raw psycopg", f"{figures['raw_s']} s, {figures['raw_units_per_s']:,} units/s"),
            ("ratio to raw", f"{figures['ratio_to_raw']}"),
            ("peak memory growth (ours)", f"{figures['peak_rss_growth_mb']} MB"),
        ],
        width=32,
    )
    print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
