"""The share of time this computer crunches (tessera_client.time_stats), as BOINC's time_stats."""

from __future__ import annotations

import json
import math

import pytest

from tessera_client.time_stats import MAX_STEP_SECONDS, MEMORY_SECONDS, SAVE_SECONDS, TimeStats

DAY = 86400.0


def run(stats: TimeStats, start: float, seconds: float, *, computing: bool = True, step: float = 60.0):
    """The daemon's loop looking every ``step`` seconds for ``seconds``; returns the end."""
    now = start
    while now < start + seconds:
        stats.tick(now, computing=computing)
        now += step
    stats.tick(now, computing=computing)
    return now


def test_a_fresh_client_counts_as_always_on_and_active(tmp_path):
    stats = TimeStats(tmp_path / "time_stats.json")

    assert stats.to_json() == {"on_fraction": 1.0, "active_fraction": 1.0}


def test_time_between_runs_counts_as_off_and_suspended_time_as_inactive(tmp_path):
    path = tmp_path / "time_stats.json"
    stats = TimeStats(path)
    end = run(stats, 0.0, DAY)
    stats.save(end)

    later = TimeStats(path)  # the client was stopped for two days, then ran suspended for one
    run(later, end + 2 * DAY, DAY, computing=False, step=600.0)

    off = math.exp(-2 * DAY / MEMORY_SECONDS)  # what the two days off left of "on"
    expected_on = 1.0 * off  # then one day on
    expected_on = expected_on * math.exp(-DAY / MEMORY_SECONDS) + (1 - math.exp(-DAY / MEMORY_SECONDS))
    assert later.on_fraction == pytest.approx(expected_on, rel=1e-6)
    assert later.active_fraction == pytest.approx(math.exp(-DAY / MEMORY_SECONDS), rel=1e-6)
    assert 0.0 < later.active_fraction < 1.0 and 0.0 < later.on_fraction < 1.0


def test_a_computer_asleep_while_the_client_ran_counts_the_sleep_as_off(tmp_path):
    stats = TimeStats(tmp_path / "time_stats.json")
    stats.tick(0.0, computing=True)
    stats.tick(MAX_STEP_SECONDS + 10 * DAY, computing=True)  # the laptop's lid was shut

    assert stats.on_fraction < 0.5
    assert stats.active_fraction == 1.0, "no time counted as on, so none as inactive"


def test_a_clock_set_back_counts_nothing_and_damage_reads_as_the_defaults(tmp_path):
    path = tmp_path / "time_stats.json"
    stats = TimeStats(path)
    stats.tick(1000.0, computing=False)
    before = (stats.on_fraction, stats.active_fraction)
    stats.tick(500.0, computing=False)
    assert (stats.on_fraction, stats.active_fraction) == before

    path.write_text(json.dumps({"on_fraction": "lots", "active_fraction": 7, "last": "yesterday"}))
    damaged = TimeStats(path)
    assert (damaged.on_fraction, damaged.active_fraction, damaged.last) == (1.0, 1.0, None)


def test_the_file_is_written_every_few_minutes_not_every_look(tmp_path):
    path = tmp_path / "time_stats.json"
    stats = TimeStats(path)
    stats.tick(SAVE_SECONDS, computing=True)
    written = path.stat().st_mtime_ns
    path.write_text("{}")  # were it written again, this would be replaced

    stats.tick(SAVE_SECONDS + 1, computing=True)

    assert path.read_text() == "{}" and written > 0
