"""Metrics, params and tags logged inside tasks: recorded per task run, read back as tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import flowkit as fk


@fk.task
def train(C: float, epochs: int = 3) -> dict:
    fk.log_param("C", C)
    fk.set_tag("family", "logreg")
    for epoch in range(epochs):
        fk.log_metric("loss", 1.0 / (epoch + 1 + C), step=epoch)
    fk.log_metrics({"auc": 0.5 + C / 10, "f1": 0.4})
    return {"auc": 0.5 + C / 10}


@fk.task
def report(m: dict) -> float:
    fk.log_metric("reported", m["auc"])
    return m["auc"]


@fk.flow
def training(C: float = 1.0) -> float:
    return report(train(C))


def test_metrics_logged_in_tasks_are_a_table_of_the_run(home):
    run = training.run(C=2.0)
    frame = run.metrics()
    assert list(frame.columns) == ["run", "task", "node", "name", "step", "value", "time", "source"]
    assert frame["run"].unique().tolist() == [run.id]
    loss = frame[frame["name"] == "loss"]
    assert loss["step"].tolist() == [0, 1, 2]
    assert loss["value"].tolist() == pytest.approx([1 / 3, 1 / 4, 1 / 5])
    assert frame[frame["name"] == "auc"]["value"].tolist() == [pytest.approx(0.7)]
    assert frame.set_index("name").loc["reported", "task"] == "report"
    assert frame["source"].isna().all()
    assert str(frame["time"].dtype).startswith("datetime64")
    assert fk.metrics(run.id[:10]).equals(frame)  # a unique prefix does too


def test_a_cached_rerun_shows_the_metrics_of_the_task_runs_that_computed_its_values(home):
    first = training.run(C=1.0)
    again = training.run(C=1.0)
    assert {tr.status for tr in again.task_runs} == {"cached"}
    frame = again.metrics()
    assert len(frame) == len(first.metrics()) == 6
    assert set(frame["run"]) == {again.id}
    assert set(frame["source"]) == {f"{first.id}/train", f"{first.id}/report"}


def test_compare_runs_has_one_row_per_run_with_params_and_last_metric_values(home):
    a, b = training.run(C=1.0), training.run(C=3.0)
    table = fk.compare_runs([a.id, b])
    assert table["run"].tolist() == [a.id, b.id]
    assert table["params.C"].tolist() == [1.0, 3.0]
    assert table["tags.family"].tolist() == ["logreg", "logreg"]
    assert table["metrics.loss"].tolist() == pytest.approx([1 / 4, 1 / 6])  # the last step's value
    assert table["metrics.auc"].tolist() == pytest.approx([0.6, 0.8])
    assert table["status"].tolist() == ["completed", "completed"]


def test_logging_outside_a_running_task_is_an_error_not_a_silent_no_op(home):
    for call in (lambda: fk.log_metric("x", 1.0), lambda: fk.log_metrics({"x": 1.0}),
                 lambda: fk.log_param("p", 1), lambda: fk.set_tag("t", "v")):
        with pytest.raises(fk.TrackingError, match="outside a running task"):
            call()
    with pytest.raises(fk.TrackingError, match="outside a running task"):
        train.fn(1.0)  # the plain function, called directly


@pytest.mark.parametrize("value, message", [
    ("0.9", "must be a number, not str"), (math.nan, "is nan"), (math.inf, "is inf"), (True, "not bool"),
    (None, "not NoneType"),
])
def test_a_metric_that_is_not_a_finite_number_fails_the_task_naming_it(home, value, message):
    @fk.task
    def bad() -> int:
        fk.log_metric("auc", value)
        return 1

    @fk.flow
    def f() -> int:
        return bad()

    run = f.run()
    assert run.status == "failed"
    (tr,) = run.failed
    assert "TrackingError" in tr.error and "task 'bad'" in tr.error and "'auc'" in tr.error and message in tr.error


def test_bad_names_and_steps_are_refused(home):
    @fk.task
    def bad(kind: str) -> int:
        if kind == "name":
            fk.log_metric("", 1.0)
        elif kind == "nul":
            fk.log_param("a\x00b", 1)
        elif kind == "step":
            fk.log_metric("loss", 1.0, step=-1)
        elif kind == "huge step":
            fk.log_metric("loss", 1.0, step=2**63)  # more than the store's INTEGER holds
        else:
            fk.log_metrics([("a", 1.0)])  # type: ignore[arg-type]
        return 1

    @fk.flow
    def f(kind: str) -> int:
        return bad(kind)

    for kind, text in [("name", "non-empty string"), ("nul", "without NUL"), ("step", "non-negative integer"),
                       ("huge step", "at most 2**63 - 1"), ("map", "takes a mapping")]:
        run = f.run(kind=kind)
        assert run.status == "failed" and text in run.failed[0].error, (kind, run.failed[0].error)


def test_log_metrics_checks_every_value_before_recording_any(home):
    @fk.task
    def half() -> int:
        try:
            fk.log_metrics({"good": 1.0, "bad": "x"})
        except fk.TrackingError:
            pass
        return 1

    @fk.flow
    def f() -> int:
        return half()

    assert f.run().metrics().empty


def test_metrics_of_a_failed_task_are_kept_with_its_task_run(home):
    @fk.task
    def diverges() -> int:
        fk.log_metric("loss", 0.5, step=0)
        fk.log_metric("loss", 9.0, step=1)
        raise RuntimeError("diverged")

    @fk.flow
    def f() -> int:
        return diverges()

    run = f.run()
    assert run.status == "failed"
    assert run.metrics()["value"].tolist() == [0.5, 9.0]
    assert run.failed[0].tracked[1].value == 9.0


def test_a_run_without_a_store_still_has_its_metrics_in_memory(tmp_path):
    run = training.with_options(store=False).run(C=1.0)
    frame = run.metrics()
    assert len(frame) == 6 and set(frame["task"]) == {"train", "report"}


def test_params_keep_numbers_and_lists_and_turn_other_values_into_text(home):
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    @fk.task(cache=False)
    def p() -> int:
        fk.log_param("n", 3)
        fk.log_param("layers", (64, 32))
        fk.log_param("obj", Thing())
        return 1

    @fk.flow
    def f() -> int:
        return p()

    table = fk.compare_runs([f.run().id])
    assert table.loc[0, "params.n"] == 3
    assert table.loc[0, "params.layers"] == [64, 32]
    assert table.loc[0, "params.obj"] == "a thing"


def test_timeout_helper_threads_log_to_the_same_task_run(home):
    @fk.task(timeout=30)
    def slow() -> int:
        fk.log_metric("m", 1.0)
        return 1

    @fk.flow
    def f() -> int:
        return slow()

    assert f.run().metrics()["name"].tolist() == ["m"]


def test_metrics_of_unknown_runs_are_a_clear_error(home):
    training.run()
    with pytest.raises(fk.TrackingError, match="no run in the store matches run id 'nope'"):
        fk.metrics("nope")
    assert isinstance(fk.metrics([]), pd.DataFrame)


def test_compare_runs_keeps_an_integer_param_that_another_run_lacks_an_integer(home):
    @fk.task(cache=False)
    def p(n: int) -> int:
        if n:
            fk.log_param("layers", n)
        fk.log_metric("m", float(n))
        return n

    @fk.flow
    def f(n: int = 0) -> int:
        return p(n)

    a, b = f.run(n=3), f.run(n=0)
    table = fk.compare_runs([a.id, b.id])
    assert table.loc[0, "params.layers"] == 3 and type(table.loc[0, "params.layers"]) is int
    assert table["metrics.m"].dtype == float and str(table["started"].dtype).startswith("datetime64")
