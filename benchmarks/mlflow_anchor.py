"""The MLflow side of ``benchmarks/mlops.py``: ``mlflow.log_metric`` to a local store, timed per call.

Run by ``mlops.py`` with the Python of a separate virtualenv that has MLflow (never the
project's); it imports nothing from flowkit. In a fresh temporary folder it makes
``--tasks`` MLflow runs (the counterpart of flowkit's task runs) and calls
``mlflow.log_metric("loss", value, step=s)`` ``--steps`` times in each, then ``--many``
runs that log one metric each. Only the ``log_metric`` calls are timed: MLflow writes
each one to its store before the call returns (synchronous logging, its default), so
the call's time is its whole cost. One JSON object goes to stdout:

    {"mlflow": "3.1.0", "store": "file", "uri": "file:///tmp/.../mlruns",
     "batch_us": 905.1, "batch_calls": 20000, "many_us": 1370.2, "many_calls": 1000}

The store is ``file://`` when this MLflow still has the file store (MLflow 3 wants
``MLFLOW_ALLOW_FILE_STORE=true`` for it, which is set here), else ``sqlite:///``.

    python benchmarks/mlflow_anchor.py [--tasks 20] [--steps 1000] [--many 1000] [--store auto|file|sqlite]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: the file store is opt-in
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")  # the default, stated: each call writes

import mlflow  # noqa: E402  (after the environment it reads)


def log_runs(runs: int, steps: int) -> float:
    """Seconds spent in ``log_metric`` over ``runs`` runs of ``steps`` calls each."""
    spent = 0.0
    for _ in range(runs):
        with mlflow.start_run():
            start = time.perf_counter()
            for step in range(steps):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            spent += time.perf_counter() - start
    return spent


def open_store(folder: str, store: str) -> tuple[str, str]:
    """Point MLflow at a new store in ``folder``: (kind, uri), the file store if it can."""
    kinds = ["file", "sqlite"] if store == "auto" else [store]
    errors = []
    for kind in kinds:
        uri = f"file://{folder}/mlruns" if kind == "file" else f"sqlite:///{folder}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        try:
            log_runs(1, 3)  # opens the store (and warms up): the store's setup is not timed
        except Exception as exc:  # noqa: BLE001 - this MLflow has no such store: try the next one
            errors.append(f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        return kind, uri
    raise SystemExit("no usable MLflow tracking store: " + "; ".join(errors))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20, help="runs logging --steps metrics each")
    parser.add_argument("--steps", type=int, default=1000, help="log_metric calls per run")
    parser.add_argument("--many", type=int, default=1000, help="runs logging one metric each")
    parser.add_argument("--store", choices=["auto", "file", "sqlite"], default="auto")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="fk-mlflow-") as folder:
        kind, uri = open_store(folder, args.store)
        batch = log_runs(args.tasks, args.steps)
        many = log_runs(args.many, 1)
    calls = args.tasks * args.steps
    print(json.dumps({"mlflow": mlflow.__version__, "store": kind, "uri": uri,
                      "batch_us": batch / calls * 1e6, "batch_calls": calls,
                      "many_us": many / args.many * 1e6, "many_calls": args.many}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
