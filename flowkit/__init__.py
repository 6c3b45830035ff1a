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

from flowkit.clock import Clock, ManualClock, SystemClock
from flowkit.errors import (
    CacheCorruptionError,
    DefinitionError,
    FlowkitError,
    FlowRunError,
    ParameterError,
    RefUsageError,
    ScheduleError,
    TaskTimeoutError,
)
from flowkit.executors import Executor
from flowkit.executors.local import LocalExecutor
from flowkit.flow import Flow, FlowOptions, flow
from flowkit.graph import FlowGraph, Node
from flowkit.records import Run, TaskRun
from flowkit.task import Task, TaskOptions, task
from flowkit.tracing import Ref

__version__ = "0.1.0"

__all__ = [
    "CacheCorruptionError",
    "Clock",
    "DefinitionError",
    "Executor",
    "Flow",
    "FlowGraph",
    "FlowOptions",
    "FlowRunError",
    "FlowkitError",
    "LocalExecutor",
    "ManualClock",
    "Node",
    "ParameterError",
    "Ref",
    "RefUsageError",
    "Run",
    "ScheduleError",
    "SystemClock",
    "Task",
    "TaskOptions",
    "TaskRun",
    "TaskTimeoutError",
    "flow",
    "task",
]
