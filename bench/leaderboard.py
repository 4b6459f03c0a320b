"""The leaderboard pages on 100,000 volunteers: how long a page view takes, and whether it scans.

Run ``python -m bench.leaderboard`` (``--volunteers`` for the size).

On its own PostgreSQL database (the name must contain "bench"), migrated by the coordinator's
own migrations, it makes that many volunteers with credit, then renders in this process, with
Django's test client, the volunteers' board: the top page by total credit, a page a thousand
pages deep (following the signed cursor), the top by recent average credit, and a search by
name. Each is the median of 15 views, against the same rows read with one raw SQL query
(the ceiling), and PostgreSQL's plan for the page's query is checked for a sequential scan of
the volunteers. It prints a table and ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bench.database import coordinator_env, migrate, recreate_database, setup_django
from bench.report import print_json_line, print_pairs

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tessera_bench_leaderboard"
VIEWS = 15
RAW_TOP = """
SELECT v.user_id, u.username, v.total_credit, v.rac
FROM accounts_volunteer v JOIN auth_user u ON u.id = v.user_id
WHERE v.total_credit > 0 ORDER BY v.total_credit DESC, v.user_id LIMIT 51
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=100_000)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    return parser.parse_args(argv)


def seed(count: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from coordinator.accounts.models import Volunteer
    from coordinator.standing.credit import rac_rank_key

    User = get_user_model()
    now = timezone.now()
    for start in range(0, count, 5000):
        users = User.objects.bulk_create(
            [User(username=f"volunteer{n:06d}", password="!") for n in range(start, min(count, start + 5000))]
        )
        Volunteer.objects.bulk_create(
            [
                Volunteer(
                    user=user,
                    total_credit=Decimal((n * 7919) % 1_000_003) / 10,
                    rac=float((n * 104729) % 10_007),
                    rac_time=now,
                    rac_rank=rac_rank_key(float((n * 104729) % 10_007), now),
                )
                for n, user in enumerate(users, start=start)
            ]
        )


def median_ms(client: Any, url: str) -> tuple[float, str]:
    times, body = [], ""
    for _ in range(VIEWS):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
        body = response.content.decode()
    return statistics.median(times) * 1000, body


def next_link(body: str) -> str:
    return body.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")


def raw_ms(url: str) -> float:
    with psycopg.connect(url) as conn:
        times = []
        for _ in range(VIEWS):
            started = time.perf_counter()
            conn.execute(RAW_TOP).fetchall()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def scans_volunteers(url: str) -> bool:
    """Does the board's top-page query read the volunteers table sequentially?"""
    from coordinator.validation.selectors import Order, volunteer_leaderboard

    query = str(volunteer_leaderboard(order=Order.TOTAL).rows[:51].query)
    with psycopg.connect(url) as conn:
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query.replace("%", "%%")).fetchall())
    return "Seq Scan on accounts_volunteer" in plan


def run(opts: argparse.Namespace) -> dict[str, Any]:
    recreate_database(opts.database_url)
    with tempfile.TemporaryDirectory(prefix="tessera-leaderboard-bench-") as folder:
        env = coordinator_env(opts.database_url, Path(folder) / "media", batch=1)
        env["ALLOWED_HOSTS"] = "testserver"
        migrate(env)
        setup_django(env)
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        seeded = time.perf_counter()
        seed(opts.volunteers)
        seed_s = time.perf_counter() - seeded
        with psycopg.connect(opts.database_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
        client = Client()
        top_ms, _ = median_ms(client, "/leaderboards/volunteers")
        link, depth = "/leaderboards/volunteers", min(1000, opts.volunteers // 50 - 1)
        for _ in range(depth):  # deep down the board, one cursor after another
            link = next_link(client.get(link).content.decode())
        deep_ms, _ = median_ms(client, link)
        recent_ms, _ = median_ms(client, "/leaderboards/volunteers?order=recent")
        wanted = f"volunteer{opts.volunteers - 10:06d}"  # the search matches it and nine others
        search_ms, found = median_ms(client, f"/leaderboards/volunteers?search={wanted[:-1]}")
        assert wanted in found
        raw = raw_ms(opts.database_url)
        scan = scans_volunteers(opts.database_url)
    return {
        "benchmark": "leaderboard",
        "volunteers": opts.volunteers,
        "seed_s": round(seed_s, 1),
        "top_page_ms": round(top_ms, 2),
        "deep_page": depth + 1,
        "deep_page_ms": round(deep_ms, 2),
        "recent_page_ms": round(recent_ms, 2),
        "search_ms": round(search_ms, 2),
        "raw_top_query_ms": round(raw, 2),
        "top_page_to_raw_query": round(top_ms / raw, 1),
        "sequential_scan": scan,
    }


def main(argv: list[str] | None = None) -> int:
    figures = run(parse_args(argv))
    print_pairs(
        [
            ("volunteers", f"{figures['volunteers']:,}"),
            ("top page (total credit)", f"{figures['top_page_ms']} ms"),
            ("page " + format(figures["deep_page"], ",") + " (by cursor)", f"{figures['deep_page_ms']} ms"),
            ("top page (recent average)", f"{figures['recent_page_ms']} ms"),
            ("search by name", f"{figures['search_ms']} ms"),
            ("raw query for the top page", f"{figures['raw_top_query_ms']} ms"),
            ("sequential scan of volunteers", f"{figures['sequential_scan']}"),
        ],
        width=34,
    )
    print_json_line(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
