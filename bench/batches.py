"""Watching and cancelling a big batch: what a scientist's page and cancel button cost.

Run ``python -m bench.batches`` (``--units`` for the size, default 100,000).

On its own PostgreSQL database (the name must contain "bench"), migrated by the coordinator's
own migrations, it splits two identical batches of the Monte Carlo app with the coordinator's
splitter, then sends a tenth of each batch's replicas to hosts, and measures in this process:

* **progress**: ``selectors.batch_progress`` (what the admin page, the API and the helper
  script show), the median of five looks.
* **cancel, ours**: ``services.cancel_batch`` and ``call_off_units`` on the first batch: the
  lifecycle unit by unit, a transaction per chunk of 1,000 units (unsent replicas withdrawn,
  sent ones called off, units failed), as the cancel request and the worker run it.
* **cancel, raw**: the ceiling, on the second batch: the same end state written with plain
  psycopg in three ``UPDATE`` statements and one transaction, no lifecycle.

It prints a table and ends with one line of JSON (``units``, ``progress_ms``, ``cancel_s``,
``raw_cancel_s``, ``ratio_to_raw``, ``cancel_units_per_s``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.database import coordinator_env, migrate, recreate_database, setup_django
from bench.report import print_json_line, print_pairs

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench_batches"
RAW_CANCEL = [
    "UPDATE work_batch SET state = 'cancelled', finished = now() WHERE id = %(batch)s",
    """UPDATE work_replica r SET state = 'over', outcome = 'didnt_need'
       FROM work_workunit u
       WHERE r.workunit_id = u.id AND u.batch_id = %(batch)s AND r.state IN ('unsent', 'in_progress')""",
    """UPDATE work_workunit SET state = 'failed', failure_reason = 'cancelled', transition_time = NULL,
       need_validate = false WHERE batch_id = %(batch)s AND state = 'active'""",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    return parser.parse_args(argv)


def split_batch(name: str, units: int) -> Any:
    from django.utils import timezone

    from coordinator.science import services

    batch = services.submit_batch(
        owner=None,
        app_name="montecarlo_pi",
        name=name,
        parameters={"seed": 1, "units": units, "samples_per_unit": 2_000_000},
    )
    services.split_due_batches(now=timezone.now(), budget_seconds=10**6)
    return batch


def send_a_tenth(batch: Any, host: Any) -> int:
    """A tenth of the batch's replicas out on a host, as dispatch leaves them."""
    from datetime import timedelta

    from django.utils import timezone

    from coordinator.work.models import Replica

    # One replica of every fifth unit (two replicas each): a tenth of them, never two of one
    # unit, which one volunteer may not hold (replicas are not in unit order on disk).
    first_of_unit: dict[int, int] = {}
    rows = Replica.objects.filter(workunit__batch=batch).order_by("workunit_id", "pk")
    for pk, unit_id in rows.values_list("pk", "workunit_id"):
        first_of_unit.setdefault(unit_id, pk)
    ids = list(first_of_unit.values())[::5]
    now = timezone.now()
    return Replica.objects.filter(pk__in=ids).update(
        state="in_progress",
        host=host,
        volunteer_id=host.volunteer_id,
        sent_at=now,
        deadline=now + timedelta(days=7),
    )


def time_progress(batch: Any) -> float:
    from django.utils import timezone

    from coordinator.science.selectors import batch_progress

    looks = []
    for _ in range(5):
        started = time.perf_counter()
        progress = batch_progress(batch, now=timezone.now())
        looks.append(time.perf_counter() - started)
    if progress.in_progress == 0 or progress.waiting == 0:
        raise SystemExit(f"the progress looks wrong: {progress}")
    return statistics.median(looks)


def run(opts: argparse.Namespace) -> dict[str, Any]:
    recreate_database(opts.database_url)
    with tempfile.TemporaryDirectory(prefix="tessera-batches-bench-") as folder:
        env = coordinator_env(opts.database_url, Path(folder) / "media", batch=1)
        env["PROJECT_KEY_FILE"] = str(Path(folder) / "project.key")
        migrate(env)
        setup_django(env)
        from django.utils import timezone

        from coordinator.core import keys
        from coordinator.science import services
        from coordinator.testing import make_host
        from coordinator.work.models import Replica, WorkUnit
        from coordinator.work.publishing import publish_app

        publish_app(name="montecarlo_pi", signing_key=keys.create_project_key(keys.project_key_path()))
        host, _ = make_host()
        ours, raw = split_batch("ours", opts.units), split_batch("raw", opts.units)
        sent = send_a_tenth(ours, host)
        send_a_tenth(raw, host)
        progress_s = time_progress(ours)

        started = time.perf_counter()
        services.cancel_batch(batch_id=ours.pk, now=timezone.now())
        changed, _ = services.call_off_units(batch_id=ours.pk, now=timezone.now())
        cancel_s = time.perf_counter() - started
        started = time.perf_counter()
        with psycopg.connect(opts.database_url) as conn, conn.transaction():
            for statement in RAW_CANCEL:
                conn.execute(statement, {"batch": raw.pk})
        raw_s = time.perf_counter() - started

        for batch in (ours, raw):
            left = Replica.objects.filter(workunit__batch=batch, state__in=["unsent", "in_progress"]).count()
            active = WorkUnit.objects.filter(batch=batch, state="active").count()
            if left or active or changed != opts.units:
                raise SystemExit(f"{batch.name}: {left} replicas and {active} units left, {changed} changed")
    return {
        "benchmark": "batches",
        "units": opts.units,
        "replicas_out": sent,
        "progress_ms": round(progress_s * 1000, 1),
        "cancel_s": round(cancel_s, 2),
        "cancel_units_per_s": round(opts.units / cancel_s),
        "raw_cancel_s": round(raw_s, 2),
        "ratio_to_raw": round(raw_s / cancel_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    figures = run(parse_args(argv))
    print_pairs(
        [
            ("units per batch", f"{figures['units']:,} ({figures['replicas_out']:,} replicas out on a host)"),
            ("progress (admin page, API)", f"{figures['progress_ms']} ms"),
            (
                "cancel, ours (the lifecycle)",
                f"{figures['cancel_s']} s, {figures['cancel_units_per_s']:,} units/s",
            ),
            ("cancel, raw psycopg", f"{figures['raw_cancel_s']} s"),
            ("ratio to raw", f"{figures['ratio_to_raw']}"),
        ],
        width=34,
    )
    print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
