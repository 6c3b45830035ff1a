"""The graph shapes the benchmarks share: a chain and a fan-out with a reduce, of no-op tasks."""

from __future__ import annotations

from typing import Any

import flowkit as fk


def noop(*args: Any) -> None:
    """Does nothing: what is timed is the framework around it."""
    return None


noop_task = fk.task(noop)


@fk.flow
def chain(n: int) -> Any:
    """t0 = noop(); t1 = noop(t0); ...: every task waits on the previous one."""
    ref = noop_task()
    for _ in range(n - 1):
        ref = noop_task(ref)
    return ref


@fk.flow
def fanout(n: int) -> Any:
    """N independent noop() calls, then one noop(*all_of_them) reduce (N + 1 tasks)."""
    return noop_task(*[noop_task() for _ in range(n)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
