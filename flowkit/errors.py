"""The exception tree of flowkit.

Every error flowkit raises on purpose derives from :class:`FlowkitError`, so
``except fk.FlowkitError`` catches them all. Where a built-in exception says the
same thing, the flowkit error subclasses it too, so code written against plain
Python (``except TypeError``) keeps working::

    FlowkitError
    ├── DefinitionError (TypeError)       a bad @task / @flow option or target
    │   └── InvalidOptionValue (ValueError)   an option's value outside its allowed range
    ├── ParameterError (TypeError)        flow parameters that do not bind
    ├── RefUsageError (TypeError)         a Ref used as a plain value in a flow body
    ├── FlowLoadError (LookupError)       a flow reference that leads to no flow (CLI, scheduler)
    ├── FlowRunError                      a run ended failed or cancelled; see .task_runs
    ├── TaskTimeoutError (TimeoutError)   an attempt outlived its task's timeout
    ├── CacheKeyError (TypeError)         an argument with no deterministic cache key
    ├── CacheCorruptionError              a damaged artifact that cannot be recomputed
    ├── StoreError                        the store at FLOWKIT_HOME cannot be used (a full disk, too)
    │   ├── ArtifactWriteError (OSError)  an artifact's bytes could not be written; nothing half-written stays
    │   ├── BadArtifactId (ValueError)    a name given as an artifact id that is no digest; it never becomes a path
    │   ├── ArtifactSignatureError        signing is on and an artifact is not signed with the store's key
    │   └── IncompatibleArtifactError     an artifact that does not load, written under other library versions
    ├── DaskClusterError                  the Dask cluster cannot go on: no worker for too long, a lost reply
    │   └── DaskConnectionError (ConnectionError)   the Dask scheduler cannot be reached, or was lost
    ├── KilledWorkersError (RuntimeError) a task kept killing the Dask workers that ran it
    ├── ScheduleError (ValueError)        a bad cron expression or time zone
    ├── TrackingError (ValueError)        log_metric & co outside a task, or a value that is not a number
    ├── CheckFailedError                  a check on a task's output failed; the output was not committed
    ├── ServeError                        flowkit serve cannot start: a port in use, a public host without a token
    ├── LineageExportError (ConnectionError)   OpenLineage events not sent: not configured, or its backend failed
    └── RegistryError                     a bad model name, or a registry change that cannot be made
        └── ModelNotFoundError (LookupError)   no such model, version or alias

``FlowLoadError`` lives beside the flow loader, the three Dask errors in the
Dask executor, ``ArtifactWriteError`` in the artifact store, ``ServeError`` in
:mod:`flowkit.ml.serve` and ``LineageExportError`` in :mod:`flowkit.export.openlineage`;
the others here. Two exceptions stay inside flowkit and are not part of the tree:
the store's ``DamagedArtifact`` (bytes that no longer match their digest: the
engine recomputes the value, ``Store.load`` raises ``CacheCorruptionError``) and
the CLI's ``UsageProblem`` (a ``click.UsageError``, shown as a usage message).

Messages name the task, parameter or file at fault and say what to do next.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowkit.records import TaskRun

__all__ = [
    "CacheCorruptionError",
    "CacheKeyError",
    "DefinitionError",
    "FlowRunError",
    "FlowkitError",
    "ParameterError",
    "RefUsageError",
    "ScheduleError",
    "StoreError",
    "ArtifactSignatureError",
    "IncompatibleArtifactError",
    "TaskTimeoutError",
    "TrackingError",
    "CheckFailedError",
    "RegistryError",
    "ModelNotFoundError",
    "user_traceback",
]


class FlowkitError(Exception):
    """Base class of every error flowkit raises on purpose."""


class DefinitionError(FlowkitError, TypeError):
    """A ``@task`` or ``@flow`` was given a bad option or a target it cannot wrap.

    Raised at decoration time (or by ``with_options``), before anything runs.
    """


class InvalidOptionValue(DefinitionError, ValueError):
    """An option has the right name but a value outside its allowed range."""


class ParameterError(FlowkitError, TypeError):
    """Flow parameters that do not bind to the flow's signature."""


class RefUsageError(FlowkitError, TypeError):
    """A :class:`~flowkit.Ref` was used as a plain value inside a flow body.

    While a flow is traced, a task call returns a placeholder for a value that
    does not exist yet; it can only be passed to other tasks (or returned).
    """


class FlowRunError(FlowkitError):
    """A flow run ended ``failed`` or ``cancelled``.

    Attributes:
        flow: the flow's name.
        run_id: the id of the run.
        task_runs: the failed task runs, in the order they failed.
        status: the run's final status.

    The first failed task's original exception is chained as ``__cause__``, with
    its traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        flow: str,
        run_id: str,
        task_runs: Sequence[TaskRun] = (),
        status: str = "failed",
    ) -> None:
        from flowkit.secrets import mask  # the message quotes task errors: no secret's value in it

        super().__init__(mask(message))
        self.flow = flow
        self.run_id = run_id
        self.task_runs = list(task_runs)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_flow_run_error, (self.args[0], self.flow, self.run_id, self.task_runs, self.status))


def _rebuild_flow_run_error(message: str, flow: str, run_id: str, task_runs: list, status: str) -> FlowRunError:
    return FlowRunError(message, flow=flow, run_id=run_id, task_runs=task_runs, status=status)


class TaskTimeoutError(FlowkitError, TimeoutError):
    """An attempt of a task ran longer than the task's ``timeout``."""


class CacheKeyError(FlowkitError, TypeError):
    """A task argument has no deterministic identity, so no cache key can be computed."""


class CacheCorruptionError(FlowkitError):
    """A stored artifact is damaged and the value cannot be recomputed."""


class StoreError(FlowkitError):
    """The store (metadata database or artifact folder) cannot be used."""


class ArtifactSignatureError(StoreError):
    """With signing on, an artifact lacks a valid signature under the store's key: flowkit did not write
    it with that key, or its record was changed since. Nothing of it was read or unpickled.

    ``artifact_id`` names the artifact.
    """

    def __init__(self, message: str, artifact_id: str) -> None:
        super().__init__(message)
        self.artifact_id = artifact_id


class IncompatibleArtifactError(StoreError):
    """An artifact did not load, and the library versions that wrote it differ from this process's.

    ``recorded`` and ``current`` map library names (``python``, ``pandas``...) to versions; the
    load's own exception is chained.
    """

    def __init__(self, message: str, artifact_id: str, recorded: dict[str, str], current: dict[str, str]) -> None:
        super().__init__(message)
        self.artifact_id = artifact_id
        self.recorded = recorded
        self.current = current


class ScheduleError(FlowkitError, ValueError):
    """A cron expression or time zone that cannot be used for a schedule."""


class TrackingError(FlowkitError, ValueError):
    """``fk.log_metric`` and friends called outside a running task, or with a bad name or value."""


class CheckFailedError(FlowkitError):
    """A blocking check on a task's output failed (or raised), so the output was not committed.

    It is never retried; downstream tasks are skipped, as for any failure.

    Attributes:
        task: the task's name.
        check: the name of the (first) failed check.
        observed: what the check saw (a metric value, a row count...).
        results: every check result of this output, as :class:`~flowkit.records.CheckResult`.
    """

    def __init__(self, message: str, *, task: str, check: str, observed: Any = None,
                 results: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.task = task
        self.check = check
        self.observed = observed
        self.results = tuple(results)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_check_failed, (self.args[0], self.task, self.check, self.observed, self.results,
                                        self.__dict__))


def _rebuild_check_failed(message: str, task: str, check: str, observed: Any, results: tuple[Any, ...],
                          state: dict[str, Any] | None = None) -> CheckFailedError:
    exc = CheckFailedError(message, task=task, check=check, observed=observed, results=results)
    if state:
        exc.__dict__.update(state)
    return exc


class RegistryError(FlowkitError):
    """A model registry request that cannot be carried out: a bad name, an unserializable model..."""


class ModelNotFoundError(RegistryError, LookupError):
    """No registered model, version or alias matches what was asked for (the message says which)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _is_flowkit(filename: str) -> bool:
    path = os.path.abspath(filename)
    # A Dask worker may have flowkit installed elsewhere than this process.
    return path.startswith(_PACKAGE + os.sep) or f"{os.sep}site-packages{os.sep}flowkit{os.sep}" in path


def _from_user_frame(te: traceback.TracebackException, seen: set[int]) -> None:
    """Drop, in ``te`` and the exceptions chained to it, the frames before the user's code.

    Those are the frames of whatever called the task (a thread pool, a Dask worker) up to
    the end of the first run of flowkit's own frames. A stack that is flowkit's to the
    end (an error flowkit raised itself, such as a timeout) is left whole.
    """
    if id(te) in seen:
        return
    seen.add(id(te))
    frames = list(te.stack)
    first = next((i for i, f in enumerate(frames) if _is_flowkit(f.filename)), None)
    if first is not None:
        user = next((i for i in range(first, len(frames)) if not _is_flowkit(frames[i].filename)), None)
        if user is not None:
            te.stack = traceback.StackSummary.from_list(frames[user:])
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _from_user_frame(chained, seen)


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback of a task's exception, starting at the user's frame.

    Like ``"".join(traceback.format_exception(exc))``, chained exceptions included,
    without the frames of flowkit and of the executor that ran the task.
    """
    te = traceback.TracebackException.from_exception(exc)
    if isinstance(exc, CheckFailedError):  # the check's verdict is the whole story; its frames are flowkit's
        return "".join(te.format_exception_only())
    _from_user_frame(te, set())
    return "".join(te.format())
