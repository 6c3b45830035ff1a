"""Records of what ran: :class:`Run` and :class:`TaskRun`.

Records are frozen values: the engine builds them as work finishes. Times are
seconds since the epoch (``time.time()`` of the run's clock); ``duration`` is
the difference.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowkit.errors import FlowRunError
    from flowkit.graph import FlowGraph

__all__ = ["Run", "TaskRun"]

#: Final statuses of a task run. "cancelled": the run was interrupted while
#: the task was running (or before it started, when it had been submitted).
TASK_STATUSES = ("completed", "cached", "failed", "skipped", "cancelled")
#: Final statuses of a run.
RUN_STATUSES = ("completed", "failed", "cancelled")


def _when(ts: float | None) -> _dt.datetime | None:
    return None if ts is None else _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRun:
    """One execution of one node of a flow.

    Attributes:
        id: ``"<run id>/<node id>"``.
        run_id: the run it belongs to.
        node: the node id in the flow's graph (stable across runs).
        name: the task's name.
        status: one of ``TASK_STATUSES``.
        attempts: how many attempts were made (0 for cached or skipped).
        started, ended: epoch seconds, or ``None`` if it never started.
        cache_key: the node's cache key, when caching is on.
        artifact_id: the id of the stored result, when it was stored.
        error: ``"ExceptionType: message"`` of the last failed attempt.
        traceback: the formatted traceback of that exception.
        worker: where it ran (a thread name or a Dask worker address).
        exception: the exception object itself (only in the process that ran it).
    """

    id: str
    run_id: str
    node: str
    name: str
    status: str
    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    cache_key: str | None = None
    artifact_id: str | None = None
    error: str | None = None
    traceback: str | None = None
    worker: str | None = None
    exception: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` if it never ran."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def start_time(self) -> _dt.datetime | None:
        """``started`` as a UTC datetime."""
        return _when(self.started)

    @property
    def end_time(self) -> _dt.datetime | None:
        """``ended`` as a UTC datetime."""
        return _when(self.ended)


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Run:
    """One execution of a flow.

    Attributes:
        id: the run id.
        flow: the flow's name.
        status: ``"completed"``, ``"failed"`` or ``"cancelled"``.
        params: the bound parameters.
        started, ended: epoch seconds.
        task_runs: one :class:`TaskRun` per node, in the order they finished.
        trigger: what started it: ``"manual"``, ``"schedule"``, ``"cli"``...
        error: the :class:`~flowkit.FlowRunError` when the run did not complete.
        graph: the graph that ran (dynamic maps expanded).
    """

    id: str
    flow: str
    status: str
    params: dict[str, Any]
    started: float
    ended: float
    task_runs: tuple[TaskRun, ...] = ()
    trigger: str = "manual"
    error: FlowRunError | None = dataclasses.field(default=None, repr=False)
    graph: FlowGraph | None = dataclasses.field(default=None, repr=False, compare=False)
    value: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"Run(id={self.id!r}, flow={self.flow!r}, status={self.status!r}, tasks: {counts or 'none'})"

    def result(self) -> Any:
        """The flow's return value; raises :class:`~flowkit.FlowRunError` if it did not complete."""
        if self.error is not None:
            raise self.error
        return self.value

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.ended - self.started

    @property
    def failed(self) -> list[TaskRun]:
        """The task runs that failed."""
        return [tr for tr in self.task_runs if tr.status == "failed"]

    def task_run(self, node: str) -> TaskRun:
        """The task run of a node id (``"train"``, ``"train#2"``, ``"prep/load"``)."""
        for tr in self.task_runs:
            if tr.node == node:
                return tr
        raise KeyError(f"run {self.id} of flow {self.flow!r} has no node {node!r}; its nodes are: "
                       f"{', '.join(tr.node for tr in self.task_runs)}")

    def counts(self) -> dict[str, int]:
        """How many task runs ended in each status."""
        out: dict[str, int] = {}
        for tr in self.task_runs:
            out[tr.status] = out.get(tr.status, 0) + 1
        return out
