"""Backups for idle hosts (``work.speculation``): which replicas out an idle reliable host's
free cores back up, as pure functions, by example and by property."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.work.lifecycle import ValidateState
from coordinator.work.speculation import Out, UnitOut, backups_for_idle_host, expected_back, results_needed

NOW = 1_796_644_800.0  # 2026-12-07 12:00 UTC, in seconds since the epoch
USUAL = 3600.0  # the app's usual turnaround
FACTOR = 2.0  # TAIL_OVERDUE_FACTOR


def out(
    replica_id: int, *, sent_ago: float, host_seconds: float = 0.0, overdue_in: float | None = None
) -> Out:
    """A replica sent ``sent_ago`` seconds ago; overdue FACTOR times its host's time after it
    was sent (or ``overdue_in`` seconds from now)."""
    sent = NOW - sent_ago
    overdue = NOW + overdue_in if overdue_in is not None else sent + FACTOR * (host_seconds or USUAL)
    return Out(replica_id, sent, overdue, host_seconds)


def choose(units: list[UnitOut], *, own: float = 600.0, count: int = 1) -> list[int]:
    return backups_for_idle_host(units, now=NOW, own_seconds=own, overdue_factor=FACTOR, count=count)


def test_a_replica_is_expected_after_its_hosts_usual_time_or_what_its_overdue_time_says():
    measured = out(1, sent_ago=600, host_seconds=7200)
    unmeasured = out(2, sent_ago=600, overdue_in=3000)  # sent + 2 x 1,800 s

    assert expected_back(measured, now=NOW, usual=USUAL, overdue_factor=FACTOR) == NOW + 6600
    assert expected_back(unmeasured, now=NOW, usual=USUAL, overdue_factor=FACTOR) == NOW + 1200


def test_a_replica_out_longer_than_its_host_usually_takes_needs_as_long_again_as_it_has_been_out():
    # Off times are heavy-tailed (Javadi et al.): the longer a late replica has been out, the
    # longer it is expected to stay out; at least the app's usual time from now.
    # (neither is overdue yet, so neither has had its backup)
    just_late = out(1, sent_ago=2000, host_seconds=1800, overdue_in=600)
    long_late = out(2, sent_ago=9000, host_seconds=1800, overdue_in=600)

    assert expected_back(just_late, now=NOW, usual=USUAL, overdue_factor=FACTOR) == NOW + USUAL
    assert expected_back(long_late, now=NOW, usual=USUAL, overdue_factor=FACTOR) == NOW + 9000
    assert choose([UnitOut(1, 1, USUAL, (just_late,)), UnitOut(2, 1, USUAL, (long_late,))]) == [2]


def test_a_unit_in_dispute_needs_one_more_result_not_none():
    INIT, VALID, INVALID, INCONCLUSIVE = (
        ValidateState.INIT,
        ValidateState.VALID,
        ValidateState.INVALID,
        ValidateState.INCONCLUSIVE,
    )
    assert results_needed(2, []) == 2
    assert results_needed(2, [INIT]) == 1  # not judged yet: it may well agree
    assert results_needed(2, [INIT, VALID]) == 0
    assert results_needed(2, [INVALID, INIT]) == 1
    assert results_needed(2, [INCONCLUSIVE, INCONCLUSIVE]) == 1  # they disagreed: one may get a match
    assert results_needed(3, [INCONCLUSIVE, INCONCLUSIVE, INVALID]) == 2


def test_the_units_that_would_come_back_last_are_backed_up_first_one_per_free_core():
    soon = UnitOut(1, 1, USUAL, (out(10, sent_ago=100, host_seconds=900),))  # back in 800 s
    slow = UnitOut(2, 1, USUAL, (out(20, sent_ago=100, host_seconds=20000),))  # in 19,900 s
    late = UnitOut(3, 1, USUAL, (out(30, sent_ago=2000, host_seconds=1800),))  # late: in 3,600 s

    assert choose([soon, slow, late], count=1) == [20]
    assert choose([soon, slow, late], count=2) == [20, 30]
    assert choose([soon, slow, late], count=3) == [20, 30, 10]
    assert choose([soon, slow, late], own=1000, count=3) == [20, 30], "it would not beat a replica due sooner"


def test_a_unit_needing_two_results_waits_for_its_second_replica_and_only_the_beaten_ones_are_backed_up():
    quick = out(1, sent_ago=100, host_seconds=300)
    stuck = out(2, sent_ago=100, host_seconds=30000)
    needs_two = UnitOut(7, 2, USUAL, (quick, stuck))
    needs_one = UnitOut(8, 1, USUAL, (quick, stuck))

    assert choose([needs_two]) == [2]
    assert choose([needs_one]) == [], "its first result is back in 200 s: no backup beats that"


def test_nothing_is_backed_up_twice_nor_for_a_unit_that_needs_nothing_or_awaits_unsent_replicas():
    overdue = out(1, sent_ago=9000, host_seconds=1800, overdue_in=-100)
    backup = out(2, sent_ago=60, host_seconds=20000)
    already = UnitOut(1, 1, USUAL, (overdue, backup))
    settled = UnitOut(2, 0, USUAL, (out(3, sent_ago=100, host_seconds=20000),))
    unsent = UnitOut(3, 2, USUAL, (out(4, sent_ago=100, host_seconds=20000),))

    assert choose([already]) == [2], "the overdue one has its backup already; the slow backup gets one"
    assert choose([settled, unsent], count=5) == []
    assert choose([already], count=0) == []


@st.composite
def units(draw) -> list[UnitOut]:
    """Up to 12 units, each with up to 4 replicas out (ids unique across them)."""
    made, next_id = [], 1
    for unit_id in range(draw(st.integers(0, 12))):
        replicas = []
        for _ in range(draw(st.integers(0, 4))):
            sent_ago = draw(st.floats(0, 50_000))
            host_seconds = draw(st.sampled_from([0.0, 300.0, 3600.0, 20_000.0]))
            overdue_in = draw(st.none() | st.floats(-10_000, 50_000))
            replicas.append(out(next_id, sent_ago=sent_ago, host_seconds=host_seconds, overdue_in=overdue_in))
            next_id += 1
        made.append(UnitOut(unit_id, draw(st.integers(0, 3)), USUAL, tuple(replicas)))
    return made


@settings(max_examples=300, deadline=None)
@given(units=units(), own=st.floats(0, 40_000), count=st.integers(0, 8))
def test_at_most_count_units_and_only_replicas_not_yet_overdue_that_the_host_would_beat(units, own, count):
    chosen = choose(units, own=own, count=count)
    unit_of = {o.replica_id: u for u in units for o in u.out}
    replica = {o.replica_id: o for u in units for o in u.out}
    beaten_by = NOW + own

    assert len(chosen) == len(set(chosen))
    assert len({unit_of[r].unit_id for r in chosen}) <= count
    for replica_id in chosen:
        unit, backed_up = unit_of[replica_id], replica[replica_id]
        assert backed_up.overdue_at > NOW, "one already overdue has its backup"
        assert expected_back(backed_up, now=NOW, usual=USUAL, overdue_factor=FACTOR) > beaten_by
        assert 1 <= unit.needed <= len(unit.out)
    assert choose(units, own=own, count=count) == chosen, "the same figures, the same choice"
