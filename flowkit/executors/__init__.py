"""Executors: where node functions run. The protocol the engine talks to.

An :class:`Executor` is an inert, reusable configuration. For each run the
engine opens a :class:`Session` (``with executor.session(clock) as s``) and
only ever reads two attributes of it (``eager``, ``in_process``) and calls four methods:

- ``submit(key, fn, args, deps, **hints)``: run ``fn(*args, *values)`` where
  ``values`` are the results behind the ``deps`` handles (handles are whatever
  the session returned in earlier completions: the value itself in-process, a
  future on Dask, so data can stay where it was computed). ``hints`` describe
  the task; a session may use or ignore each of them (see :meth:`Session.submit`).
  ``on_running``, when given, is a callable the session calls with ``key`` once
  the call really begins (not while it waits in a queue), from the thread that
  calls ``submit`` or ``wait``. A session whose ``eager`` attribute is true returns
  the handle at once (a future), and the engine may pass it to dependents before
  the value exists;
- ``wait(timeout)``: block until at least one submitted call has finished (or
  ``timeout`` seconds have passed) and return every :class:`Completion`
  gathered since the last call (possibly none, after a timeout);
- ``fetch(handles)``: the values behind handles (for the flow's output);
- ``cancel(keys=None)``: stop what is queued (all, or those submissions); running
  calls may finish in the background.

Readiness, caching, retries and recording belong to the engine, never here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol, runtime_checkable

from flowkit._worker import Output
from flowkit.clock import Clock

__all__ = ["Completion", "Executor", "Session", "completed"]


class Completion(NamedTuple):
    """One finished call: its key, its result handle or error, timings, worker.

    When the call returned an :class:`~flowkit._worker.Output` (a value and
    the record of its stored artifact), ``handle`` stands for the value and
    ``info`` is the artifact record; otherwise ``info`` is ``None``. ``lost``
    names the workers of earlier attempts of this same submission that died
    with their worker (Dask recomputed them); ``logs`` is the task's captured output;
    ``extras`` what it logged and its check results (opaque to a session: passed on as is).
    """

    key: str
    handle: Any
    error: BaseException | None
    started: float
    ended: float
    worker: str | None
    info: Any = None
    lost: tuple[str, ...] = ()
    logs: str | None = None
    extras: Any = None


def completed(key: str, result: Any, started: float, ended: float, worker: str | None) -> Completion:
    """The completion of a call that returned ``result``: what a session reports, without looking inside.

    A node call may return its value wrapped with the record of its stored artifact and
    its captured output; this unwraps it, so a session passes on whatever ``fn`` returned.
    """
    # Built as a plain tuple is: a NamedTuple's __new__ is a Python frame, and every task run makes one.
    if type(result) is Output:
        return _completion((key, result.value, None, started, ended, worker, result.info, (), result.logs,
                            result.extras))
    return _completion((key, result, None, started, ended, worker, None, (), None, None))


_completion = functools.partial(tuple.__new__, Completion)


@runtime_checkable
class Session(Protocol):
    """One run's use of an executor (see the module docstring).

    Attributes:
        eager: ``submit`` returns a handle at once (a future) that dependents may
            take before the value exists, so the engine hands a node over as soon
            as its inputs are submitted rather than finished (Dask).
        in_process: calls run in this process, so a task's output can be streamed
            to the run's listener live (the local executors).
    """

    eager: bool
    in_process: bool

    def submit(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], deps: Sequence[Any],
               **hints: Any) -> Any:
        """Start ``fn(*args, *values of deps)``; return its handle if ``eager``, else anything.

        The hints a session may receive, each of which it may ignore: ``name``
        (the task name, for display and grouping), ``tags`` (the task's tags),
        ``resources`` (what a worker must offer, as ``{"GPU": 1}``) and ``code``
        (the task's function, for a session that must ship user code to remote
        workers; the call itself is ``fn``). Loading a cached value and
        collecting a map's items are submitted with fewer hints or none.
        """
        ...

    def wait(self, timeout: float | None = None) -> list[Completion]: ...

    def fetch(self, handles: Sequence[Any]) -> list[Any]: ...

    def cancel(self, keys: Sequence[str] | None = None) -> None: ...


@runtime_checkable
class Executor(Protocol):
    """A reusable executor configuration that opens one session per run."""

    def session(self, clock: Clock) -> AbstractContextManager[Session]: ...
