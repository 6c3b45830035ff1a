"""What a worker runs for one node: call it, time it out, store and load its value, report.

This module is small and top-level on purpose: it is what crosses to a Dask
worker, so it must pickle by reference and import nothing heavy. The node's
arguments arrive as a template (:mod:`flowkit._template`), filled here from
the upstream values.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from xxhash import xxh3_128_hexdigest

from flowkit._template import execute
from flowkit.context import TaskContext
from flowkit.errors import StoreError
from flowkit.faults import FAULTS, fault
from flowkit.logs import _CURRENT, task_output
from flowkit.store.artifacts import ArtifactWriteError
from flowkit.store.serializers import load_artifact

__all__ = ["ArtifactInfo", "Output", "call_with_timeout", "collect", "load_artifact", "on_dask", "run_task",
           "started_topic", "store_value", "unpack_report"]


def call_with_timeout(name: str, timeout: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` in a helper thread and stop waiting for it after ``timeout`` seconds.

    Python cannot kill a thread: a timed-out attempt is abandoned (it runs on
    in the background, its result discarded) and the caller moves on at once.
    """
    import contextvars
    import threading

    from flowkit.errors import TaskTimeoutError

    outcome: list[Any] = []
    context = contextvars.copy_context()  # the attempt's output is still the task's

    def attempt() -> None:
        try:
            outcome.append((True, context.run(fn, *args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome.append((False, exc))

    thread = threading.Thread(target=attempt, name=f"flowkit-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise TaskTimeoutError(f"task {name!r} timed out after {timeout:g}s; the attempt was abandoned")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def collect(*values: Any) -> list[Any]:
    """The function of a map node: the list of its children's values."""
    return list(values)


# --- running and loading with a store ---------------------------------------------------------

#: Values whose bytes are at most this size are kept in the metadata database
#: rather than in a file of their own (no extra fsync, one transaction).
INLINE_MAX = 32 * 1024

#: Types whose values are pickled and, when small, kept inline with no more thought: most results.
_PLAIN_TYPES = {kind: f"{kind.__module__}.{kind.__qualname__}" for kind in (type(None), bool, int, float, str, bytes)}


class Output:
    """What a node call returns besides its value: its artifact record, captured output, and extras.

    ``extras`` is ``None`` or ``(tracked, checks)``: the :class:`~flowkit.records.Tracked`
    entries the task logged and the :class:`~flowkit.records.CheckResult` of its checks.
    """

    __slots__ = ("value", "info", "logs", "extras")

    def __init__(self, value: Any, info: ArtifactInfo | None, logs: str | None = None, extras: Any = None) -> None:
        self.value = value
        self.info = info
        self.logs = logs
        self.extras = extras

    def __reduce__(self) -> tuple[Any, ...]:
        return (Output, (self.value, self.info, self.logs, self.extras))


class ArtifactInfo(tuple):  # noqa: SLOT001 - a plain tuple that pickles cheaply
    """(digest, serializer, size, description, inline bytes or None, uri or None)."""

    __slots__ = ()

    # itemgetter rather than a lambda: read without a Python frame (a few times for each task run)
    digest = property(itemgetter(0))
    serializer = property(itemgetter(1))
    size = property(itemgetter(2))
    description = property(itemgetter(3))
    inline = property(itemgetter(4))
    uri = property(itemgetter(5))


def store_value(files: Any, value: Any, serializer: str | None, node: str | None = None,
                key: str | None = None) -> ArtifactInfo | None:
    """Serialize and store a value; ``None`` (and a warning naming ``node``) if it cannot be serialized.

    Raises:
        StoreError: the artifact store could not write the bytes (a full disk...): the message
            names the task, its cache key, the path and the space left; nothing half-written stays,
            and the value is not serialized and written a second time.
    """
    kind = type(value)
    if kind in _PLAIN_TYPES and (serializer is None or serializer == "pickle"):
        # What the general path below does for these, without asking each serializer about them.
        data = pickle.dumps(value, protocol=5)
        if len(data) <= INLINE_MAX:
            return ArtifactInfo((xxh3_128_hexdigest(data), "pickle", len(data), {"type": _PLAIN_TYPES[kind]}, data,
                                 None))
    from flowkit.hashing import digest
    from flowkit.store.serializers import describe, dump_to, dumps, streamable_size

    estimate = streamable_size(value, serializer)
    if estimate is not None and estimate > INLINE_MAX:
        # A large frame or array goes straight to its file, hashed on the way.
        used: list[str] = []
        try:
            d, size, path = files.write_stream(lambda f: used.append(dump_to(value, serializer, f)))
            return ArtifactInfo((d, used[0], size, describe(value), None, str(path)))
        except ArtifactWriteError as exc:
            raise _not_stored(node, key, exc) from exc
        except Exception:  # noqa: BLE001 - e.g. a column Arrow cannot hold: fall back to the general path
            pass
    try:
        encoded = dumps(value, serializer)
    except Exception as exc:  # noqa: BLE001 - the run goes on, only the cache entry is lost
        import logging

        kind = type(value)
        logging.getLogger("flowkit").warning(
            "the result of task %r (a %s.%s) could not be serialized, so it is not cached: %s: %s; return a "
            "value that can be pickled, or mark the task cache=False", node or "?", kind.__module__,
            kind.__qualname__, type(exc).__name__, exc)
        return None
    if serializer is not None and encoded.serializer != serializer:
        _not_as_asked(node, serializer, value)
    data = encoded.data
    d = digest(data)
    size = len(data) if isinstance(data, bytes) else data.nbytes
    if size <= INLINE_MAX:
        return ArtifactInfo((d, encoded.serializer, size, describe(value), bytes(data), None))
    try:
        path = files.write(d, data)
    except ArtifactWriteError as exc:
        raise _not_stored(node, key, exc) from exc
    return ArtifactInfo((d, encoded.serializer, size, describe(value), None, str(path)))


_warned: set[tuple[str, type]] = set()


def _not_as_asked(node: str | None, serializer: str, value: Any) -> None:
    """Warn, once per serializer and type in a process, that a result was not stored as its task asked."""
    from flowkit.store.serializers import TAKES

    kind = type(value)
    if (serializer, kind) in _warned:
        return
    _warned.add((serializer, kind))
    import logging

    takes = TAKES.get(serializer)
    why = (f"{serializer!r} takes only {takes[0]}" if takes is not None and not takes[1](value)
           else f"{serializer!r} could not write it")
    logging.getLogger("flowkit").warning(
        "the result of task %r (a %s.%s) was stored with pickle, not the serializer=%r its task asks for: %s",
        node or "?", kind.__module__, kind.__qualname__, serializer, why)


def _not_stored(node: str | None, key: str | None, exc: ArtifactWriteError) -> StoreError:
    what = f" (cache key {key})" if key else ""
    return StoreError(f"storing the result of task {node or '?'!r}{what} failed: {exc}. {exc.hint} and run the "
                      f"flow again: what was stored before is kept")


def run_task(node: str, sink: Any, files: Any, serializer: str | None, fn: Callable[..., Any],
             args: tuple[Any, ...], kwargs: dict[str, Any] | None, ctx: tuple[Any, ...], *values: Any) -> Any:
    """Run a task node with its output captured, check its result and, given ``files``, store it.

    ``ctx`` is ``(run id, task name, cache key, store, checks)``: the task call is current
    (:mod:`flowkit.context`) while it runs, so what it logs is gathered; then its checks run
    on the value (:mod:`flowkit.ml.checks`), and a blocking failure raises
    :class:`~flowkit.CheckFailedError` before anything is stored. Returns the bare value
    when there is nothing else to report, else an :class:`Output`. A failure carries what
    the task logged as ``__flowkit_extras__``.
    """
    if FAULTS:
        fault("task.before_start")
    context = TaskContext(node, sink, ctx[0], ctx[1], ctx[2], ctx[3])
    checked: tuple[Any, ...] = ()
    try:
        value, logs = task_output(context, execute, fn, args, kwargs, *values)
        if ctx[4]:
            from flowkit.ml.checks import run_checks

            token = _CURRENT.set(context)  # a check may read what the task logged, or the store
            try:
                checked = run_checks(ctx[4], value, context)
            except BaseException as exc:
                if logs:
                    exc.__flowkit_logs__ = logs  # type: ignore[attr-defined]
                raise
            finally:
                _CURRENT.reset(token)
    except BaseException as exc:
        if context.tracked:
            exc.__flowkit_extras__ = (tuple(context.tracked), ())  # type: ignore[attr-defined]
        raise
    info = store_value(files, value, serializer, node, ctx[2]) if files is not None else None
    extras = (tuple(context.tracked), checked) if context.tracked or checked else None
    if info is None and logs is None and extras is None:
        return value
    return Output(value, info, logs, extras)


def unpack_report(report: bytes | None) -> tuple[Any, str | None, Any]:
    """(artifact record, captured output, extras) from the report :func:`on_dask` sent with ``done``.

    The report is opaque bytes to the executor (events travel as msgpack, which would turn
    records into lists); only this module reads it.
    """
    if report is None:
        return None, None, None
    import pickle

    return pickle.loads(report)  # noqa: S301 - written by on_dask in a worker of this same run


def started_topic(topic: str) -> str:
    """The topic of a run's ``start`` events, beside its topic of ``done`` events."""
    return f"{topic}-start"


def on_dask(topic: str, node: str, fn: Callable[..., Any], args: tuple[Any, ...], *deps: Any) -> Any:
    """What a Dask worker runs for one node: ``fn(*args, *deps)``, reporting to the client.

    Upstream values arrive as ``deps`` (Dask resolves the futures on the
    worker); an upstream :class:`Output` is unwrapped to its value. Small
    events go through the scheduler: ``start`` as the call begins, on a topic
    of its own (:func:`started_topic`), which the scheduler's plugin reads to
    tell who was running when a worker died
    (:mod:`flowkit.executors._dask_deaths`) and the client only when a live
    display wants it; and ``done``, to the client, with the timings and the
    artifact record. The value itself stays on the worker.
    """
    import pickle
    import time

    from distributed import get_worker

    from flowkit.logs import capturing

    worker = get_worker()
    worker.log_event(started_topic(topic), ("start", node, worker.get_current_task(), worker.address))
    started = time.time()
    values = [d.value if type(d) is Output else d for d in deps]
    with capturing():
        out = fn(*args, *values)
    report = pickle.dumps((out.info, out.logs, out.extras)) if type(out) is Output else None
    worker.log_event(topic, ("done", node, worker.get_current_task(), worker.address, started, time.time(), report))
    return out
