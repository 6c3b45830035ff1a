"""@fk.flow: calling, run(), graph(), parameter binding, with_options."""

from __future__ import annotations

import pytest

import flowkit as fk
from conftest import CALLS, inc, linear, one


def test_calling_a_flow_runs_it_and_returns_its_value():
    assert linear(n=3) == 4
    assert CALLS == ["one", "inc", "inc", "inc"]


def test_run_returns_a_completed_run_record_with_task_runs():
    run = linear.run(2)
    assert isinstance(run, fk.Run)
    assert (run.flow, run.status, run.params, run.trigger) == ("linear", "completed", {"n": 2}, "manual")
    assert run.result() == 3
    assert [(tr.node, tr.name, tr.status, tr.attempts) for tr in run.task_runs] == [
        ("one", "one", "completed", 1), ("inc", "inc", "completed", 1), ("inc#2", "inc", "completed", 1)]
    assert all(tr.run_id == run.id and tr.id == f"{run.id}/{tr.node}" for tr in run.task_runs)
    assert all(tr.duration is not None and tr.duration >= 0 for tr in run.task_runs)
    assert run.started <= run.task_runs[0].started <= run.task_runs[-1].ended <= run.ended
    assert run.task_run("inc#2").status == "completed"
    with pytest.raises(KeyError, match="has no node 'nope'"):
        run.task_run("nope")


def test_graph_only_traces():
    g = linear.graph(n=2)
    assert list(g.nodes) == ["one", "inc", "inc#2"]
    assert g.params == {"n": 2}
    assert CALLS == []


def test_parameters_bind_like_a_python_call_before_anything_runs():
    @fk.flow
    def f(a: int, b: int = 2, *rest: int, flag: bool = False, **extra: int):
        return [a, b, list(rest), flag, extra]

    assert f(1) == [1, 2, [], False, {}]
    assert f(1, 3, 4, 5, flag=True, z=9) == [1, 3, [4, 5], True, {"z": 9}]
    assert f.run(1, 3, 4).params == {"a": 1, "b": 3, "rest": (4,), "flag": False, "extra": {}}
    with pytest.raises(fk.ParameterError, match=r"flow 'f': missing a required argument: 'a'"):
        f()
    with pytest.raises(TypeError, match=r"Its parameters are: a: int, b: int = 2, \*rest: int, flag: bool = False, \*\*extra: int"):
        f(1, a=2)
    with pytest.raises(fk.ParameterError, match="unexpected keyword argument 'm'"):
        linear.run(m=3)
    assert CALLS == []


def test_flow_options_and_with_options():
    @fk.flow(name="nightly")
    def f():
        return one()

    assert f.name == "nightly" and f() == 1
    threaded = f.with_options(executor=fk.LocalExecutor(max_workers=2))
    assert threaded is not f and threaded.options.executor.max_workers == 2 and f.options.executor is None
    assert threaded() == 1
    with pytest.raises(TypeError, match="unknown option 'retries'"):
        f.with_options(retries=2)
    with pytest.raises(TypeError, match="executor= must be an executor"):
        f.with_options(executor="dask")
    with pytest.raises(TypeError, match="schedule= must be a schedule"):
        fk.flow(schedule="0 3 * * *")(lambda: None)


def test_reserved_run_option_names_cannot_be_flow_parameters():
    with pytest.raises(fk.DefinitionError, match="'refresh' is reserved"):
        @fk.flow
        def f(refresh: bool = False):
            return None


def test_flow_refuses_double_decoration_and_tasks():
    with pytest.raises(fk.DefinitionError, match="decorate it only once"):
        fk.flow(linear)
    with pytest.raises(fk.DefinitionError, match="decorate it only once"):
        fk.flow(inc)
    with pytest.raises(fk.DefinitionError, match="decorate it only once"):
        fk.task(linear)


def test_injected_clock_times_the_run():
    clock = fk.ManualClock(start=1000.0)
    run = linear.with_options(clock=clock).run(1)
    assert (run.started, run.ended) == (1000.0, 1000.0)
    assert all(tr.started == 1000.0 for tr in run.task_runs)
