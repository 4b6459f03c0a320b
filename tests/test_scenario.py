"""The scenario runner's guarantees, in a shorter run: 300 units, 30 simulated hosts of every
kind (vanishing, random cheaters, colluders, replayers, crashers, slow), every coordinator,
worker and the scheduler SIGKILLed once and PostgreSQL restarted, on the production stack.

The full run and its figures are in docs/reliability.md (``python -m bench.scenario``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import require_services

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.restarts_postgres
SHORT_RUN = ["--units", "300", "--hosts", "30", "--task-seconds", "0.2", "--timeout", "600"]


@pytest.fixture(scope="module")
def figures() -> dict:
    if os.environ.get("DATABASE_URL"):
        pytest.skip(
            "runs in the SQLite pass only: the scenario restarts the PostgreSQL server, which would"
            " cut this pass's own test database connection (its cluster has a database of its own)"
        )
    require_services("the scenario")
    run = subprocess.run(
        [sys.executable, "-m", "bench.scenario", *SHORT_RUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = run.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), f"no figures:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    print(run.stdout)  # the table, in the test's report when it fails
    return json.loads(lines[-1])


def test_every_unit_ends_validated_or_failed_with_a_reason(figures):
    assert figures["units_total"] == 300
    assert figures["units_unfinished"] == 0 and figures["batch_state"] == "done"
    assert figures["units_completed"] + figures["units_failed"] == 300
    assert figures["guarantees"]["every_unit_ends_with_a_reason"]


def test_no_result_is_credited_twice_and_the_ledger_matches_the_totals(figures):
    assert figures["double_credits"] == 0
    assert figures["guarantees"]["no_double_credit"]
    assert figures["ledger_verified"] and figures["ledger_totals_match"]


def test_random_cheaters_get_no_canonical_result_and_no_credit(figures):
    assert figures["hosts"].get("random", 0) >= 2
    assert figures["wrong_accepted_random"] == 0 and figures["credit_to_cheaters"]["random"] == 0
    assert figures["detect"]["random"]["detected"] == figures["hosts"]["random"]


def test_no_finished_result_of_an_honest_host_is_lost_across_the_crashes(figures):
    assert figures["results_acknowledged"] > 300
    assert figures["lost_results"] == 0 and figures["guarantees"]["no_honest_result_lost"]


def test_every_fault_struck_and_the_supervisor_brought_each_service_back(figures):
    struck = {fault["fault"] for fault in figures["faults"]}
    assert struck == {
        "kill web0",
        "kill worker0",
        "kill scheduler",
        "restart postgresql",
        "kill web1",
        "kill worker1",
    }
    assert {"web0", "web1", "worker0", "worker1", "scheduler"} <= set(figures["restarted"])


def test_replays_and_reports_of_other_hosts_replicas_are_all_refused(figures):
    assert figures["replays"] > 0 and figures["replays_accepted"] == 0
    assert figures["foreign_accepted"] == 0
    assert figures["crashes"] > 0 and figures["vanished"] > 0


def test_the_time_split_clips_each_hosts_time_to_the_batch_and_leaves_out_those_that_vanished():
    from bench.scenario_report import time_split

    honest = {
        "kind": "honest",
        "vanished": False,
        "spent": [("call", 5, 10), ("crunch", 10, 30), ("no work", 30, 40)],
    }
    gone = {"kind": "vanishing", "vanished": True, "spent": [("crunch", 10, 20)]}
    cheater = {"kind": "random", "vanished": False, "spent": [("crunch", 10, 20)]}
    split = time_split([honest, gone, cheater], start=10, end=30, windows=2)
    assert split["hosts"] == 1
    assert (
        split["share"]["crunch"] == 1.0 and split["share"]["call"] == 0.0 and split["share"]["other"] == 0.0
    )
    assert split["crunching_by_tenth"] == [1.0, 1.0]
    split = time_split([honest], start=0, end=40, windows=4)
    assert split["share"] == {
        "crunch": 0.5,
        "call": 0.125,
        "back off": 0.0,
        "no work": 0.25,
        "crash": 0.0,
        "other": 0.125,
    }
    assert split["crunching_by_tenth"] == [0.0, 1.0, 1.0, 0.0]


def test_the_correct_hosts_time_is_accounted_for(figures):
    split = figures["time_split"]
    assert split["hosts"] >= 10
    assert 0 < split["share"]["crunch"] < 1 and split["share"]["call"] > 0
    assert abs(sum(split["share"].values()) - 1) < 0.01
