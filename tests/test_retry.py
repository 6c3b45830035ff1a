"""Retries, timeouts and failure semantics: exact schedules from an injected clock."""

from __future__ import annotations

import threading
import time
import traceback

import pytest

import flowkit as fk
from conftest import CALLS, Flaky, inc, one
from flowkit.retry import retry_delay, should_retry


def opts(**kw) -> fk.TaskOptions:
    return fk.TaskOptions(**kw)


def test_delay_schedule_is_a_pure_function_of_the_options():
    o = opts(retries=5, retry_delay=1, backoff=2)
    assert [retry_delay(o, k) for k in range(5)] == [1, 2, 4, 8, 16]
    assert [retry_delay(opts(retry_delay=[1, 5]), k) for k in range(3)] == [1, 5, 5]
    capped = opts(retry_delay=1, backoff=3, max_retry_delay=5)
    assert [retry_delay(capped, k) for k in range(4)] == [1, 3, 5, 5]
    jittered = opts(retry_delay=10, jitter=0.5)
    assert retry_delay(jittered, 0, rand=0.0) == 10 and retry_delay(jittered, 0, rand=0.5) == 12.5
    assert retry_delay(opts(), 3) == 0.0


def test_retry_filters():
    o = opts(retries=2, retry_on=(ConnectionError,))
    assert should_retry(o, ConnectionResetError(), 1)
    assert not should_retry(o, ValueError(), 1)
    assert not should_retry(o, ConnectionError(), 3)  # 3 attempts made: retries exhausted
    pred = opts(retries=2, retry_on=lambda e: "429" in str(e))
    assert should_retry(pred, RuntimeError("HTTP 429"), 1) and not should_retry(pred, RuntimeError("404"), 1)
    broken = opts(retries=2, retry_on=lambda e: 1 / 0)
    assert not should_retry(broken, RuntimeError(), 1)
    assert not should_retry(opts(retries=2), SystemExit(1), 1)


def flaky_flow(flaky: Flaky, clock: fk.ManualClock, **options):
    t = fk.task(name="fetch", **options)(flaky.__call__)

    @fk.flow(clock=clock)
    def f():
        return inc(t())

    return f


def test_retries_follow_the_exact_delay_schedule_without_sleeping():
    clock = fk.ManualClock()
    flaky = Flaky(failures=3)
    f = flaky_flow(flaky, clock, retries=4, retry_delay=1.5, backoff=2)
    run = f.run()
    assert run.result() == 43
    assert clock.sleeps == [1.5, 3.0, 6.0]
    tr = run.task_run("fetch")
    assert (tr.status, tr.attempts) == ("completed", 4)
    assert [a.error for a in tr.history] == [
        "ConnectionError: flaky failure 1", "ConnectionError: flaky failure 2", "ConnectionError: flaky failure 3",
        None]
    assert [a.number for a in tr.history] == [1, 2, 3, 4]
    assert tr.started == tr.history[0].started and tr.ended == tr.history[-1].ended


def test_jitter_spreads_delays_within_bounds():
    clock = fk.ManualClock()
    f = flaky_flow(Flaky(failures=5), clock, retries=5, retry_delay=2, jitter=0.25)
    f.run()
    assert len(clock.sleeps) == 5 and all(2.0 <= d <= 2.5 for d in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


def test_exhausted_retries_fail_with_every_attempt_recorded_and_the_original_traceback():
    clock = fk.ManualClock()
    f = flaky_flow(Flaky(failures=10), clock, retries=2, retry_delay=[1, 7])
    run = f.run()
    assert run.status == "failed" and clock.sleeps == [1, 7]
    tr = run.task_run("fetch")
    assert (tr.status, tr.attempts, tr.error) == ("failed", 3, "ConnectionError: flaky failure 3")
    assert run.task_run("inc").status == "skipped"
    with pytest.raises(fk.FlowRunError) as info:
        run.result()
    frames = traceback.extract_tb(info.value.__cause__.__traceback__)
    assert frames[-1].name == "__call__"  # Flaky.__call__, where it was raised
    assert "failed: fetch after 3 attempts: ConnectionError: flaky failure 3" in run.summary()


def test_exceptions_outside_retry_on_fail_at_once():
    clock = fk.ManualClock()
    f = flaky_flow(Flaky(failures=1, exc=KeyError), clock, retries=5, retry_on=ConnectionError)
    run = f.run()
    assert run.task_run("fetch").attempts == 1 and clock.sleeps == []


def test_attempts_are_persisted_in_the_store():
    clock = fk.ManualClock()
    flaky_flow(Flaky(failures=2), clock, retries=2).run()
    (stored,) = [tr for tr in fk.runs(limit=1)[0].task_runs if tr.node == "fetch"]
    assert stored.attempts == 3
    assert [a.error for a in stored.history] == ["ConnectionError: flaky failure 1",
                                                 "ConnectionError: flaky failure 2", None]


def test_timeout_fails_the_attempt_and_the_run_does_not_wait_for_it():
    release = threading.Event()

    @fk.task(timeout=0.2, retries=1)
    def hang():
        release.wait(30)
        return "late"

    @fk.flow(clock=fk.ManualClock())
    def f():
        return hang(), one()

    start = time.monotonic()
    run = f.run()
    elapsed = time.monotonic() - start
    release.set()
    tr = run.task_run("hang")
    assert (tr.status, tr.attempts) == ("failed", 2)
    assert tr.error == "TaskTimeoutError: task 'hang' timed out after 0.2s; the attempt was abandoned"
    assert isinstance(tr.exception, fk.TaskTimeoutError) and isinstance(tr.exception, TimeoutError)
    assert run.task_run("one").status == "completed"
    assert elapsed < 5  # two attempts of 0.2 s, not 30 s


def test_a_fast_task_with_a_timeout_returns_normally():
    @fk.task(timeout=10)
    def quick(x):
        return x * 2

    @fk.flow
    def f():
        return quick(21)

    assert f() == 42


def test_flow_task_defaults_apply_unless_a_task_sets_its_own():
    clock = fk.ManualClock()
    flaky_a, flaky_b = Flaky(failures=2), Flaky(failures=2)
    a = fk.task(name="a")(flaky_a.__call__)
    b = fk.task(name="b", retries=0)(flaky_b.__call__)

    @fk.flow(clock=clock, task_defaults={"retries": 3, "retry_delay": 5})
    def f():
        return a(), b()

    run = f.run()
    assert run.task_run("a").attempts == 3 and run.task_run("a").status == "completed"
    assert run.task_run("b").attempts == 1 and run.task_run("b").status == "failed"
    assert clock.sleeps == [5, 5]
    with pytest.raises(fk.DefinitionError, match="task_defaults= cannot set 'cache'"):
        fk.flow(task_defaults={"cache": False})(lambda: None)
    with pytest.raises(ValueError, match="retries= must be >= 0"):
        fk.flow(task_defaults={"retries": -1})(lambda: None)


def test_fail_fast_stops_submitting_at_the_first_final_failure():
    @fk.task
    def bad():
        raise RuntimeError("no")

    @fk.flow
    def f():
        return bad(), one(), inc(2)

    run = f.run(fail_fast=True)
    assert run.status == "failed"
    assert {tr.node: tr.status for tr in run.task_runs} == {"bad": "failed", "one": "skipped", "inc": "skipped"}
    assert CALLS == []
    full = f.run()
    assert {tr.node: tr.status for tr in full.task_runs} == {"bad": "failed", "one": "completed",
                                                            "inc": "completed"}


@pytest.mark.parametrize("workers", [None, 3])
def test_retries_behave_the_same_on_every_local_executor(workers):
    clock = fk.ManualClock()
    flakies = [Flaky(failures=2, value=i) for i in range(3)]
    tasks = [fk.task(name=f"t{i}", retries=2, retry_delay=1)(fl.__call__) for i, fl in enumerate(flakies)]

    @fk.flow(clock=clock, executor=fk.LocalExecutor(max_workers=workers))
    def f():
        return [t() for t in tasks]

    run = f.run()
    assert run.result() == [0, 1, 2]
    assert [run.task_run(f"t{i}").attempts for i in range(3)] == [3, 3, 3]


def test_the_default_clock_really_waits_between_attempts():
    flaky = Flaky(failures=1)
    t = fk.task(name="once", retries=1, retry_delay=0.3)(flaky.__call__)

    @fk.flow
    def f():
        return t()

    start = time.monotonic()
    assert f() == 42
    assert time.monotonic() - start >= 0.3


def test_fail_fast_also_stops_maps_over_run_time_values():
    @fk.task
    def bad():
        raise RuntimeError("no")

    @fk.task
    def upto(n):
        return list(range(n))

    @fk.flow(store=False)
    def f():
        return bad(), inc.map(upto(3))

    run = f.run(fail_fast=True)
    assert run.status == "failed" and CALLS == []
    assert {tr.node: tr.status for tr in run.task_runs}["upto"] == "skipped"
