"""The simulator (``bench.simulate``): the same seed gives the same figures, another seed
other ones, and a small project with honest hosts finishes every unit right."""

from __future__ import annotations

import pytest

from bench import simulate
from bench.sim_population import Mix, population
from bench.sim_scenario import MAKESPAN_TOLERANCE, REAL_STACK, WRONG_TOLERANCE

SMALL = ["--hosts", "150", "--units", "600", "--task-hours", "0.5"]


def run(*extra: str) -> dict:
    figures = simulate.main([*SMALL, *extra])
    figures.pop("wall_seconds")
    return figures


def test_the_same_seed_gives_the_same_figures_and_another_seed_others():
    first, again, other = run("--seed", "7"), run("--seed", "7"), run("--seed", "8")

    assert first == again
    assert first != other
    assert first["units"] == 600 and first["unfinished"] == 0
    for key in ("makespan_ratio", "tail_ratio", "wrong_accepted", "credit_spread", "share_error", "wasted"):
        assert first[key] is not None, key


def test_honest_hosts_alone_get_every_unit_right_and_equal_credit_for_equal_work():
    figures = run("--mix", "erring=0", "--leaving", "0", "--scientists", "1")

    assert figures["wrong_accepted"] == 0 and figures["failed"] == 0
    assert figures["makespan_ratio"] >= 1.0, "nothing beats the ideal"
    assert figures["credit_spread"] < 0.2, "claims differ only by the hosts' benchmark noise"


def test_it_agrees_with_bench_scenario_on_the_real_stack_within_the_stated_tolerance():
    """The scenario's hosts (``--population scenario``), against what bench.scenario measured
    on the real stack (``sim_scenario.REAL_STACK``, docs/benchmarks.md "Calibration")."""
    runs = [
        simulate.main(["--population", "scenario", "--hosts", "100", "--units", "2000", "--scientists", "1",
                       "--seed", str(seed)])
        for seed in (1, 2, 3)
    ]  # fmt: skip
    ratio = sum(run["makespan_ratio"] for run in runs) / len(runs)

    assert abs(ratio - REAL_STACK["makespan_ratio"]) <= MAKESPAN_TOLERANCE, ratio
    for run in runs:
        assert abs(run["wrong_accepted"] - REAL_STACK["wrong_accepted_before_correction"]) <= WRONG_TOLERANCE


def test_the_population_has_the_mix_asked_for_and_refuses_a_bad_one():
    kinds = [host.kind for host in population(1000, seed=1, mix=Mix.parse("erring=0.1,colluding=0.05"))]

    assert kinds.count("erring") == 100 and kinds.count("colluding") == 50 and kinds.count("random") == 0
    with pytest.raises(ValueError, match="unknown"):
        Mix.parse("sloppy=0.1")
    with pytest.raises(ValueError):
        Mix.parse("erring=0.7,random=0.5")


def test_a_simulated_host_starts_its_tasks_in_the_clients_order_earliest_deadline_first():
    """As ``tessera_client.scheduling.run_order`` orders one project's tasks: a tail's backup,
    sent last with a shorter deadline, starts before the buffer it arrived behind."""
    from types import SimpleNamespace

    from bench.sim_crunch import start_order

    deadlines = {11: 9000.0, 12: 9500.0, 13: 2000.0, 14: 9000.0}
    world = SimpleNamespace(reps={rep: SimpleNamespace(deadline=d) for rep, d in deadlines.items()})

    assert start_order(world, [11, 12, 13, 14]) == [13, 11, 14, 12]


def test_it_shows_the_hosts_busy_while_work_waits_and_the_drain_after():
    figures = run("--seed", "3")
    shares = [share for _, share in figures["busy_share"]]
    hours = [hour for hour, _ in figures["busy_share"]]

    assert hours == sorted(hours) and hours[0] == 0.0
    assert all(0.0 <= share <= 1.0 for share in shares)
    assert max(shares) >= 0.9  # every core crunching while units wait to be sent
    assert shares[-1] < 0.9  # and fewer as the last replicas come back
    assert 0 < figures["drain_hours"] <= figures["makespan_seconds"] / 3600
