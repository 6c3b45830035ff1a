"""The executor contract: what every executor must do under the engine, on every backend.

Each test runs on the sequential and threaded ``LocalExecutor`` and on a real
two-process Dask ``LocalCluster`` on 127.0.0.1. A new executor joins by adding
itself to ``EXECUTORS``; the engine relies on nothing else.
"""

from __future__ import annotations

import contextlib

import pytest

import flowkit as fk
from conftest import add, diamond, failing, fan, inc, linear, one
from flowkit.executors import Completion, Session, completed


@fk.task
def spread(n: int) -> list[int]:
    return list(range(n))


@fk.task
def square(x: int) -> int:
    return x * x


@fk.task
def talk(x: int) -> int:
    print(f"talking about {x}")
    return x


@fk.task(timeout=0.2)
def stuck() -> None:
    import threading

    threading.Event().wait(30)


@fk.task(retries=2)
def flaky_once(path: str) -> str:
    import pathlib

    marker = pathlib.Path(path)
    if not marker.exists():
        marker.write_text("failed once")
        raise ConnectionError("first attempt fails")
    return "second attempt"


@fk.flow
def dynamic(n: int = 4) -> int:
    return fk.task(sum)(square.map(spread(n)))


@fk.flow
def chatty() -> list[int]:
    return [talk(1), talk(2)]


@fk.flow
def hangs() -> int:
    stuck()
    return inc(one())


@fk.flow
def retried(path: str) -> str:
    return flaky_once(path)


@pytest.fixture(scope="module")
def dask_cluster():
    with fk.DaskExecutor(n_workers=2, threads_per_worker=1, processes=True) as executor:
        yield executor


class InlineSession:
    """The executor of docs/architecture.md: the protocol is all a backend needs."""

    eager, in_process = False, True

    def __init__(self, clock):
        self.clock, self.done = clock, []

    def submit(self, key, fn, args, deps, **hints):
        if "on_running" in hints:                 # a display wants to know it began
            hints["on_running"](key)
        started = self.clock.time()
        try:
            self.done.append(completed(key, fn(*args, *deps), started, self.clock.time(), "inline"))
        except Exception as exc:
            self.done.append(Completion(key, None, exc, started, self.clock.time(), "inline"))

    def wait(self, timeout=None):
        done, self.done = self.done, []
        return done

    def fetch(self, handles):
        return list(handles)

    def cancel(self, keys=None):
        pass


class InlineExecutor:
    @contextlib.contextmanager
    def session(self, clock):
        yield InlineSession(clock)


@pytest.fixture(params=["sequential", "threads", "inline", pytest.param("dask", marks=pytest.mark.dask)])
def executor(request):
    if request.param == "dask":
        return request.getfixturevalue("dask_cluster")
    if request.param == "inline":
        return InlineExecutor()
    return fk.LocalExecutor() if request.param == "sequential" else fk.LocalExecutor(max_workers=4)


DECLARED = [
    ("sequential", lambda: fk.LocalExecutor(), False, True),
    ("threads", lambda: fk.LocalExecutor(max_workers=2), False, True),
    pytest.param("dask", lambda: fk.DaskExecutor(n_workers=1, processes=False), True, False,
                 marks=pytest.mark.dask),
]


@pytest.mark.parametrize(("name", "make", "eager", "in_process"), DECLARED)
def test_every_session_declares_whether_it_is_eager_and_in_process(name, make, eager, in_process):
    with make().session(fk.ManualClock()) as session:
        assert isinstance(session, Session)
        assert (session.eager, session.in_process) == (eager, in_process)


def test_shapes_give_the_same_values(executor):
    for flow, params, value in [(linear, {"n": 3}, 4), (diamond, {}, 4), (fan, {"n": 5}, 15), (dynamic, {}, 14)]:
        assert flow.with_options(executor=executor).run(**params).result() == value


def test_a_rerun_is_fully_cached(executor):
    first = dynamic.with_options(executor=executor).run(n=3)
    again = dynamic.with_options(executor=executor).run(n=3)
    assert first.result() == again.result() == 5
    assert {tr.status for tr in again.task_runs} == {"cached"}


def test_a_failure_skips_what_is_downstream_and_the_rest_finishes(executor):
    run = failing.with_options(executor=executor).run()
    assert {tr.node: tr.status for tr in run.task_runs} == {
        "one": "completed", "boom": "failed", "inc": "completed", "inc#2": "skipped", "add": "skipped"}
    assert run.task_run("boom").traceback.rstrip().endswith("ValueError: boom on 1")
    with pytest.raises(fk.FlowRunError, match="boom"):
        run.result()


def test_a_failed_attempt_is_retried(executor, tmp_path):
    retrying = []

    class Watch:
        def on_event(self, event):
            if isinstance(event, fk.events.TaskRetrying):
                retrying.append((event.node, event.attempt, event.error))

    run = fk.run_flow(retried.with_options(executor=executor), {"path": str(tmp_path / "marker")},
                      listeners=[Watch()])
    assert run.result() == "second attempt"
    assert run.task_run("flaky_once").attempts == 2
    assert retrying == [("flaky_once", 1, "ConnectionError: first attempt fails")]


def test_a_timeout_fails_that_task_only(executor):
    run = hangs.with_options(executor=executor).run()
    assert run.task_run("stuck").status == "failed" and "timed out" in run.task_run("stuck").error
    assert run.task_run("inc").status == "completed"


def test_what_a_task_prints_is_kept_with_its_task_run(executor):
    run = chatty.with_options(executor=executor).run()
    assert [run.task_run(n).logs for n in ("talk", "talk#2")] == ["talking about 1\n", "talking about 2\n"]


def test_listeners_see_each_task_submitted_then_finished_between_start_and_end(executor):
    seen: list[tuple[str, str]] = []

    class Watch:
        def on_event(self, event):
            node = getattr(event, "node", None) or getattr(getattr(event, "task_run", None), "node", "")
            seen.append((type(event).__name__, node))

    run = fk.run_flow(diamond.with_options(executor=executor), listeners=[Watch()])
    assert run.result() == 4
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished" and kinds[1] == "RunPlanned"
    for node in ("one", "inc", "inc#2", "add"):
        mine = [kind for kind, n in seen if n == node and kind != "TaskOutput"]
        assert mine == ["TaskSubmitted", "TaskRunning", "TaskFinished"], (node, seen)
