"""Running a traced flow: keys, the run record, the executor session, the engine loop.

:func:`run_graph` computes every node's cache key, opens the run's record in
the store, starts an executor session, lets the engine's :class:`~flowkit.engine.Loop`
plan and run the graph, then fetches the flow's return value and closes the
record. What happens to each node is the engine's business (:mod:`flowkit.engine`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Collection
from typing import Any

import networkx as nx

from flowkit._template import fill
from flowkit.cache import KeyMaker
from flowkit.clock import Clock
from flowkit.engine import Loop, RunListener, RunState, error_text
from flowkit.errors import FlowRunError
from flowkit.executors import Executor
from flowkit.graph import FlowGraph
from flowkit.logs import capturing
from flowkit.records import Run, TaskRun
from flowkit.recording import Recorder
from flowkit.store import Store

__all__ = ["run_graph"]


def _graph_of(state: RunState, graph: FlowGraph) -> FlowGraph:
    """The graph that ran: the traced one, or a copy with dynamic maps expanded."""
    if not state.expanded:
        return graph
    return FlowGraph(graph.flow, graph.params, state.nodes, graph.output, graph.output_deps)



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
    listener: RunListener | None = None,
    on_end: Callable[[Run], None] | None = None,
) -> Run:
    """Run every node of ``graph`` and return the :class:`Run` record.

    Args:
        store: where results are cached and the run recorded (``None``: in memory only).
        refresh: ``True`` to recompute every task, or node ids to recompute (with
            everything downstream of them).
        salt: what ``cache=False`` keys are unique to (default: this run's id; a
            resumed run passes the salt of the run it resumes).
        task_defaults: the flow's defaults for its tasks' retry and timeout options.
        fail_fast: stop submitting tasks at the first final failure.
        listener: told of the plan, each task's start, end and output (progress displays).

    Never raises for a task failure (the run is ``failed`` and ``run.result()``
    raises). A ``KeyboardInterrupt`` ends the run ``cancelled`` and is re-raised.
    ``on_end`` receives the final record in every case, the cancelled one too.
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
    recorder = Recorder(store, run_id, clock) if store is not None else None
    if recorder is not None:
        recorder.start(graph.flow, graph.params, started, trigger, salt, context or {})
    value = None
    status = "completed"
    loop = None
    files = store.digesting_files() if store is not None else contextlib.nullcontext()
    try:
        with capturing(), files, executor.session(clock) as session:
            loop = Loop(graph, session, clock, run_id, store, keymaker, recorder, forced, task_defaults, fail_fast,
                         listener)
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
                run = _record(graph, state, "cancelled", started, clock.time(), trigger, None, context)
                interrupt.add_note(f"flowkit: run {run_id} of flow {graph.flow!r} was cancelled; "
                                   f"{run.counts().get('completed', 0)} finished task(s) kept")
                _end(recorder, run, on_end)
                raise
    except BaseException as exc:
        if recorder is not None and not recorder.finished:
            if isinstance(exc, KeyboardInterrupt):  # while the executor started or stopped
                recorder.finish("cancelled", clock.time(), "interrupted")
            else:
                recorder.finish("failed", clock.time(), f"flowkit internal error: {error_text(exc)}")
        raise
    run = _record(graph, state, status, started, clock.time(), trigger, value, context)
    _end(recorder, run, on_end)
    return run


def _end(recorder: Recorder | None, run: Run, on_end: Callable[[Run], None] | None) -> None:
    if recorder is not None:
        recorder.finish(run.status, run.ended or 0.0, str(run.error) if run.error is not None else None)
    if on_end is not None:
        on_end(run)


def _record(graph: FlowGraph, state: RunState, status: str, started: float, ended: float, trigger: str,
            value: Any, context: dict[str, Any] | None) -> Run:
    error = None
    if status != "completed":
        failed = [tr for tr in state.records if tr.status == "failed"]
        error = FlowRunError(_failure_message(graph.flow, state.records, status), flow=graph.flow,
                             run_id=state.run_id, task_runs=failed, status=status)
        if failed:
            error.__cause__ = failed[0].exception
    return Run(state.run_id, graph.flow, status, graph.params, started, ended, tuple(state.records), trigger,
               error, _graph_of(state, graph), value, context)
