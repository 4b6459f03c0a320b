"""When the client may crunch: working hours, idleness, batteries, and the CPU throttle."""

from __future__ import annotations

import os
from datetime import time

import pytest

from tessera_client.conditions import Throttle, on_ac_power, suspend_reason, user_idle_seconds, within_hours
from tessera_client.prefs import Preferences


@pytest.mark.parametrize(
    ("now", "start", "end", "inside"),
    [
        (time(10, 0), "09:00", "17:00", True),
        (time(17, 0), "09:00", "17:00", False),
        (time(8, 59), "09:00", "17:00", False),
        (time(23, 30), "22:00", "06:00", True),
        (time(5, 59), "22:00", "06:00", True),
        (time(12, 0), "22:00", "06:00", False),
        (time(12, 0), "00:00", "00:00", True),
    ],
)
def test_working_hours_may_wrap_past_midnight(now, start, end, inside):
    assert within_hours(now, start, end) is inside


def test_each_reason_to_suspend():
    noon = time(12, 0)
    idle_only = Preferences(run_if_user_active=False, idle_minutes=5)

    assert suspend_reason(Preferences(), local_time=noon, idle_seconds=1, on_ac=True) is None
    assert suspend_reason(idle_only, local_time=noon, idle_seconds=60, on_ac=True) == "the computer is in use"
    assert suspend_reason(idle_only, local_time=noon, idle_seconds=600, on_ac=True) is None
    assert suspend_reason(Preferences(), local_time=noon, idle_seconds=None, on_ac=False) == "on batteries"
    assert (
        suspend_reason(Preferences(run_on_batteries=True), local_time=noon, idle_seconds=None, on_ac=False)
        is None
    )
    office = Preferences(start_hour="18:00", end_hour="08:00")
    assert (
        suspend_reason(office, local_time=noon, idle_seconds=None, on_ac=None)
        == "outside working hours 18:00-08:00"
    )


def test_what_the_platform_does_not_tell_never_suspends():
    idle_only = Preferences(run_if_user_active=False)

    assert suspend_reason(idle_only, local_time=time(12, 0), idle_seconds=None, on_ac=None) is None


def supply(root, name, **files):
    (root / name).mkdir(parents=True)
    for field, value in files.items():
        (root / name / field).write_text(value + "\n")


def test_power_supplies_as_linux_describes_them(tmp_path):
    laptop_plugged = tmp_path / "plugged"
    supply(laptop_plugged, "AC", type="Mains", online="1")
    supply(laptop_plugged, "BAT0", type="Battery", status="Charging")
    laptop_unplugged = tmp_path / "unplugged"
    supply(laptop_unplugged, "AC", type="Mains", online="0")
    supply(laptop_unplugged, "BAT0", type="Battery", status="Discharging")
    desktop = tmp_path / "desktop"
    supply(desktop, "ucsi-source-psy", type="USB", online="0")
    (tmp_path / "empty").mkdir()

    assert on_ac_power(laptop_plugged) is True
    assert on_ac_power(laptop_unplugged) is False
    assert on_ac_power(desktop) is True
    assert on_ac_power(tmp_path / "empty") is None
    assert on_ac_power(tmp_path / "missing") is None


def test_idle_time_is_the_age_of_the_newest_input(tmp_path):
    for name, age in (("event0", 300), ("event1", 120)):
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (1_000_000 - age, 1_000_000 - age))

    assert user_idle_seconds(now=1_000_000, patterns=(str(tmp_path / "event*"),)) == 120
    assert user_idle_seconds(now=1_000_000, patterns=(str(tmp_path / "none*"),)) is None


@pytest.mark.parametrize("percent", [10, 25, 50, 90])
def test_the_throttle_runs_its_share_of_each_period(percent):
    throttle = Throttle(percent, period=1.0)
    samples = [i / 1000 for i in range(10_000)]  # ten periods

    share = sum(throttle.running_at(t) for t in samples) / len(samples)

    assert abs(share - percent / 100) < 0.01


def test_the_throttle_says_when_it_next_flips():
    throttle = Throttle(30, period=1.0)

    assert throttle.next_change(5.1) == pytest.approx(5.3)
    assert throttle.next_change(5.5) == pytest.approx(6.0)
    assert Throttle(100).running_at(0.99) and Throttle(100).next_change(3.0) == float("inf")
