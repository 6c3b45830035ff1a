"""The flow the interrupt scenarios stop with Ctrl-C (``tests/faults/test_interrupts.py``).

``slow(n, salt)`` runs ``step(0) .. step(n-1)`` and sums them (another ``salt``, other cache keys). Each step appends ``start i`` and ``end i``
to ``$FAULT_LOG``; from ``$BLOCK_AT`` on, a step waits (up to a minute) for a file
``$FAULT_LOG.release-i`` that the tests never create, so the run is certainly busy when the signal
comes. With ``$SLOW_CLEANUP`` set, a step that is interrupted first waits the same way in its
``finally`` (a cleanup that takes long), logging ``cleanup i``: only a second Ctrl-C ends that.
Run as a script (``python slowflow.py N [SALT]``, on ``$WORKERS`` threads if set) it prints the run as JSON, as ``flowkit run
slowflow.py:slow --json`` does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import flowkit as fk


def _log(text: str) -> None:
    with open(os.environ["FAULT_LOG"], "a") as f:
        f.write(text + "\n")


def _hold(i: int) -> None:
    release = Path(f"{os.environ['FAULT_LOG']}.release-{i}")
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.005)


@fk.task
def step(i: int, salt: int = 0) -> int:
    _log(f"start {i}")
    if i >= int(os.environ.get("BLOCK_AT", "1000000")):
        try:
            _hold(i)
        finally:
            if os.environ.get("SLOW_CLEANUP"):
                _log(f"cleanup {i}")
                _hold(i)
    _log(f"end {i}")
    return i * i


@fk.task
def sum_up(xs: list[int]) -> int:
    _log("start sum")
    return sum(xs)


@fk.flow
def slow(n: int = 5, salt: int = 0) -> int:
    return sum_up([step(i, salt) for i in range(n)])


if __name__ == "__main__":
    workers = int(os.environ.get("WORKERS") or 0)
    run = slow.with_options(executor=fk.LocalExecutor(max_workers=workers or None)).run(n=int(sys.argv[1]), salt=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(json.dumps({"run_id": run.id, "status": run.status, "result": run.value}))
