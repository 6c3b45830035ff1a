"""Records of what ran: :class:`Run` and :class:`TaskRun`.

Records are frozen values: the engine builds them as work finishes. Times are
seconds since the epoch (``time.time()`` of the run's clock); ``duration`` is
the difference.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from flowkit.errors import FlowRunError
from flowkit.secrets import mask

if TYPE_CHECKING:
    from flowkit.graph import FlowGraph

__all__ = ["Attempt", "CheckResult", "Run", "TaskRun", "Tracked"]

#: Final statuses of a task run. "cancelled": the run was interrupted while
#: the task was running (or before it started, when it had been submitted).
#: "unneeded": not in the cache, but every task that takes its value was, so it
#: did not run (a result that could not be stored, or a cleared cache entry).
TASK_STATUSES = ("completed", "cached", "failed", "skipped", "cancelled", "unneeded")
#: Final statuses of a run. "crashed": its process died without recording an end
#: (a store reader's verdict on a run recorded "running", see flowkit.store.owner).
RUN_STATUSES = ("completed", "failed", "cancelled", "crashed")


def _when(ts: float | None) -> _dt.datetime | None:
    return None if ts is None else _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)


class Attempt(NamedTuple):
    """One attempt of a task run: its number (from 1), timings, and error text if it failed."""

    number: int
    started: float | None
    ended: float | None
    error: str | None = None


class Tracked(NamedTuple):
    """One thing a task logged while it ran (``fk.log_metric``, ``fk.log_param``, ``fk.set_tag``).

    ``kind`` is ``"metric"`` (``value`` a float, ``step`` an int or ``None``), ``"param"``
    or ``"tag"`` (``value`` a JSON-compatible value); ``time`` is epoch seconds.
    """

    kind: str
    name: str
    value: Any
    step: int | None
    time: float


class CheckResult(NamedTuple):
    """The outcome of one check on a task's output (see :mod:`flowkit.checks`).

    ``severity`` is ``"error"`` (a failure fails the task) or ``"warn"`` (recorded only);
    ``observed`` is what the check saw and ``threshold`` what it required; ``baseline``
    the registry version it compared against (``"churn:3"``), if any; ``sample`` a few
    failing rows, for tables; ``message`` says what was wrong, or ``None`` when it passed.
    """

    check: str
    passed: bool
    severity: str = "error"
    observed: Any = None
    threshold: Any = None
    baseline: str | None = None
    message: str | None = None
    sample: Any = None


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
        history: every :class:`Attempt`, in order.
        logs: what the task printed or logged (the end of it, when very long).
        source: for a ``cached`` task run, the id of the task run that computed the value
            (lineage starts there); ``None`` otherwise.
        tracked: the metrics, params and tags the task logged (:class:`Tracked`), in order.
        checks: the results of the checks on its output (:class:`CheckResult`).
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
    history: tuple[Attempt, ...] = dataclasses.field(default=(), repr=False)
    logs: str | None = dataclasses.field(default=None, repr=False)
    source: str | None = None
    tracked: tuple[Tracked, ...] = dataclasses.field(default=(), repr=False)
    checks: tuple[CheckResult, ...] = dataclasses.field(default=(), repr=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (retry waits included), or ``None`` if it never ran.

        For a ``cached`` task run these are the timings of loading the value, if it was
        loaded; :attr:`run_time` is what computing took.
        """
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def run_time(self) -> float | None:
        """Seconds spent computing: the sum of the attempts' times, retry waits excluded.

        ``None`` for a task run that computed nothing (``cached``, ``skipped``) or whose
        attempts have no timings.
        """
        if self.status in ("cached", "skipped"):
            return None
        times = [a.ended - a.started for a in self.history if a.started is not None and a.ended is not None]
        if times:
            return sum(times)
        return None if self.history else self.duration

    @property
    def waited(self) -> float | None:
        """Seconds spent waiting between attempts for a retry (``0.0`` after a single attempt).

        ``None`` when :attr:`run_time` is.
        """
        if self.status in ("cached", "skipped"):
            return None
        timed = [a for a in self.history if a.started is not None and a.ended is not None]
        if not timed:
            return None if self.history or self.duration is None else 0.0
        return sum(max(0.0, b.started - a.ended) for a, b in zip(timed, timed[1:]))  # type: ignore[operator]

    @property
    def start_time(self) -> _dt.datetime | None:
        """``started`` as a UTC datetime."""
        return _when(self.started)

    @property
    def end_time(self) -> _dt.datetime | None:
        """``ended`` as a UTC datetime."""
        return _when(self.ended)


def cached_task_run(id: str, run_id: str, node: str, name: str, cache_key: str | None, artifact_id: str,
                    source: str | None) -> TaskRun:
    """``TaskRun(id, run_id, node, name, "cached", 0, cache_key=..., artifact_id=..., source=...)``, faster.

    A frozen dataclass sets each of its 19 fields through ``object.__setattr__``; a
    fully cached rerun builds one such record per task, so this sets the slots directly
    (about half the time). ``tests/test_records.py`` pins it to the constructor.
    """
    tr = _new(TaskRun)
    _set_id(tr, id)
    _set_run_id(tr, run_id)
    _set_node(tr, node)
    _set_name(tr, name)
    _set_status(tr, "cached")
    _set_attempts(tr, 0)
    _set_started(tr, None)
    _set_ended(tr, None)
    _set_cache_key(tr, cache_key)
    _set_artifact_id(tr, artifact_id)
    _set_error(tr, None)
    _set_traceback(tr, None)
    _set_worker(tr, None)
    _set_exception(tr, None)
    _set_history(tr, ())
    _set_logs(tr, None)
    _set_source(tr, source)
    _set_tracked(tr, ())
    _set_checks(tr, ())
    return tr


def completed_task_run(id: str, run_id: str, node: str, name: str, attempts: int, started: float | None,
                       ended: float | None, cache_key: str | None, artifact_id: str | None, worker: str | None,
                       history: tuple[Attempt, ...], logs: str | None, tracked: tuple[Tracked, ...],
                       checks: tuple[CheckResult, ...]) -> TaskRun:
    """``TaskRun(id, run_id, node, name, "completed", attempts, started, ended, cache_key, artifact_id,
    worker=..., history=..., logs=..., tracked=..., checks=...)``, built as :func:`cached_task_run` is.

    Every task that runs gets one (``tests/test_records.py`` pins it to the constructor).
    """
    tr = _new(TaskRun)
    _set_id(tr, id)
    _set_run_id(tr, run_id)
    _set_node(tr, node)
    _set_name(tr, name)
    _set_status(tr, "completed")
    _set_attempts(tr, attempts)
    _set_started(tr, started)
    _set_ended(tr, ended)
    _set_cache_key(tr, cache_key)
    _set_artifact_id(tr, artifact_id)
    _set_error(tr, None)
    _set_traceback(tr, None)
    _set_worker(tr, worker)
    _set_exception(tr, None)
    _set_history(tr, history)
    _set_logs(tr, logs)
    _set_source(tr, None)
    _set_tracked(tr, tracked)
    _set_checks(tr, checks)
    return tr


_new = object.__new__
(_set_id, _set_run_id, _set_node, _set_name, _set_status, _set_attempts, _set_started, _set_ended, _set_cache_key,
 _set_artifact_id, _set_error, _set_traceback, _set_worker, _set_exception, _set_history, _set_logs,
 _set_source, _set_tracked, _set_checks) = (getattr(TaskRun, f.name).__set__ for f in dataclasses.fields(TaskRun))


class Run:
    """One execution of a flow.

    Attributes:
        id: the run id.
        flow: the flow's name.
        status: ``"completed"``, ``"failed"`` or ``"cancelled"`` (``"running"`` while
            it runs, as seen from another process; ``"crashed"`` when its process died
            without recording an end).
        params: the bound parameters.
        started, ended: epoch seconds.
        task_runs: one :class:`TaskRun` per node (read from the store when the
            record itself came from :func:`flowkit.runs`).
        trigger: what started it: ``"manual"``, ``"schedule"``, ``"cli"``...
        error: the :class:`~flowkit.FlowRunError` when the run did not complete
            (for a record read from the store: the error message, as a string).
        graph: the graph that ran, dynamic maps expanded (in the running process).
        info: host, user, git commit and flow file, when known.
        store: the :class:`~flowkit.Store` it was recorded in (``None`` for a run without one).
    """

    __slots__ = ("id", "flow", "status", "params", "started", "ended", "_task_runs", "trigger", "error", "graph",
                 "value", "info", "_load", "store")

    def __init__(self, id: str, flow: str, status: str, params: dict[str, Any], started: float,
                 ended: float | None, task_runs: tuple[TaskRun, ...] | None = (), trigger: str = "manual",
                 error: FlowRunError | str | None = None, graph: FlowGraph | None = None, value: Any = None,
                 info: dict[str, Any] | None = None,
                 load: Callable[[str], tuple[TaskRun, ...]] | None = None, store: Any = None) -> None:
        self.id = id
        self.flow = flow
        self.status = status
        self.params = params
        self.started = started
        self.ended = ended
        self._task_runs = task_runs
        self.trigger = trigger
        self.error = error
        self.graph = graph
        self.value = value
        self.info = info or {}
        self._load = load
        self.store = store

    @property
    def task_runs(self) -> tuple[TaskRun, ...]:
        if self._task_runs is None:
            assert self._load is not None
            self._task_runs = self._load(self.id)
        return self._task_runs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and (self.id, self.status, self.ended) == (other.id, other.status, other.ended)

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"Run(id={self.id!r}, flow={self.flow!r}, status={self.status!r}, tasks: {counts or 'none'})"

    def result(self) -> Any:
        """The flow's return value; raises :class:`~flowkit.FlowRunError` if it did not complete."""
        if isinstance(self.error, BaseException):
            raise self.error
        if self.status != "completed":
            raise FlowRunError(f"flow {self.flow!r} run {self.id} {self.status}: {self.error}", flow=self.flow,
                               run_id=self.id, task_runs=self.failed, status=self.status)
        return self.value

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (``None`` while running)."""
        return None if self.ended is None else self.ended - self.started

    def artifact_id(self, node: str) -> str | None:
        """The artifact id of a node's result: by node id, or by task name when it names one node."""
        matches = [tr for tr in self.task_runs if tr.node == node]
        if not matches:
            matches = [tr for tr in self.task_runs if tr.name == node]
            if len(matches) > 1:
                raise KeyError(f"task {node!r} ran as several nodes in run {self.id}: "
                               f"{', '.join(tr.node for tr in matches)}; pass a node id")
        if not matches:
            raise KeyError(f"run {self.id} of flow {self.flow!r} has no node or task {node!r}")
        return matches[0].artifact_id

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

    def summary(self) -> str:
        """A few lines for people: status, counts, and each failed task with attempts and error."""
        counts = ", ".join(f"{v} {k}" for k, v in self.counts().items()) or "no tasks"
        took = f" in {self.duration:.2f}s" if self.duration is not None else ""
        lines = [f"flow {self.flow!r} run {self.id[:12]} {self.status}{took}: {counts}"]
        for tr in self.failed:
            first_line = (tr.error or "").splitlines()[0] if tr.error else "unknown error"
            lines.append(f"  failed: {tr.node} after {tr.attempts} attempt{'s' if tr.attempts != 1 else ''}: "
                         f"{first_line}")
        return mask("\n".join(lines)) or ""  # task errors are quoted: no secret's value in them

    def metrics(self) -> Any:
        """The metrics its tasks logged, as a DataFrame (see :func:`flowkit.metrics`)."""
        from flowkit.ml.tracking import metrics, metrics_of

        return metrics(self.id, store=self.store) if self.store is not None else metrics_of(self.task_runs)

    def checks(self) -> Any:
        """The results of its tasks' checks, as a DataFrame (see :func:`flowkit.ml.tracking.check_results`)."""
        from flowkit.ml.tracking import check_results, checks_of

        return check_results(self.id, store=self.store) if self.store is not None else checks_of(self.task_runs)

    def counts(self) -> dict[str, int]:
        """How many task runs ended in each status."""
        out: dict[str, int] = {}
        for tr in self.task_runs:
            out[tr.status] = out.get(tr.status, 0) + 1
        return out
