"""The full loop from the README, end to end in real processes: train, serve, drift, retrain, serve the new model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowkit as fk

pytest.importorskip("sklearn")
pytest.importorskip("uvicorn")

_LOOP = Path(__file__).resolve().parents[1] / "examples" / "mlops" / "loop.py"


def test_drift_in_served_traffic_retrains_and_the_service_answers_with_the_new_version(tmp_path):
    home = tmp_path / "store"
    env = {**os.environ, "FLOWKIT_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(_LOOP.parents[2]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(_LOOP)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the service now answers with version 2" in done.stdout, done.stdout
    store = fk.Store.open(home)
    retrain, monitoring = store.runs("training")[0], store.runs("monitoring")[0]
    assert retrain.trigger == "drift" and retrain.info["triggered_by"] == monitoring.id
    assert "mean radius" in retrain.info["trigger_reason"]["drifted"]
    history = fk.registry.history("tumor-classifier", alias="production", store=store)
    assert [h.version for h in history] == [1, 2]
    assert fk.registry.get("tumor-classifier@production", store=store).run_id == retrain.id
    log = fk.registry.predictions("tumor-classifier", store=store)
    assert set(log["version"]) == {1, 2} and len(log) >= 300
