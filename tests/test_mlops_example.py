"""The MLOps example end to end: train, gate against production, promote; a worse model keeps the old one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import flowkit as fk

pytest.importorskip("sklearn")

_PATH = Path(__file__).resolve().parents[1] / "examples" / "mlops" / "train.py"


@pytest.fixture
def example(home):
    spec = importlib.util.spec_from_file_location("mlops_example", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_winner_is_promoted_and_a_worse_candidate_fails_the_gate_keeping_production(example):
    first = example.training.run()
    assert first.status == "completed", first.summary()
    production = fk.registry.get(f"{example.MODEL}@production")
    assert production.version == 1 and production.metrics["auc"] > 0.95
    assert production.task_run_id == f"{first.id}/promote"
    lineage = fk.lineage(production.artifact_id)
    assert {d.get("task") for _, d in lineage.nodes(data=True)} >= {"load", "features", "split", "train"}

    again = example.training.run()  # nothing new: no second version
    assert again.status == "completed"
    assert [v.version for v in fk.registry.versions(example.MODEL)] == [1]

    worse = example.training.run(cs=[1e-6])  # heavily regularized: worse than production
    assert worse.status == "failed"
    assert {tr.name: tr.status for tr in worse.task_runs}["promote"] == "skipped"
    gate = worse.checks()
    failed = gate[~gate["passed"]]
    assert failed["check"].str.startswith("better_than").any() or failed["check"].str.startswith("metric").any()
    assert fk.registry.get(f"{example.MODEL}@production").version == 1
    assert [v.version for v in fk.registry.versions(example.MODEL)] == [1]

    scored = example.scoring.run()
    assert scored.status == "completed" and len(scored.result()) == 20
