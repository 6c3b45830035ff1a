"""The graph shapes the benchmarks share: a chain, a fan-out with a reduce, and a two-level map, of no-op tasks."""

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


@fk.task
def group(i: int, size: int) -> list[int]:
    """The items of group ``i``: known only when it ran (as files found in a folder would be)."""
    return list(range(i * size, (i + 1) * size))


@fk.task
def cell(item: int) -> None:
    """Does nothing with one item."""
    return None


@fk.flow
def grid(outer: int, inner: int) -> Any:
    """A two-level map: ``outer`` groups, then ``cell`` mapped over each group's ``inner`` items.

    ``outer`` group tasks and ``outer x inner`` cells: the shape of per-file or per-customer work.
    """
    groups = group.map(range(outer), size=inner)
    return [cell.map(groups[i]) for i in range(outer)]


def grid_tasks(outer: int, inner: int) -> int:
    """How many task runs ``grid(outer, inner)`` has."""
    return outer + outer * inner


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
