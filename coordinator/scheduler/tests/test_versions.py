"""Choosing an app version per host (scheduler.versions.choose): pure."""

from coordinator.scheduler.versions import EXPLORE_PROBABILITY, MIN_SPEED_SAMPLES, Option, choose
from coordinator.work.plan_classes import Usage


def option(version_id: int, projected: float, measured: float = 0.0, samples: int = 0) -> Option:
    return Option(version_id, Usage(cores=1.0, projected_flops=projected), measured, samples)


def test_the_fastest_projection_wins_until_speeds_are_measured():
    wasm, native = option(1, 2e9), option(2, 3e9)

    assert choose([wasm, native], draw=0.99).version_id == 2


def test_a_measured_speed_replaces_the_projection():
    # The native build was projected faster, but this host measured it slower than wasm.
    wasm = option(1, 2e9, measured=2.5e9, samples=MIN_SPEED_SAMPLES)
    native = option(2, 3e9, measured=1.5e9, samples=MIN_SPEED_SAMPLES)

    assert choose([wasm, native], draw=0.99).version_id == 1


def test_a_new_version_is_explored_now_and_then():
    measured = option(1, 2e9, measured=3e9, samples=50)
    new = option(2, 1e9)

    assert choose([measured, new], draw=EXPLORE_PROBABILITY / 2).version_id == 2
    assert choose([measured, new], draw=EXPLORE_PROBABILITY).version_id == 1
    assert choose([], draw=0.0) is None


def test_once_all_are_measured_there_is_no_exploring():
    slow = option(1, 9e9, measured=1e9, samples=MIN_SPEED_SAMPLES)
    fast = option(2, 1e9, measured=2e9, samples=MIN_SPEED_SAMPLES)

    assert all(choose([slow, fast], draw=d / 10).version_id == 2 for d in range(10))
