"""The task run going on now: what ``fk.log_metric``, the registry and checks attach to.

While a node's function runs (in this process or on a Dask worker), a
:class:`TaskContext` is current (the context variable of the task's output
capture, :mod:`flowkit.logs`, so threads a task starts with ``contextvars`` and
its timeout helper thread see it too). It says which
run and node this is, the node's cache key and the store, and it gathers what
the task logs; the worker sends that back with the task's record, so logging
costs no store round trip.
"""

from __future__ import annotations

from typing import Any

from flowkit.errors import TrackingError
from flowkit.logs import Capture, current_capture

__all__ = ["TaskContext", "current_task", "require_task"]


class TaskContext(Capture):
    """One running task call (an attempt): where it belongs, its output, and what it logged so far.

    It is the task's output :class:`~flowkit.logs.Capture` too, so a task call sets one
    context variable, not two.

    Attributes:
        run_id: the run.
        node: the node id in the flow's graph.
        task: the task's name.
        cache_key: the node's cache key (``None`` without a store).
        store: the run's :class:`~flowkit.store.Store` (``None`` without one).
        tracked: the :class:`~flowkit.records.Tracked` entries logged so far.
    """

    __slots__ = ("run_id", "task", "cache_key", "store", "tracked")

    def __init__(self, node: str, sink: Any, run_id: str, task: str, cache_key: str | None, store: Any) -> None:
        self.node = node
        self.sink = sink
        self.buffer = None
        self._partial = ""
        self.run_id = run_id
        self.task = task
        self.cache_key = cache_key
        self.store = store
        self.tracked: list[Any] = []

    @property
    def task_run_id(self) -> str:
        return f"{self.run_id}/{self.node}"

    def __repr__(self) -> str:
        return f"TaskContext(run={self.run_id!r}, node={self.node!r}, task={self.task!r})"


def current_task() -> TaskContext | None:
    """The task call going on in this context, or ``None`` outside one."""
    ctx = current_capture()
    return ctx if type(ctx) is TaskContext else None


def require_task(what: str) -> TaskContext:
    """The current task call; a :class:`~flowkit.TrackingError` saying ``what`` needs one outside a task."""
    ctx = current_capture()
    if type(ctx) is not TaskContext:
        raise TrackingError(
            f"{what} was called outside a running task: it records against the task run that calls it. Call it "
            f"inside an @fk.task function while its flow runs (calling a task's function directly, outside a "
            f"flow, records nothing)")
    return ctx
