"""Checks that gate a task's output: a failure is not stored, not retried, and skips downstream."""

from __future__ import annotations

import pandas as pd
import pytest

import flowkit as fk
from flowkit.ml.checks import run_checks

CALLS: list[str] = []


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3, 3], "age": [30, None, 50, 70], "plan": ["a", "b", "b", "c"]})


@pytest.mark.parametrize("check, passed, observed", [
    (fk.checks.rows(min=4), True, 4),
    (fk.checks.rows(min=5), False, 4),
    (fk.checks.rows(max=3), False, 4),
    (fk.checks.no_nulls(["plan"]), True, {}),
    (fk.checks.no_nulls(), False, {"age": 1}),
    (fk.checks.unique("plan"), False, 1),
    (fk.checks.unique(["id", "plan"]), True, 0),
    (fk.checks.in_range("age", 0, 60), False, {"min": 30.0, "max": 70.0, "outside": 1}),
    (fk.checks.in_range("age", lo=18), True, {"min": 30.0, "max": 70.0, "outside": 0}),
    (fk.checks.schema({"id": "int64", "plan": "object"}), True, None),
    (fk.checks.schema({"id": "float64"}), False, None),
    (fk.checks.schema({"id": int, "age": "number"}), True, None),
    (fk.checks.schema({"missing": "int64"}), False, None),
])
def test_built_in_table_checks_pass_and_fail_with_what_they_saw(check, passed, observed):
    (result,) = run_checks([check.__class__(**{**check.__dict__, "severity": "warn"})], _frame(), None)
    assert result.passed is passed, result
    if observed is not None:
        assert result.observed == observed
    assert (result.message is None) is passed


def test_a_table_check_keeps_a_sample_of_the_failing_rows():
    (result,) = run_checks([fk.checks.no_nulls(severity="warn")], _frame(), None)
    assert result.sample == [{"id": 2, "age": "nan", "plan": "b"}]  # JSON-safe: NaN as text
    (dup,) = run_checks([fk.checks.unique("id", severity="warn")], _frame(), None)
    assert [row["id"] for row in dup.sample] == [3, 3]


def test_metric_checks_read_a_dict_output_or_the_metrics_the_task_logged():
    ok, low = run_checks([fk.checks.metric("auc", ">=", 0.8, severity="warn"),
                          fk.checks.metric("auc", ">", 0.95, severity="warn")], {"auc": 0.9}, None)
    assert ok.passed and not low.passed and low.observed == 0.9 and low.threshold == "> 0.95"
    (missing,) = run_checks([fk.checks.metric("f1", ">=", 0.1, severity="warn")], {"auc": 0.9}, None)
    assert not missing.passed and "no metric 'f1'" in missing.message


def test_bad_check_definitions_fail_at_decoration_time():
    for make, text in [(lambda: fk.checks.metric("auc", "=>", 1), "op must be one of"),
                       (lambda: fk.checks.metric("auc", ">", "high"), "must be a number"),
                       (lambda: fk.checks.rows(), "needs min=, max= or both"),
                       (lambda: fk.checks.rows(min=5, max=1), "above max"),
                       (lambda: fk.checks.in_range("a"), "needs lo, hi or both"),
                       (lambda: fk.checks.schema({}), "non-empty dict"),
                       (lambda: fk.checks.rows(min=1, severity="fatal"), "'error' or 'warn'"),
                       (lambda: fk.task(checks=["not a check"])(lambda: 1), "checks= takes")]:
        with pytest.raises(fk.DefinitionError, match=text):
            make()


@fk.task(retries=3, checks=[fk.checks.metric("auc", ">=", 0.8)])
def evaluate(auc: float) -> dict:
    CALLS.append("evaluate")
    return {"auc": auc}


@fk.task
def promote(m: dict) -> str:
    CALLS.append("promote")
    return "promoted"


@fk.flow
def gated(auc: float = 0.9) -> str:
    return promote(evaluate(auc))


def test_a_failed_gate_fails_the_task_is_not_retried_not_cached_and_skips_downstream(home):
    CALLS.clear()
    run = gated.run(auc=0.5)
    assert run.status == "failed"
    statuses = {tr.name: tr.status for tr in run.task_runs}
    assert statuses == {"evaluate": "failed", "promote": "skipped"}
    (tr,) = run.failed
    assert tr.attempts == 1 and CALLS == ["evaluate"]  # retries=3, but the same output fails the same check
    assert tr.artifact_id is None
    assert "CheckFailedError" in tr.error and "metric('auc' >= 0.8)" in tr.error and "0.5" in tr.error
    with pytest.raises(fk.FlowRunError) as info:
        run.result()
    assert isinstance(info.value.__cause__, fk.CheckFailedError)
    assert info.value.__cause__.check == "metric('auc' >= 0.8)" and info.value.__cause__.observed == 0.5
    CALLS.clear()
    again = gated.run(auc=0.5)  # nothing was cached: the task runs (and fails) again
    assert again.status == "failed" and CALLS == ["evaluate"]
    checks = again.checks()
    assert checks[["task", "check", "passed", "observed"]].values.tolist() == [
        ["evaluate", "metric('auc' >= 0.8)", False, 0.5]]
    assert checks.loc[0, "artifact_id"] is None


def test_a_passing_gate_is_recorded_on_the_committed_artifact_and_shown_for_cached_reruns(home):
    run = gated.run(auc=0.9)
    assert run.status == "completed"
    checks = run.checks()
    assert checks["passed"].tolist() == [True]
    assert checks.loc[0, "artifact_id"] == run.task_run("evaluate").artifact_id
    again = gated.run(auc=0.9)
    assert {tr.status for tr in again.task_runs} == {"cached"}
    cached = again.checks()
    assert cached["passed"].tolist() == [True] and cached.loc[0, "source"] == f"{run.id}/evaluate"


def test_a_warning_check_records_its_failure_and_lets_the_output_through(home):
    @fk.task(checks=[fk.checks.rows(min=10, severity="warn"), fk.checks.no_nulls(["plan"])])
    def load() -> pd.DataFrame:
        return _frame()

    @fk.flow
    def f() -> int:
        return load()

    run = f.run()
    assert run.status == "completed"
    checks = run.checks()
    assert checks[["check", "passed", "severity"]].values.tolist() == [
        ["rows(min=10)", False, "warn"], ["no_nulls(['plan'])", True, "error"]]
    assert checks.loc[0, "message"] == "4 rows, required >= 10"


def test_a_check_that_raises_fails_closed_with_the_reason(home):
    def broken(value):
        raise ZeroDivisionError("oops")

    @fk.task(checks=[broken])
    def make() -> int:
        return 1

    @fk.flow
    def f() -> int:
        return make()

    run = f.run()
    assert run.status == "failed"
    assert "check broken failed: the check raised ZeroDivisionError: oops" in run.failed[0].error


def test_callable_checks_pass_on_none_or_true_and_fail_on_false_or_a_reason(home):
    @fk.task(checks=[lambda v: v > 0, fk.checks.check(lambda v: None if v < 10 else "too big", name="small")])
    def make(x: int) -> int:
        return x

    @fk.flow
    def f(x: int) -> int:
        return make(x)

    assert f.run(x=5).status == "completed"
    assert "returned False" in f.run(x=-1).failed[0].error
    assert "check small failed: too big" in f.run(x=50).failed[0].error


def test_changing_a_tasks_checks_changes_its_cache_key(home):
    @fk.task
    def make() -> int:
        return 1

    @fk.flow
    def f() -> int:
        return make()

    plain = f.run()
    assert f.run().task_runs[0].status == "cached"
    with_check = fk.task(checks=[fk.checks.metric("x", ">", 0, severity="warn")])(make.fn)

    @fk.flow(name="f")
    def g() -> int:
        return with_check()

    rerun = g.run()
    assert rerun.task_runs[0].status == "completed"
    assert rerun.task_runs[0].cache_key != plain.task_runs[0].cache_key


def test_checks_on_dask_gate_on_the_worker_and_metrics_come_back(home):
    @fk.task(checks=[fk.checks.metric("auc", ">=", 0.8)])
    def score(auc: float) -> dict:
        fk.log_metric("auc", auc)
        fk.log_param("where", "worker")
        return {"auc": auc}

    @fk.flow
    def f(auc: float) -> dict:
        return score(auc)

    with fk.DaskExecutor(n_workers=1, threads_per_worker=1, processes=True) as dask:
        good = f.with_options(executor=dask).run(auc=0.9)
        bad = f.with_options(executor=dask).run(auc=0.1)
    assert good.status == "completed" and good.metrics()["value"].tolist() == [0.9]
    assert good.checks()["passed"].tolist() == [True]
    assert fk.compare_runs([good.id]).loc[0, "params.where"] == "worker"
    assert bad.status == "failed" and "CheckFailedError" in bad.failed[0].error
    assert bad.checks()["passed"].tolist() == [False]
    assert bad.metrics()["value"].tolist() == [0.1]


def test_a_pandera_schema_is_a_check_with_its_failure_cases(home):
    pa = pytest.importorskip("pandera.pandas")
    schema = pa.DataFrameSchema({"age": pa.Column(float, pa.Check.ge(0), nullable=True)})

    @fk.task(checks=[schema])
    def load(ages: list) -> pd.DataFrame:
        return pd.DataFrame({"age": ages})

    @fk.flow
    def f(ages: list) -> pd.DataFrame:
        return load(ages)

    assert f.run(ages=[1.0, 2.0]).status == "completed"
    bad = f.run(ages=[1.0, -2.0])
    assert bad.status == "failed"
    checks = bad.checks()
    assert checks.loc[0, "message"] == "1 failure case(s): age: greater_than_or_equal_to(0)"
    assert checks.loc[0, "sample"][0]["failure_case"] == -2.0


def test_changing_only_a_checks_severity_reruns_the_task_so_a_gate_is_never_skipped(home):
    def make(severity):
        @fk.task(name="score", checks=[fk.checks.metric("auc", ">=", 0.9, severity=severity)])
        def score() -> dict:
            return {"auc": 0.5}

        @fk.flow(name="f")
        def f() -> dict:
            return score()

        return f

    assert make("warn").run().status == "completed"
    gated = make("error").run()
    assert gated.status == "failed" and "CheckFailedError" in gated.failed[0].error


def test_check_results_name_the_node_and_the_task_apart(home):
    @fk.task(checks=[fk.checks.metric("auc", ">=", 0.0)])
    def score(x: float) -> dict:
        return {"auc": x}

    @fk.flow
    def f() -> list:
        return score.map([0.1, 0.2])

    run = f.run()
    stored, in_memory = run.checks(), fk.ml.tracking.checks_of(run.task_runs)
    assert stored["task"].tolist() == ["score", "score"]
    assert stored["node"].tolist() == ["score[0]", "score[1]"] == in_memory["node"].tolist()
