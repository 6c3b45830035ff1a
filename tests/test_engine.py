"""The engine on every executor: order, failure, skipping, errors, Ctrl-C."""

from __future__ import annotations

import gc
import signal
import threading
import traceback
import weakref

import pytest

import flowkit as fk
from conftest import CALLS, add, boom, chain_of, diamond, failing, fan, inc, linear, one
from flowkit.runner import run_graph


def test_shapes_compute_the_same_values_on_every_executor(executor):
    for flow, params, value in [(linear, {"n": 3}, 4), (diamond, {}, 4), (fan, {"n": 4}, 10)]:
        run = flow.with_options(executor=executor).run(**params)
        assert run.status == "completed" and run.result() == value
        assert len(run.task_runs) == len(flow.graph(**params))


def test_failed_task_skips_downstream_while_independent_branches_finish(executor):
    run = failing.with_options(executor=executor).run()
    assert run.status == "failed"
    statuses = {tr.node: tr.status for tr in run.task_runs}
    assert statuses == {"one": "completed", "boom": "failed", "inc": "completed", "inc#2": "skipped",
                        "add": "skipped"}
    assert sorted(CALLS) == ["boom", "inc", "one"]  # the good branch ran, nothing downstream of boom did
    (bad,) = run.failed
    assert bad.error == "ValueError: boom on 1" and bad.attempts == 1
    assert "raise ValueError" in bad.traceback and isinstance(bad.exception, ValueError)


def test_result_raises_flow_run_error_naming_the_task_with_the_original_exception_chained():
    run = failing.run()
    with pytest.raises(fk.FlowRunError) as info:
        run.result()
    err = info.value
    assert "task 'boom' (node 'boom') raised ValueError: boom on 1" in str(err)
    assert "2 downstream tasks skipped" in str(err)
    assert isinstance(err.__cause__, ValueError)
    frames = traceback.extract_tb(err.__cause__.__traceback__)
    assert frames[-1].name == "boom"  # the original traceback reaches into the task body
    assert [tr.node for tr in err.task_runs] == ["boom"] and err.run_id == run.id and err.flow == "failing"


def test_calling_a_failing_flow_raises_flow_run_error():
    with pytest.raises(fk.FlowRunError, match="task 'boom'"):
        failing()


def test_several_failures_are_all_reported():
    @fk.flow
    def two_bad():
        return add(boom(1), boom(2))

    run = two_bad.run()
    assert [tr.node for tr in run.failed] == ["boom", "boom#2"]
    assert "1 more failed: 'boom#2'" in str(run.error)


def test_thread_pool_runs_independent_tasks_concurrently():
    barrier = threading.Barrier(3, timeout=10)

    @fk.task(cache=False)  # it closes over a barrier, which has no identity to key a cache on
    def meet(i):
        barrier.wait()  # only returns when three tasks run at the same time
        return threading.current_thread().name

    @fk.flow
    def f():
        return [meet(i) for i in range(3)]

    names = f.with_options(executor=fk.LocalExecutor(max_workers=3))()
    assert len(set(names)) == 3 and all(n.startswith("flowkit") for n in names)


def test_sequential_executor_is_deterministic():
    orders = []
    for _ in range(3):
        run = fan.run(6)
        orders.append([tr.node for tr in run.task_runs])
    assert orders[0] == orders[1] == orders[2] == [*["inc"] + [f"inc#{i}" for i in range(2, 7)], "total"]


def test_bad_executor_settings_are_refused():
    with pytest.raises(fk.DefinitionError, match="max_workers"):
        fk.LocalExecutor(max_workers=0)


@fk.task
def interrupt() -> int:
    signal.raise_signal(signal.SIGINT)  # what Ctrl-C does
    return 0


@fk.flow
def interrupted() -> int:
    a = one()
    b = interrupt()
    return add(inc(a), b)


class Ended:
    """A run listener that keeps the final record."""

    def __init__(self, into: list) -> None:
        self.into = into

    def on_event(self, event) -> None:
        if isinstance(event, fk.events.RunFinished):
            self.into.append(event.run)


def test_ctrl_c_cancels_the_run_and_reraises_keyboard_interrupt():
    ended = []
    graph = interrupted.graph()
    with pytest.raises(KeyboardInterrupt) as info:
        run_graph(graph, fk.LocalExecutor(), fk.SystemClock(), listeners=[Ended(ended)])
    (run,) = ended
    assert run.status == "cancelled"
    assert {tr.node: tr.status for tr in run.task_runs} == {"one": "completed", "interrupt": "cancelled",
                                                           "inc": "skipped", "add": "skipped"}
    assert any("cancelled" in note for note in info.value.__notes__)
    with pytest.raises(fk.FlowRunError, match="cancelled"):
        run.result()


def test_keyboard_interrupt_inside_a_worker_thread_cancels_the_run():
    @fk.task
    def stop():
        raise KeyboardInterrupt

    @fk.flow
    def f():
        return stop()

    ended = []
    with pytest.raises(KeyboardInterrupt):
        run_graph(f.graph(), fk.LocalExecutor(max_workers=2), fk.SystemClock(), listeners=[Ended(ended)])
    assert ended[0].status == "cancelled"
    assert ended[0].task_runs[0].status == "cancelled"


def test_flow_run_error_pickles_with_its_details():
    import pickle

    err = failing.run().error
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.flow, back.run_id, back.status) == (str(err), err.flow, err.run_id, "failed")


def test_task_raising_system_exit_fails_that_task_only():
    @fk.task
    def leave():
        raise SystemExit(3)

    @fk.flow
    def f():
        return leave(), one()

    run = f.run()
    assert {tr.node: tr.status for tr in run.task_runs} == {"leave": "failed", "one": "completed"}
    assert run.failed[0].error == "SystemExit: 3"
    assert boom.fn  # keep the import used
    assert inc(0) == 1


class Blob:
    """A value whose lifetime the release tests watch."""

    def __init__(self, i: int) -> None:
        self.i = i


LIVE: list[weakref.ref[Blob]] = []  # every Blob made by `grow`
SEEN: list[tuple[int, int]] = []  # (i, how many Blobs were still alive when grow(i) started)


@fk.task
def grow(i: int, *inputs: Blob) -> Blob:
    gc.collect()
    SEEN.append((i, sum(1 for ref in LIVE if ref() is not None)))
    blob = Blob(i)
    LIVE.append(weakref.ref(blob))
    return blob


@pytest.fixture
def blobs():
    LIVE.clear()
    SEEN.clear()
    yield SEEN
    LIVE.clear()
    SEEN.clear()


@pytest.mark.parametrize("store", [False, None], ids=["no store", "store"])
def test_a_value_is_released_once_every_task_that_takes_it_has_finished(executor, blobs, store):
    @fk.flow(store=store)
    def long_chain(n: int):
        return chain_of(grow, n)

    run = long_chain.with_options(executor=executor).run(6)
    assert run.result().i == 5
    assert blobs == [(0, 0)] + [(i, 1) for i in range(1, 6)]  # only the input of the running task is alive


def test_a_value_lives_while_any_consumer_or_the_flow_output_needs_it(blobs):
    @fk.flow
    def shapes():
        a = grow(0)
        b = grow(1, a)
        c = grow(2, a)  # a is still needed here: c takes it
        d = grow(3, b, c)  # a is gone; b and c are needed
        e = grow(4, d)  # d is needed; b and c are gone; a comes back as the flow's output...
        return a, e

    a, e = shapes()
    assert (a.i, e.i) == (0, 4)
    assert blobs == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 2)]  # ...so it was kept all along: a and d alive


def test_a_retried_task_still_has_its_inputs(blobs):
    attempts: list[int] = []

    @fk.task(retries=2)
    def shaky(x: Blob) -> int:
        attempts.append(x.i)
        if len(attempts) < 3:
            raise OSError("flaky")
        return x.i + 1

    @fk.flow
    def retried():
        return shaky(grow(0, grow(1)))

    assert retried.with_options(clock=fk.ManualClock()).run().result() == 1
    assert attempts == [0, 0, 0]


class Tracked(Blob):
    """A Blob that is also watched when it comes back from the cache."""

    def __setstate__(self, state):
        self.__dict__.update(state)
        LIVE.append(weakref.ref(self))


@fk.task
def track(i: int, *inputs: Blob) -> Tracked:
    gc.collect()
    SEEN.append((i, sorted(ref().i for ref in LIVE if ref() is not None)))
    blob = Tracked(i)
    LIVE.append(weakref.ref(blob))
    return blob


def test_a_cached_side_branch_that_cannot_run_does_not_pin_its_input(blobs):
    @fk.flow
    def side():
        raw = track(0)
        track(1, raw)  # a branch nobody consumes: a hit on the rerun, never loaded, never run
        return track(4, track(3, track(2, raw)))

    side()
    blobs.clear()
    # Node track#3, track(2, raw), runs again (so raw is loaded); track#2, track(1, raw), is a hit.
    run = run_graph(side.graph(), fk.LocalExecutor(), fk.SystemClock(), store=side.store(),
                    refresh={"track#3"})
    assert run.result().i == 4 and run.task_run("track#2").status == "cached"
    assert dict(blobs)[4] == [3]  # when track(4) runs, raw is gone: only its input is alive
