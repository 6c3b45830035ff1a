"""fk.trigger: a run started by another run records who started it and why; the CLI shows the chain."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main


@fk.task
def fit(n: int) -> int:
    return n * 2


@fk.flow
def training(n: int = 1) -> int:
    return fit(n)


@fk.task
def watch(drifted: bool) -> str | None:
    if not drifted:
        return None
    run = fk.trigger(training, trigger="drift", reason={"report": "abc123", "drifted": ["age"]}, n=5)
    return run.id


@fk.flow
def monitoring(drifted: bool = True) -> str | None:
    return watch(drifted)


def test_a_run_triggered_from_a_task_records_its_parent_and_reason(home):
    parent = monitoring.run(drifted=True)
    child_id = parent.result()
    child = fk.Store.open().run(child_id)
    assert child.flow == "training" and child.status == "completed" and child.trigger == "drift"
    assert child.info["triggered_by"] == parent.id
    assert child.info["trigger_reason"] == {"task": "watch", "report": "abc123", "drifted": ["age"]}
    assert child.params == {"n": 5}
    assert monitoring.run(drifted=False).result() is None  # no drift: nothing triggered
    assert len(fk.runs(flow="training")) == 1


def test_a_run_triggered_from_outside_has_a_reason_and_no_parent(home):
    run = fk.trigger(training, reason="by hand", n=2)
    assert run.result() == 4 and run.trigger == "triggered"
    stored = fk.runs(flow="training")[0]
    assert stored.info["triggered_by"] is None and stored.info["trigger_reason"] == "by hand"
    plain = training.run()
    assert "triggered_by" not in fk.Store.open().run(plain.id).info
    with pytest.raises(fk.DefinitionError, match="wait=False"):
        fk.trigger(training, wait=False)


def test_flowkit_runs_and_show_tell_the_trigger_chain(home):
    parent = monitoring.run()
    child_id = parent.result()
    listed = json.loads(CliRunner().invoke(main, ["runs", "--json"]).output)
    child = next(r for r in listed if r["id"] == child_id)
    assert child["triggered_by"] == parent.id and child["reason"]["report"] == "abc123"
    table = CliRunner().invoke(main, ["runs"]).output
    assert f"drift ← {parent.id[:12]}" in table
    shown = CliRunner().invoke(main, ["show", child_id[:10]]).output
    assert f"by run {parent.id}" in shown and "abc123" in shown


def test_the_run_trigger_returns_reads_its_reason_as_the_store_does(home):
    run = fk.trigger(training, reason={"report": "r1"}, n=3)
    assert run.info["trigger_reason"] == {"report": "r1"} == fk.Store.open().run(run.id).info["trigger_reason"]
