"""flowkit: ML and data workflows as plain Python.

Decorate functions with :func:`task`, compose them in a :func:`flow`; calling
the flow traces its body into a graph and runs it::

    import flowkit as fk

    @fk.task
    def square(x: int) -> int:
        return x * x

    @fk.task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @fk.flow
    def pipeline(n: int = 3) -> int:
        return total(square.map(range(n)))

    pipeline(n=4)  # 14
"""

from __future__ import annotations

import os as _os

from flowkit.clock import Clock, ManualClock, SystemClock
from flowkit.errors import (
    CacheCorruptionError,
    CacheKeyError,
    DefinitionError,
    FlowkitError,
    FlowRunError,
    ParameterError,
    RefUsageError,
    ScheduleError,
    StoreError,
    TaskTimeoutError,
    TrackingError,
    CheckFailedError,
    RegistryError,
    ModelNotFoundError,
)
from flowkit import events
from flowkit.events import RunListener
from flowkit.executors import Executor
from flowkit.executors.local import LocalExecutor
from flowkit.files import File
from flowkit.flow import Flow, FlowOptions, flow
from flowkit.graph import FlowGraph, Node
from flowkit.lineage import lineage
from flowkit.ml import checks, drift, registry
from flowkit.ml.model import Model
from flowkit.ml.trigger import trigger
from flowkit.ml.tracking import compare_runs, log_metric, log_metrics, log_param, metrics, set_tag
from flowkit.records import Run, TaskRun
from flowkit.runner import run_flow
from flowkit.secrets import Secret
from flowkit.store import GCReport, Store
from flowkit.task import Task, TaskOptions, task
from flowkit.tracing import Ref

__version__ = "0.1.0"

__all__ = [
    "CacheCorruptionError",
    "CacheKeyError",
    "CheckFailedError",
    "Clock",
    "Cron",
    "DaskExecutor",
    "DefinitionError",
    "Executor",
    "File",
    "Flow",
    "FlowGraph",
    "FlowOptions",
    "FlowRunError",
    "FlowkitError",
    "GCReport",
    "LocalExecutor",
    "ManualClock",
    "Model",
    "ModelNotFoundError",
    "Node",
    "ParameterError",
    "Ref",
    "RefUsageError",
    "RegistryError",
    "Run",
    "RunListener",
    "ScheduleError",
    "Scheduler",
    "Secret",
    "Store",
    "StoreError",
    "SystemClock",
    "Task",
    "TaskOptions",
    "TaskRun",
    "TaskTimeoutError",
    "TrackingError",
    "checks",
    "compare_runs",
    "drift",
    "events",
    "flow",
    "lineage",
    "log_metric",
    "log_metrics",
    "log_param",
    "metrics",
    "registry",
    "run_flow",
    "runs",
    "serve",
    "set_tag",
    "task",
    "trigger",
]


def __getattr__(name: str) -> object:
    # These import distributed, croniter, starlette or uvicorn: load them only when asked for.
    if name == "DaskExecutor":
        from flowkit.executors.dask import DaskExecutor

        return DaskExecutor
    if name == "Cron":
        from flowkit.schedule import Cron

        return Cron
    if name == "Scheduler":
        from flowkit.scheduler import Scheduler

        return Scheduler
    if name == "serve":
        from flowkit.ml.serve import serve

        return serve
    raise AttributeError(f"module 'flowkit' has no attribute {name!r}")


def runs(flow: str | Flow | None = None, limit: int | None = None, *, status: str | None = None,
         home: str | _os.PathLike[str] | None = None) -> list[Run]:
    """Run records from the store, newest first (each with ``.trigger`` and ``.task_runs``).

    Args:
        flow: only runs of this flow (a name or a ``Flow``).
        limit: at most this many.
        status: only runs with this status (``completed``, ``failed``, ``cancelled``, ``running``,
            ``crashed``: recorded running, but its process is gone).
        home: the store's folder (default ``$FLOWKIT_HOME``, else ``./.flowkit``).
    """
    name = flow.name if isinstance(flow, Flow) else flow
    return Store.open(home).runs(name, limit, status)
