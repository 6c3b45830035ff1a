"""The public surface: the flat namespace, and what importing flowkit costs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import flowkit as fk

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_are_pinned():
    assert sorted(fk.__all__) == [
        "CacheCorruptionError", "CacheKeyError", "CheckFailedError", "Clock", "Cron", "DaskExecutor",
        "DefinitionError", "Executor", "File", "Flow", "FlowGraph", "FlowOptions", "FlowRunError", "FlowkitError",
        "GCReport", "LocalExecutor", "ManualClock", "Model", "ModelNotFoundError", "Node", "ParameterError", "Ref",
        "RefUsageError", "RegistryError", "Run", "RunListener", "ScheduleError", "Scheduler", "Secret", "Store", "StoreError",
        "SystemClock", "Task", "TaskOptions", "TaskRun", "TaskTimeoutError", "TrackingError", "checks",
        "compare_runs", "drift", "events", "flow", "lineage", "log_metric", "log_metrics", "log_param", "metrics",
        "registry", "run_flow", "runs", "serve", "set_tag", "task", "trigger",
    ]
    for name in fk.__all__:
        assert getattr(fk, name) is not None


def test_error_tree_has_one_root_and_builtin_bases():
    for name in ["DefinitionError", "ParameterError", "CacheKeyError", "StoreError", "RefUsageError", "FlowRunError", "TaskTimeoutError",
                 "CacheCorruptionError", "ScheduleError"]:
        assert issubclass(getattr(fk, name), fk.FlowkitError)
    assert issubclass(fk.ParameterError, TypeError) and issubclass(fk.RefUsageError, TypeError)
    assert issubclass(fk.TaskTimeoutError, TimeoutError) and issubclass(fk.ScheduleError, ValueError)


def test_import_does_not_load_heavy_libraries():
    code = "import sys, flowkit; print(sorted(m for m in ('pandas', 'dask', 'distributed', 'numpy', 'starlette', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_readme_quickstart_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    module, usage = re.findall(r"```python\n(.*?)```", readme, re.S)[:2]
    (tmp_path / "pipeline.py").write_text(module)
    cli = subprocess.run([sys.executable, "-m", "flowkit", "run", "pipeline.py:pipeline", "-p", "rows=5"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "[load] loading 5 rows" in cli and "result: 20.0" in cli
    out = subprocess.run([sys.executable, "-c", usage], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout
    assert out.splitlines()[0] == "20.0"
    assert out.splitlines()[1] == "completed [('load', 'cached'), ('total', 'cached')]"


def test_example_pipeline_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    assert "completed; best model: {'alpha': 0.01" in out
