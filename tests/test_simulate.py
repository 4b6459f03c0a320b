"""The simulator (``bench.simulate``): the same seed gives the same figures, another seed
other ones, and a small project with honest hosts finishes every unit right."""

from __future__ import annotations

import pytest

from bench import simulate
from bench.sim_population import Mix, population

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


def test_the_population_has_the_mix_asked_for_and_refuses_a_bad_one():
    kinds = [host.kind for host in population(1000, seed=1, mix=Mix.parse("erring=0.1,colluding=0.05"))]

    assert kinds.count("erring") == 100 and kinds.count("colluding") == 50 and kinds.count("random") == 0
    with pytest.raises(ValueError, match="unknown"):
        Mix.parse("sloppy=0.1")
    with pytest.raises(ValueError):
        Mix.parse("erring=0.7,random=0.5")
