"""``fk.Model`` as a task input: resolved when the flow's keys are computed, keyed by the version it names,
and the task receives exactly that version (locally and on Dask), whatever the alias does meanwhile."""

from __future__ import annotations

import functools
import operator
import pickle

import pytest

import flowkit as fk
from flowkit.ml import registry

CALLS: list[str] = []


def times(k: int):
    """A model that pickles by reference to the standard library (a Dask worker can load it)."""
    return functools.partial(operator.mul, k)


@fk.task
def score(model, x: int) -> int:
    CALLS.append("score")
    return model(x)


@fk.task
def baseline(x: int) -> int:
    CALLS.append("baseline")
    return x


@fk.task
def move_to_second() -> int:
    fk.registry.promote("churn", 2, reason="moved while the run goes on")
    return 0


@fk.task
def score_after(model, after: int, x: int) -> int:
    return model(x)


@fk.task
def score_all(models: list, x: int) -> list[int]:
    return [m(x) for m in models]


@fk.flow
def scoring(x: int = 10) -> list[int]:
    return [score(fk.Model("churn@production"), x), baseline(x)]


@fk.flow
def moving(x: int = 10) -> int:
    return score_after(fk.Model("churn@production"), move_to_second(), x)


@fk.flow
def several(x: int = 10) -> list[int]:
    return score_all([fk.Model("churn:1"), fk.Model("churn")], x)


@pytest.fixture(autouse=True)
def _models():
    CALLS.clear()
    registry._MEMO.clear()
    fk.registry.register("churn", times(2), aliases=["production"])
    fk.registry.register("churn", times(3))
    yield
    registry._MEMO.clear()


def test_the_task_receives_the_model_the_alias_names():
    run = scoring.run(x=10)
    assert run.result() == [20, 10]


def test_moving_the_alias_reruns_exactly_the_tasks_that_take_the_model():
    scoring.run(x=10)
    assert sorted(CALLS) == ["baseline", "score"]
    CALLS.clear()
    again = scoring.run(x=10)
    assert CALLS == [] and {t.name: t.status for t in again.task_runs} == {"score": "cached", "baseline": "cached"}
    fk.registry.promote("churn", 2)
    moved = scoring.run(x=10)
    assert CALLS == ["score"] and moved.result() == [30, 10]
    assert {t.name: t.status for t in moved.task_runs} == {"score": "completed", "baseline": "cached"}
    fk.registry.rollback("churn")
    CALLS.clear()
    assert scoring.run(x=10).result() == [20, 10] and CALLS == []  # back to version 1: its cached result


def test_the_task_gets_the_version_its_key_names_even_if_the_alias_moves_during_the_run():
    run = moving.run(x=10)
    assert run.result() == 20  # resolved to version 1 before anything ran
    assert fk.registry.get("churn@production").version == 2
    assert fk.registry.history("churn", "production")[-1].run_id == run.id  # a task moved it, in this run
    assert moving.run(x=10).result() == 30  # the next run resolves again


def test_lineage_records_which_version_was_used():
    run = scoring.run(x=10)
    step = run.task_run("score")
    inputs = fk.Store.open().db.consumed(run.id, step.node)
    model = next(i for i in inputs if i.name == "model")
    assert "churn:1" in model.repr and "churn@production" in model.repr
    g = fk.lineage(step)
    assert any(d.get("kind") == "param" and "churn:1" in (d.get("repr") or "") for _, d in g.nodes(data=True))


def test_models_inside_a_container_resolve_each_to_its_version():
    assert several.run(x=10).result() == [20, 30]


def test_a_missing_model_stops_the_run_before_anything_runs_with_a_clear_error():
    @fk.flow
    def missing(x: int = 1) -> int:
        return score(fk.Model("fraud@production"), x)

    with pytest.raises(fk.ModelNotFoundError, match="no model named 'fraud'"):
        missing.run(x=1)
    assert CALLS == []


def test_a_bad_model_uri_is_refused_when_written():
    for uri in ("churn:x", "churn@", "@prod", "", "churn:0"):
        with pytest.raises(fk.RegistryError):
            fk.Model(uri)


def test_a_resolved_model_input_carries_its_version_to_another_process():
    model = fk.Model("churn@production").for_run()
    model.__flowkit_token__(fk.Store.open())
    fk.registry.promote("churn", 2)
    registry._MEMO.clear()
    travelled = pickle.loads(pickle.dumps(model))
    assert travelled.pin.version == 1 and travelled.value()(10) == 20
    assert repr(travelled) == "Model('churn@production' -> churn:1)"
    assert fk.Model("churn@production") == travelled and "->" not in repr(fk.Model("churn@production"))


def test_the_model_input_works_on_a_dask_cluster():
    with fk.DaskExecutor(n_workers=1, threads_per_worker=1, processes=True) as executor:
        on_dask = scoring.with_options(executor=executor)
        assert on_dask.run(x=10).result() == [20, 10]
        fk.registry.promote("churn", 2)
        run = on_dask.run(x=10)
    assert run.result() == [30, 10]
    assert {t.name: t.status for t in run.task_runs} == {"score": "completed", "baseline": "cached"}
