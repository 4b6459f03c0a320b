"""The client's scheduling policy: resource shares, work fetch and task limits."""

from __future__ import annotations

from tessera_client.scheduling import (
    MIN_CPU_LIMIT_SECONDS,
    Candidate,
    decayed,
    estimated_seconds,
    run_order,
    task_limits,
    work_request,
)


def candidates(project: str, count: int, *, seconds: float = 100.0, first_deadline: float = 1000.0):
    return [Candidate(project, i + 1, first_deadline + i, seconds) for i in range(count)]


def test_tasks_start_in_proportion_to_the_resource_shares():
    order = run_order(candidates("a", 30) + candidates("b", 30), {"a": 300, "b": 100}, {})

    first_eight = [c.project for c in order[:8]]
    assert first_eight.count("a") == 6 and first_eight.count("b") == 2


def test_a_project_that_got_more_cpu_lately_waits_its_turn():
    order = run_order(candidates("a", 3) + candidates("b", 3), {"a": 100, "b": 100}, {"a": 1000.0, "b": 0.0})

    assert [c.project for c in order] == ["b", "b", "b", "a", "a", "a"]


def test_inside_a_project_the_earliest_deadline_goes_first():
    tasks = [Candidate("a", 1, 500.0, 10), Candidate("a", 2, 100.0, 10), Candidate("a", 3, 300.0, 10)]

    assert [c.replica for c in run_order(tasks, {"a": 100}, {})] == [2, 3, 1]


def test_usage_halves_every_day():
    assert decayed(100.0, since=0.0, now=86_400.0) == 50.0
    assert decayed(100.0, since=10.0, now=5.0) == 100.0  # a clock set back never grows it


def test_an_empty_queue_asks_for_a_task_per_core_owed():
    assert work_request(cpus=4, share=0.5, buffer_hours=1, queued_tasks=0, queued_seconds=0) == {"tasks": 2}
    assert work_request(cpus=1, share=0.1, buffer_hours=1, queued_tasks=0, queued_seconds=0) == {"tasks": 1}


def test_a_queue_is_topped_up_to_the_project_share_of_the_buffer():
    asked = work_request(cpus=2, share=0.5, buffer_hours=1, queued_tasks=3, queued_seconds=600)

    assert asked == {"seconds": 3600 - 600}
    assert work_request(cpus=2, share=0.5, buffer_hours=1, queued_tasks=9, queued_seconds=3600) == {}


def test_limits_follow_the_unit_and_the_measured_speed():
    task = {"fpops_estimate": 1e12, "memory_bytes": 1 << 30, "max_output_bytes": 100 << 20}

    limits = task_limits(task, flops=1e9, deadline=123.0)

    assert estimated_seconds(task, 1e9) == 1000.0
    assert limits.cpu_seconds == 20_000
    assert limits.memory_bytes == (1 << 30) + (256 << 20)
    assert limits.file_bytes == 400 << 20
    assert limits.wall_deadline == 123.0
    small = task_limits({"fpops_estimate": 1.0}, flops=0.0, deadline=0.0)
    assert small.cpu_seconds == MIN_CPU_LIMIT_SECONDS and small.memory_bytes == 512 << 20
