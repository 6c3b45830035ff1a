"""Run and task run records: what their timings mean, and the fast constructor of cached task runs."""

from __future__ import annotations

import dataclasses

import io

from rich.console import Console

from flowkit.cli.progress import summary_table, timing
from flowkit.records import Attempt, Run, TaskRun, cached_task_run, completed_task_run


def failed_after_retries() -> TaskRun:
    history = (Attempt(1, 100.0, 100.5, "ValueError: a"), Attempt(2, 102.5, 103.0, "ValueError: b"),
               Attempt(3, 107.0, 108.0, "ValueError: c"))
    return TaskRun("r/t", "r", "t", "t", "failed", 3, 100.0, 108.0, error="ValueError: c", history=history)


def test_a_failed_tasks_run_time_is_its_attempts_and_the_retry_waits_are_apart():
    tr = failed_after_retries()
    assert tr.duration == 8.0  # first start to last end, waits included
    assert tr.run_time == 2.0 and tr.waited == 6.0
    assert timing(tr) == " in 2.00s over 3 attempts, 6.00s waiting to retry"


def test_a_cached_task_has_no_run_time_of_its_own():
    loaded = TaskRun("r/c", "r", "c", "c", "cached", 0, 200.0, 200.25, cache_key="k1", artifact_id="a" * 64)
    assert loaded.duration == 0.25  # loading the value
    assert loaded.run_time is None and loaded.waited is None and timing(loaded) == ""
    once = TaskRun("r/d", "r", "d", "d", "completed", 1, 5.0, 6.5, history=(Attempt(1, 5.0, 6.5),))
    assert (once.run_time, once.waited) == (1.5, 0.0)


def render(table) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(table)
    return console.file.getvalue()


def test_the_summary_table_labels_a_cached_tasks_original_time_and_never_shows_the_loads():
    loaded = TaskRun("r/c", "r", "c", "c", "cached", 0, 200.0, 200.25, cache_key="k1", artifact_id="a" * 64)
    run = Run("r", "f", "failed", {}, 100.0, 210.0, (loaded, failed_after_retries()))
    plain = render(summary_table(run))
    row = next(line for line in plain.splitlines() if "cached" in line)
    assert "250ms" not in row and "ms" not in row and "s when computed" not in row
    failed_row = next(line for line in plain.splitlines() if "failed" in line)
    assert "2.00s" in failed_row and "6.00s" in failed_row and "retry waits" in plain
    origin = TaskRun("r0/c", "r0", "c", "c", "completed", 1, 1.0, 4.0, history=(Attempt(1, 1.0, 4.0),))
    with_origin = render(summary_table(run, computed_by={"k1": origin}))
    assert "3.00s when computed" in next(line for line in with_origin.splitlines() if "cached" in line)


def test_a_cached_task_run_built_fast_equals_the_dataclass_one_field_by_field():
    fast = cached_task_run("r/n", "r", "n", "task", "key", "art", "r0/n")
    slow = TaskRun("r/n", "r", "n", "task", "cached", 0, None, None, "key", "art", source="r0/n")
    assert [f.name for f in dataclasses.fields(TaskRun)] == [
        "id", "run_id", "node", "name", "status", "attempts", "started", "ended", "cache_key", "artifact_id",
        "error", "traceback", "worker", "exception", "history", "logs", "source", "tracked", "checks"]  # the setters' order
    for field in dataclasses.fields(TaskRun):
        assert getattr(fast, field.name) == getattr(slow, field.name), field.name
    assert fast == slow and type(fast) is TaskRun


def test_a_completed_task_run_built_fast_equals_the_dataclass_one_field_by_field():
    history = (Attempt(1, 5.0, 6.5),)
    fast = completed_task_run("r/n", "r", "n", "task", 1, 5.0, 6.5, "key", "art", "w1", history, "out", (), ())
    slow = TaskRun("r/n", "r", "n", "task", "completed", 1, 5.0, 6.5, "key", "art", worker="w1", history=history,
                   logs="out")
    for field in dataclasses.fields(TaskRun):
        assert getattr(fast, field.name) == getattr(slow, field.name), field.name
    assert fast == slow and type(fast) is TaskRun
