"""Run events: what the engine tells the world as a run goes, and who listens.

The engine emits one typed event per thing that happens; every listener gets
every event through one method, :meth:`RunListener.on_event`. Recording to the
store (:class:`flowkit.recording.Recorder`), the CLI's live progress and any
listener of your own (``fk.run_flow(flow, listeners=[...])``) see the same
stream, in the same order::

    RunStarted
    RunPlanned                      how many task nodes (again when a dynamic map adds more)
    TaskSubmitted / TaskRunning     a task was handed to the executor / really began running
    TaskOutput                      a task printed a line
    TaskRetrying                    an attempt failed and another is due after a delay
    CacheAdopted / CacheForgotten   a cache entry found by content / one that would not load
    TasksCached                     the cached task runs planning recorded, up to 1,024 an event
    TaskFinished                    completed, cached, failed, skipped, unneeded or cancelled
    RunFinished                     the final :class:`~flowkit.Run` record

A listener of your own, counting failures::

    class Failures:
        def __init__(self):
            self.count = 0

        def on_event(self, event):
            if isinstance(event, fk.events.TaskFinished) and event.task_run.status == "failed":
                self.count += 1

Events are immutable named tuples (cheap: one is built per task). ``RunPlanned``,
``TaskSubmitted``, ``TaskRunning`` and ``TaskOutput`` are for displays: they are
sent to runs that have listeners of their own (``listeners=``), not to recording
alone.
``TaskOutput`` may arrive from a worker thread while tasks run in this process;
every other event arrives on the thread that runs the flow. A listener that raises stops
the run as an internal error, so keep listeners simple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Union

if TYPE_CHECKING:
    from flowkit.records import Run, TaskRun
    from flowkit.store.metadata import CacheHit

__all__ = ["CacheAdopted", "CacheForgotten", "RunEvent", "RunFinished", "RunListener", "RunPlanned", "RunStarted",
           "TaskFinished", "TaskOutput", "TaskRetrying", "TaskRunning", "TaskSubmitted", "TasksCached", "broadcast"]


class RunStarted(NamedTuple):
    """A run began: its parameters, trigger, cache salt and where it runs (host, user, file, commit)."""

    run_id: str
    flow: str
    params: dict[str, Any]
    started: float
    trigger: str
    salt: str
    context: dict[str, Any]


class RunPlanned(NamedTuple):
    """The graph is planned: ``tasks`` task nodes (dynamic maps may add more)."""

    run_id: str
    tasks: int


class TaskSubmitted(NamedTuple):
    """A task node was handed to the executor."""

    run_id: str
    node: str
    task: str


class TaskRunning(NamedTuple):
    """A submitted task really began running (it may have waited for a free worker).

    Sent only to runs with listeners of their own (a display), since on a cluster it
    costs one more message per task.
    """

    run_id: str
    node: str


class TaskOutput(NamedTuple):
    """A line a task printed or logged."""

    run_id: str
    node: str
    line: str


class TaskRetrying(NamedTuple):
    """Attempt ``attempt`` of a task failed with ``error``; the next starts after ``delay`` seconds."""

    run_id: str
    node: str
    task: str
    attempt: int
    error: str
    delay: float


class TaskFinished(NamedTuple):
    """A task run ended (``task_run.status`` says how), with what recording it needs.

    Attributes:
        task_run: the record.
        info: the stored value's artifact record (a completed task whose value was stored).
        inputs: lineage rows: what it consumed (artifacts by producing node, parameters).
        cache: whether its value may be served to later runs (a cache entry is made).
        salted: its entry is a ``cache=False`` task's, usable only by ``resume=``.
        expires: when its entry goes stale because an input had a ``cache_ttl``.
        content: its entry's content key (early cutoff).
    """

    task_run: TaskRun
    info: Any = None
    inputs: Any = ()
    cache: bool = False
    salted: bool = False
    expires: float | None = None
    content: str | None = None


class TasksCached(NamedTuple):
    """Cached task runs recorded while planning, many at once: hits nobody needs, never loaded.

    Most of a fully cached rerun; one event for up to a thousand of them keeps it cheap.
    Each is what a ``TaskFinished`` with status ``cached`` would carry.
    """

    run_id: str
    task_runs: tuple[TaskRun, ...]


class CacheAdopted(NamedTuple):
    """A node missed by key but its inputs' content is that of ``hit``: file the entry under ``key`` too."""

    run_id: str
    node: str
    key: str
    hit: CacheHit
    content: str
    task: str


class CacheForgotten(NamedTuple):
    """A cached value would not load: its entry ``key`` goes (and ``damaged``, the artifact, if its bytes were bad)."""

    run_id: str
    node: str
    key: str
    damaged: str | None


class RunFinished(NamedTuple):
    """The run ended (completed, failed or cancelled): the final record."""

    run: Run


RunEvent = Union[RunStarted, RunPlanned, TaskSubmitted, TaskRunning, TaskOutput, TaskRetrying, TaskFinished, TasksCached,
                 CacheAdopted,
                 CacheForgotten, RunFinished]


class RunListener(Protocol):
    """Follows a run as it goes: recording, progress displays, exporters."""

    def on_event(self, event: RunEvent) -> None:
        """Called once per event, in order (see the module docstring)."""


def broadcast(listeners: list[RunListener]) -> Any:
    """One callable that hands each event to every listener (the single one directly)."""
    if not listeners:
        return lambda event: None
    if len(listeners) == 1:
        return listeners[0].on_event
    calls = [listener.on_event for listener in listeners]

    def emit(event: RunEvent) -> None:
        for call in calls:
            call(event)

    return emit
