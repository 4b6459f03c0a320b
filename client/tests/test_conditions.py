"""When the client may crunch: working hours, idleness, batteries, and the CPU-time throttle.

The device and power-supply readers are pointed at small trees under tmp_path laid out as
Linux lays out /dev and /sys/class/power_supply: test data for a pure reader.
"""

from __future__ import annotations

import os
import random
import sys
from datetime import time

import pytest

from tessera_client.conditions import Throttle, on_ac_power, suspend_reason, user_idle_seconds, within_hours
from tessera_client.prefs import Preferences

NOON = time(12, 0)


@pytest.mark.parametrize(
    ("now", "start", "end", "inside"),
    [
        (time(10, 0), "09:00", "17:00", True),
        (time(9, 0), "09:00", "17:00", True),
        (time(16, 59), "09:00", "17:00", True),
        (time(17, 0), "09:00", "17:00", False),
        (time(8, 59), "09:00", "17:00", False),
        (time(22, 0), "22:00", "06:00", True),
        (time(23, 30), "22:00", "06:00", True),
        (time(0, 0), "22:00", "06:00", True),
        (time(5, 59), "22:00", "06:00", True),
        (time(6, 0), "22:00", "06:00", False),
        (time(12, 0), "22:00", "06:00", False),
        (time(12, 0), "00:00", "00:00", True),
        (time(3, 17), "07:30", "07:30", True),
    ],
)
def test_working_hours_may_wrap_past_midnight(now, start, end, inside):
    assert within_hours(now, start, end) is inside


def test_each_reason_to_suspend():
    idle_only = Preferences(run_if_user_active=False, idle_minutes=5)
    office = Preferences(start_hour="09:00", end_hour="17:00")

    assert suspend_reason(Preferences(), local_time=NOON, idle_seconds=1, on_ac=True) is None
    assert suspend_reason(idle_only, local_time=NOON, idle_seconds=60, on_ac=True) == "the computer is in use"
    assert (
        suspend_reason(idle_only, local_time=NOON, idle_seconds=299, on_ac=True) == "the computer is in use"
    )
    assert suspend_reason(idle_only, local_time=NOON, idle_seconds=300, on_ac=True) is None
    assert suspend_reason(Preferences(), local_time=NOON, idle_seconds=0, on_ac=False) == "on batteries"
    assert (
        suspend_reason(Preferences(run_on_batteries=True), local_time=NOON, idle_seconds=0, on_ac=False)
        is None
    )
    assert (
        suspend_reason(office, local_time=time(20, 0), idle_seconds=0, on_ac=True)
        == "outside working hours 09:00-17:00"
    )
    assert suspend_reason(office, local_time=NOON, idle_seconds=0, on_ac=True) is None


def test_what_the_platform_does_not_tell_never_suspends():
    strict = Preferences(run_if_user_active=False, run_on_batteries=False, idle_minutes=60)

    assert suspend_reason(strict, local_time=NOON, idle_seconds=None, on_ac=None) is None
    assert suspend_reason(strict, local_time=NOON, idle_seconds=None, on_ac=False) == "on batteries"
    assert suspend_reason(strict, local_time=NOON, idle_seconds=5, on_ac=None) == "the computer is in use"


def supply(root, name, **files):
    (root / name).mkdir(parents=True)
    for field, value in files.items():
        (root / name / field).write_text(value + "\n")


def test_mains_online_means_ac_power(tmp_path):
    supply(tmp_path, "AC", type="Mains", online="1")
    supply(tmp_path, "BAT0", type="Battery", status="Charging")

    assert on_ac_power(tmp_path) is True


def test_a_battery_discharging_with_no_mains_online_means_batteries(tmp_path):
    unplugged = tmp_path / "unplugged"
    supply(unplugged, "AC", type="Mains", online="0")
    supply(unplugged, "BAT0", type="Battery", status="Discharging")
    battery_only = tmp_path / "battery-only"
    supply(battery_only, "BAT1", type="Battery", status="Discharging")

    assert on_ac_power(unplugged) is False
    assert on_ac_power(battery_only) is False


def test_a_computer_without_a_battery_is_on_mains(tmp_path):
    supply(tmp_path, "ucsi-source-psy-1", type="USB", online="0")
    supply(tmp_path, "hidpp_battery_0", type="Battery", scope="Device", status="Discharging")  # a mouse

    assert on_ac_power(tmp_path) is True


def test_a_power_supply_tree_that_says_nothing_cannot_tell(tmp_path):
    (tmp_path / "empty").mkdir()
    supply(tmp_path / "typeless", "weird")
    supply(tmp_path / "full", "BAT0", type="Battery", status="Full")  # no mains entry at all

    assert on_ac_power(tmp_path / "empty") is None
    assert on_ac_power(tmp_path / "typeless") is None
    assert on_ac_power(tmp_path / "full") is None
    assert on_ac_power(tmp_path / "missing") is None


def device(dev, name, atime):
    path = dev / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (atime, atime))


def test_idle_time_is_the_age_of_the_newest_input(tmp_path):
    now = 1_000_000.0
    device(tmp_path, "input/event0", now - 900)
    device(tmp_path, "input/event3", now - 300)
    device(tmp_path, "tty1", now - 600)
    device(tmp_path, "pts/2", now - 120)
    device(tmp_path, "pts/ptmx", now - 1)  # not a terminal anyone types into
    device(tmp_path, "null", now - 1)

    assert user_idle_seconds(now=now, dev=tmp_path) == 120
    os.utime(tmp_path / "tty1", (now - 30, now - 30))
    assert user_idle_seconds(now=now, dev=tmp_path) == 30


def test_input_newer_than_now_means_not_idle(tmp_path):
    device(tmp_path, "input/event0", 2_000_000)

    assert user_idle_seconds(now=1_000_000, dev=tmp_path) == 0


def test_no_input_devices_means_idleness_is_unknown(tmp_path):
    device(tmp_path, "null", 5)

    assert user_idle_seconds(now=1_000_000, dev=tmp_path) is None
    assert user_idle_seconds(now=1_000_000, dev=tmp_path / "missing") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /dev and /sys")
def test_the_real_computer_is_read_without_error():
    idle = user_idle_seconds()
    assert idle is None or idle >= 0
    assert on_ac_power() in (True, False, None)


def running_share(throttle: Throttle, start: float, end: float) -> float:
    """The running fraction of [start, end), walked from flip to flip with next_change."""
    t, running = start, 0.0
    while t < end:
        flip = min(throttle.next_change(t), end)
        assert flip > t
        if throttle.running_at(t):
            running += flip - t
        t = flip
    return running / (end - start)


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 73, 90, 99])
def test_the_throttle_runs_its_share_of_many_periods(percent):
    throttle = Throttle(percent, period=1.0)
    samples = [i / 100 for i in range(100 * 100)]  # a hundred periods

    sampled = sum(throttle.running_at(t) for t in samples) / len(samples)

    assert abs(sampled - percent / 100) < 0.01
    assert abs(running_share(throttle, 0.0, 100.0) - percent / 100) < 0.01
    assert abs(running_share(throttle, 1.7e9 + 0.37, 1.7e9 + 200.37) - percent / 100) < 0.01


def test_at_100_percent_the_throttle_never_stops():
    throttle = Throttle(100)

    assert all(throttle.running_at(t / 7) for t in range(10_000))
    assert throttle.next_change(3.0) == float("inf")


def test_the_throttle_flips_exactly_when_it_says():
    throttle = Throttle(30, period=1.0)

    assert throttle.next_change(5.1) == pytest.approx(5.3)
    assert throttle.next_change(5.5) == pytest.approx(6.0)
    rng = random.Random(4)
    for _ in range(2000):
        t = rng.choice([rng.uniform(0, 1000), rng.uniform(1.6e9, 1.8e9)])
        flip = throttle.next_change(t)
        assert flip > t and throttle.running_at(flip) is not throttle.running_at(t)


def test_throttle_settings_out_of_range_are_held_in_range():
    assert Throttle(0).share == 0.01 and Throttle(250).share == 1.0
    with pytest.raises(ValueError, match="period"):
        Throttle(50, period=0)
