"""The flow the fault scenarios kill: 19 tasks, nine of whose results are files of their own.

Run as a script (``python pipeline.py``) with ``FLOWKIT_HOME`` set, it runs the flow
and prints ``{"run_id", "status", "value"}`` as JSON. Every task body appends its
name to the file ``$FAULT_LOG`` as it starts, so a test counts what really ran.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

import flowkit as fk

#: How many tasks the flow has: ``make`` and ``total`` for each of 9 parts, and ``combine``.
TASKS = 19


def _ran(name: str) -> None:
    with open(os.environ["FAULT_LOG"], "a") as f:
        f.write(name + "\n")


@fk.task
def make(i: int) -> np.ndarray:
    _ran(f"make-{i}")
    time.sleep(0.06)  # "slow": its record is committed as it finishes, not batched with others
    return np.arange(8000, dtype=np.float64) * i  # 64 KB: past the inline size, written to a file


@fk.task
def total(part: np.ndarray, i: int) -> float:
    _ran(f"total-{i}")
    time.sleep(0.06)
    return float(part.sum())


@fk.task
def combine(totals: list[float]) -> float:
    _ran("combine")
    return sum(totals)


@fk.flow
def pipeline(n: int = 9) -> float:
    return combine([total(make(i), i) for i in range(n)])


if __name__ == "__main__":
    run = pipeline.run()
    print(json.dumps({"run_id": run.id, "status": run.status, "value": run.value}))
