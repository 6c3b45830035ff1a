"""Running a flow: :func:`run_flow`, the one entry every run goes through.

``flow(...)``, ``flow.run(...)``, the CLI and the scheduler all end here.
:func:`run_flow` does a run's setup in one place: bind and trace the flow,
choose its executor, clock and store, resolve ``refresh=`` and ``resume=``,
then :func:`run_graph` computes every node's cache key, starts the listeners
(:func:`run_listeners`: the store's :class:`~flowkit.recording.Recorder`, the
OpenLineage exporter when configured, then the caller's), opens an executor
session, lets the engine's :class:`~flowkit.engine.Loop` plan and run the
graph, fetches the flow's return value and announces the final record.
What happens to each node is the engine's business (:mod:`flowkit.engine`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import threading
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx

from flowkit import heap
from flowkit._template import fill
from flowkit.cache import KeyMaker
from flowkit.clock import Clock, SystemClock
from flowkit.engine import Loop, RunState, error_text
from flowkit.errors import FlowRunError, ParameterError, StoreError
from flowkit.events import RunFinished, RunListener, RunStarted, broadcast
from flowkit.export import openlineage
from flowkit.executors import Executor
from flowkit.graph import FlowGraph
from flowkit.logs import capturing
from flowkit.records import Run, TaskRun
from flowkit.recording import Recorder
from flowkit.store import Store

if TYPE_CHECKING:
    from flowkit.flow import Flow

__all__ = ["run_flow", "run_graph", "run_listeners"]


def _graph_of(state: RunState, graph: FlowGraph) -> FlowGraph:
    """The graph that ran: the traced one, or a copy with dynamic maps expanded."""
    if not state.expanded:
        return graph
    return FlowGraph(graph.flow, graph.params, state.nodes, graph.output, graph.output_deps)



@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[list[int]]:
    """While a run goes on, make ``SIGTERM`` end it as Ctrl-C does: ``cancelled``, its end recorded.

    ``kill``, systemd, Kubernetes and CI stop a process with ``SIGTERM``, whose default
    ends it on the spot with the run left ``running``. The handler is installed only
    in the main thread (the only one Python delivers signals to) and only over the
    default one: a handler the program installed itself is left to decide. The first
    ``SIGTERM`` raises :class:`KeyboardInterrupt`; more while the run records its end
    are ignored. The previous handler is back when the run ends. Yields the signals
    received (empty unless one came).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield received
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield received
        return

    def interrupt(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _held_signals() -> Iterator[list[int]]:
    """While a finished run records its end, hold Ctrl-C and ``SIGTERM`` until the record is committed.

    Without this, a signal in that moment ends the process mid-write (``SIGTERM``'s default) or
    unwinds it (Ctrl-C), and a run that had finished reads ``crashed``. Only in the main thread, and
    only over the default handlers. Yields the signals held; the caller then interrupts.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield held
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {sig: signal.getsignal(sig) for sig in defaults}
    mine = [sig for sig, default in defaults.items() if previous[sig] is default]
    for sig in mine:
        signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        for sig in mine:
            signal.signal(sig, previous[sig])


def _failure_message(flow: str, records: list[TaskRun], status: str) -> str:
    if status == "cancelled":
        return f"flow {flow!r} was cancelled (interrupted); finished tasks were kept"
    failed = [tr for tr in records if tr.status == "failed"]
    first = failed[0]
    message = f"flow {flow!r} failed: task {first.name!r} (node {first.node!r}) raised {first.error}"
    if len(failed) > 1:
        more = ", ".join(repr(tr.node) for tr in failed[1:6]) + (", ..." if len(failed) > 6 else "")
        message += f"; {len(failed) - 1} more failed: {more}"
    skipped = sum(1 for tr in records if tr.status == "skipped")
    if skipped:
        message += f"; {skipped} downstream task{'s' if skipped != 1 else ''} skipped"
    return message


def run_flow(flow: Flow[..., Any], params: dict[str, Any] | None = None, *, refresh: bool | Iterable[str] = False,
             resume: str | None = None, fail_fast: bool = False, run_id: str | None = None,
             trigger: str = "manual", scheduled: float | None = None, listeners: Sequence[RunListener] = (),
             store: Store | str | os.PathLike[str] | bool | None = None, triggered_by: str | None = None,
             reason: Any = None) -> Run:
    """Run a flow and return its :class:`~flowkit.Run` record: the entry behind ``flow.run``.

    Args:
        flow: the flow.
        params: its parameters by name (defaults fill the rest).
        refresh: ``True`` recomputes every task; task names recompute those tasks and
            everything downstream of them.
        resume: the id of an earlier run of this flow: besides everything cached, reuse
            what its ``cache=False`` tasks produced.
        fail_fast: at the first task that fails for good, submit nothing more.
        run_id: the new run's id (default: a random one).
        trigger: what started it, recorded with it (``"manual"``, ``"cli"``, ``"schedule"``...).
        scheduled: for a scheduled run, the time it was due (epoch seconds).
        triggered_by: the id of the run that started this one (see :func:`flowkit.trigger`).
        reason: why it was started: text, or a JSON-compatible dict (a drift report's artifact id...).
        listeners: told of every event of the run (:mod:`flowkit.events`), after the store's
            recorder.
        store: overrides the flow's ``store=`` option: a folder, an :class:`~flowkit.Store`,
            or ``False`` for none.

    A task failure does not raise: the run's status is ``"failed"`` and ``run.result()``
    raises :class:`~flowkit.FlowRunError`. Bad parameters raise
    :class:`~flowkit.errors.ParameterError` before anything runs; Ctrl-C cancels the run
    and re-raises.
    """
    from flowkit.executors.local import LocalExecutor
    from flowkit.recording import run_context
    from flowkit.tracing import trace_flow

    bound = flow.bind_mapping(params or {})
    graph = trace_flow(flow.name, flow._body, bound)
    options = flow.options
    executor = options.executor or LocalExecutor()
    clock = options.clock or SystemClock()
    chosen = store_of(options.store if store is None else store)
    salt = None
    if resume is not None:
        salt = _resumed_salt(flow.name, chosen, resume)
    forced: bool | set[str] = refresh is True
    if refresh and refresh is not True:
        names = {refresh} if isinstance(refresh, str) else set(refresh)
        known = {node.task.name for node in graph.nodes.values()}
        unknown = sorted(names - known)
        if unknown:
            raise ParameterError(f"flow {flow.name!r}: refresh= names unknown task(s) {', '.join(unknown)}; "
                                 f"its tasks are: {', '.join(sorted(known))}")
        forced = {nid for nid, node in graph.nodes.items() if node.task.name in names}
    context = None
    if chosen is not None:
        context = run_context(_source_file(flow.fn))
        if scheduled is not None:
            context["scheduled"] = scheduled
        if triggered_by is not None or reason is not None:
            context["triggered_by"] = triggered_by
            context["trigger_reason"] = json.loads(json.dumps(reason, default=str))  # as it reads back
    with heap.frozen():  # the collections the run makes look at what it made only (flowkit.heap)
        return run_graph(graph, executor, clock, store=chosen, run_id=run_id, trigger=trigger, refresh=forced,
                         salt=salt, context=context, task_defaults=options.task_defaults, fail_fast=fail_fast,
                         listeners=listeners)


def store_of(option: Store | str | os.PathLike[str] | bool | None) -> Store | None:
    """The store a ``store=`` option names: ``None``/``True`` the default one, ``False`` none."""
    if option is False:
        return None
    if isinstance(option, Store):
        return option
    return Store.open(None if option is None or option is True else option)


def _resumed_salt(flow: str, store: Store | None, resume: str) -> str:
    if store is None:
        raise ParameterError(f"flow {flow!r}: resume= needs a store, but this flow has store=False")
    try:
        resumed = store.run(resume)
    except KeyError as exc:
        raise ParameterError(f"flow {flow!r}: cannot resume: {exc.args[0]}") from None
    if resumed.flow != flow:
        raise ParameterError(f"flow {flow!r}: run {resumed.id} is a run of flow {resumed.flow!r}, not of this flow")
    return store.cache_salt(resumed.id)[1]


def _source_file(fn: Any) -> str | None:
    try:
        return inspect.getsourcefile(fn)
    except TypeError:
        return None


def run_graph(
    graph: FlowGraph,
    executor: Executor,
    clock: Clock,
    *,
    store: Store | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    refresh: bool | Collection[str] = False,
    salt: str | None = None,
    context: dict[str, Any] | None = None,
    task_defaults: dict[str, Any] | None = None,
    fail_fast: bool = False,
    listeners: Sequence[RunListener] = (),
) -> Run:
    """Run every node of a traced ``graph`` and return the :class:`Run` record.

    Args:
        store: where results are cached and the run recorded (``None``: in memory only).
        refresh: ``True`` to recompute every task, or node ids to recompute (with
            everything downstream of them).
        salt: what ``cache=False`` keys are unique to (default: this run's id; a
            resumed run passes the salt of the run it resumes).
        task_defaults: the flow's defaults for its tasks' retry and timeout options.
        fail_fast: stop submitting tasks at the first final failure.
        listeners: told of every event (:mod:`flowkit.events`); ``RunFinished`` comes in
            every case, for a cancelled run too.

    Never raises for a task failure (the run is ``failed`` and ``run.result()``
    raises). A ``KeyboardInterrupt`` ends the run ``cancelled`` and is re-raised; so
    does ``SIGTERM`` in the main thread, unless a handler of its own is installed
    (:func:`_terminate_as_interrupt`).
    """
    run_id = run_id or uuid.uuid4().hex
    salt = salt or run_id
    started = clock.time()
    keymaker = KeyMaker(salt, store) if store is not None else None
    keys: dict[str, str] = {}
    forced: Collection[str] = ()
    if keymaker is not None:
        keys = keymaker.keys(graph.nodes)
        if refresh is True:
            forced = graph.nodes.keys()
        elif refresh:
            forced = set(refresh)
            for node_id in list(forced):
                forced |= nx.descendants(graph.nx, node_id)
    everyone = run_listeners(store, run_id, clock) + list(listeners)
    emit = broadcast(everyone) if everyone else None
    if emit is not None:
        emit(RunStarted(run_id, graph.flow, graph.params, started, trigger, salt, context or {}))
    value = None
    status = "completed"
    loop = None
    announced = False  # RunFinished was sent
    with _terminate_as_interrupt() as terminated:
        try:
            with capturing(), executor.session(clock) as session:
                loop = Loop(graph, session, clock, run_id, store, keymaker, forced, task_defaults, fail_fast, emit,
                            stream_output=bool(listeners))
                state = loop.state
                try:
                    loop.plan(keys)
                    loop.loop()
                    if state.failed:
                        status = "failed"
                    else:
                        outputs = session.fetch([state.handles[d] for d in graph.output_deps])
                        value = fill(graph.output, outputs)
                except KeyboardInterrupt as interrupt:
                    loop.cancel()
                    run = _record(graph, state, "cancelled", started, clock.time(), trigger, None, context, store)
                    how = " by SIGTERM" if terminated else ""
                    interrupt.add_note(f"flowkit: run {run_id} of flow {graph.flow!r} was cancelled{how}; "
                                       f"{run.counts().get('completed', 0)} finished task(s) kept")
                    if emit is not None:
                        announced = True
                        emit(RunFinished(run))
                    raise
        except BaseException as exc:
            if emit is not None and not announced:  # the executor failed to start or stop, or flowkit itself
                cancelled = isinstance(exc, KeyboardInterrupt)
                error = ("interrupted" if cancelled else error_text(exc) if isinstance(exc, StoreError)
                         else f"flowkit internal error: {error_text(exc)}")
                if loop is not None:
                    with contextlib.suppress(Exception):  # the task runs that had finished are kept
                        loop.record_quick()
                records = tuple(loop.state.records) if loop is not None else ()
                emit(RunFinished(Run(run_id, graph.flow, "cancelled" if cancelled else "failed", graph.params, started,
                                     clock.time(), records, trigger, error, graph, None, context)))
            raise
    with _held_signals() as held:
        run = _record(graph, state, status, started, clock.time(), trigger, value, context, store)
        if emit is not None:
            emit(RunFinished(run))
    if held:  # the run had finished: its end is recorded as it was, and now the process stops as asked
        sigterm = held[0] == getattr(signal, "SIGTERM", None)
        interrupt = KeyboardInterrupt("SIGTERM") if sigterm else KeyboardInterrupt()
        interrupt.add_note(f"flowkit: run {run_id} of flow {graph.flow!r} had finished ({status}) when "
                           f"{'SIGTERM' if sigterm else 'Ctrl-C'} came; its end is recorded")
        raise interrupt
    return run


def run_listeners(store: Store | None, run_id: str, clock: Clock) -> list[RunListener]:
    """The listeners every run has, before the caller's: the one place that decides them.

    The store's :class:`~flowkit.recording.Recorder` first (a run with a store), then the
    OpenLineage exporter while OpenLineage is configured (:mod:`flowkit.export.openlineage`;
    deciding that imports nothing of the client). They do not make the run stream task
    output and starts, as a caller's listeners do (``Loop(stream_output=...)``).
    """
    found: list[RunListener] = [Recorder(store, run_id, clock)] if store is not None else []
    lineage = openlineage.listener(store)
    if lineage is not None:
        found.append(lineage)
    return found


def _record(graph: FlowGraph, state: RunState, status: str, started: float, ended: float, trigger: str,
            value: Any, context: dict[str, Any] | None, store: Store | None = None) -> Run:
    error = None
    if status != "completed":
        failed = [tr for tr in state.records if tr.status == "failed"]
        error = FlowRunError(_failure_message(graph.flow, state.records, status), flow=graph.flow,
                             run_id=state.run_id, task_runs=failed, status=status)
        if failed:
            error.__cause__ = failed[0].exception
    return Run(state.run_id, graph.flow, status, graph.params, started, ended, tuple(state.records), trigger,
               error, _graph_of(state, graph), value, context, store=store)
