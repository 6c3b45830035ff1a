"""The engine: the one loop that runs a :class:`~flowkit.FlowGraph`.

The engine owns the policy (readiness, failure and skipping, dynamic map
expansion, recording); an executor session only runs callables
(:mod:`flowkit.executors`). Its state is plain data in :class:`RunState`,
changed by small functions. For the diamond ``a -> (b, c) -> d``::

    start:        waiting={a:0, b:1, c:1, d:2}  ready=[a]
    submit a; a completes:
                  handles={a}  waiting={b:0, c:0, d:2}  ready=[b, c]
    b fails:      failed=[b]  skipped={d}  (d never becomes ready)
    c completes:  handles={a, c}  ready=[]  nothing running -> run "failed"

A dynamic map node (``t.map(ref)``) becomes ready when its iterable is known;
the engine then adds one item node per element and turns the map node into a
collector of their values (:func:`expand_map`).
"""

from __future__ import annotations

import traceback as _tb
import uuid
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import networkx as nx

from flowkit._worker import Item, Slot, collect, execute, fill, resolve_path
from flowkit.clock import Clock
from flowkit.errors import FlowRunError
from flowkit.executors import Completion, Executor, Session
from flowkit.graph import FlowGraph, Node
from flowkit.records import Run, TaskRun

__all__ = ["RunState", "expand_map", "run_graph"]


@dataclass
class RunState:
    """Everything the loop knows about one run (see the module docstring)."""

    run_id: str
    nodes: dict[str, Node]
    waiting: dict[str, int]
    dependents: dict[str, list[str]]
    ready: deque[str]
    handles: dict[str, Any] = field(default_factory=dict)
    records: list[TaskRun] = field(default_factory=list)
    running: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    expanded: bool = False


def initial_state(run_id: str, graph: FlowGraph) -> RunState:
    """Counts of unfinished upstreams, dependents, and the initially ready nodes."""
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    ready: deque[str] = deque()
    for node_id, node in graph.nodes.items():
        waiting[node_id] = len(node.deps)
        if not node.deps:
            ready.append(node_id)
        for dep in node.deps:
            dependents.setdefault(dep, []).append(node_id)
    return RunState(run_id, dict(graph.nodes), waiting, dependents, ready)


def complete(state: RunState, key: str, handle: Any) -> None:
    """Record a node's result handle and make its dependents ready when they can run."""
    state.handles[key] = handle
    waiting = state.waiting
    for dep in state.dependents.get(key, ()):
        left = waiting[dep] - 1
        waiting[dep] = left
        if left == 0 and dep not in state.skipped:
            state.ready.append(dep)


def fail(state: RunState, key: str) -> list[str]:
    """Mark a node failed and every node downstream of it skipped; return the new skips."""
    state.failed.append(key)
    new: list[str] = []
    stack = list(state.dependents.get(key, ()))
    while stack:
        node_id = stack.pop()
        if node_id in state.skipped:
            continue
        state.skipped.add(node_id)
        new.append(node_id)
        stack.extend(state.dependents.get(node_id, ()))
    return new


def expand_map(state: RunState, node: Node, length: int) -> list[str]:
    """Replace a dynamic map node by ``length`` item nodes and a collector.

    Item ``k`` calls the task with element ``k`` of the iterable (slot 0 of
    the map node, at ``node.source_path``) plus the map's fixed arguments.
    Returns the ids of the new item nodes, all ready to run.
    """
    path = node.source_path or ()
    children = []
    for k in range(length):
        child_id = f"{node.id}[{k}]"
        state.nodes[child_id] = Node(child_id, node.task, "task", (Slot(0, path + (Item(k),)),), node.kwargs,
                                     node.deps)
        state.waiting[child_id] = 0
        state.dependents[child_id] = [node.id]
        children.append(child_id)
    state.nodes[node.id] = Node(node.id, node.task, "map", tuple(Slot(i) for i in range(length)), None,
                                tuple(children))
    state.waiting[node.id] = length
    state.expanded = True
    return children


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _graph_of(state: RunState, graph: FlowGraph) -> FlowGraph:
    """The graph that ran: the traced one, or a copy with dynamic maps expanded."""
    if not state.expanded:
        return graph
    g = nx.DiGraph()
    g.add_nodes_from((nid, {"task": n.task.name, "kind": n.kind, "node": n}) for nid, n in state.nodes.items())
    g.add_edges_from((dep, nid) for nid, n in state.nodes.items() for dep in n.deps)
    return FlowGraph(graph.flow, graph.params, g, state.nodes, graph.output, graph.output_deps)


class _Loop:
    """One run of one graph on one executor session."""

    def __init__(self, graph: FlowGraph, session: Session, clock: Clock, run_id: str) -> None:
        self.graph = graph
        self.session = session
        self.clock = clock
        self.state = initial_state(run_id, graph)
        self.submitted: set[str] = set()

    def submit(self, key: str) -> None:
        state = self.state
        node = state.nodes[key]
        handles = state.handles
        deps = [handles[d] for d in node.deps]
        kind = node.kind
        if kind == "task":
            self.session.submit(key, execute, (node.task.fn, node.args, node.kwargs), deps)
        elif kind == "map":
            self.session.submit(key, collect, (), deps)
        else:
            self.expand(node, deps[0])
            return
        self.submitted.add(key)
        state.running += 1

    def expand(self, node: Node, source: Any) -> None:
        started = self.clock.time()
        try:
            value = resolve_path(self.session.fetch([source])[0], node.source_path or ())
            length = len(value) if isinstance(value, (list, tuple)) else len(list(value))
        except Exception as exc:  # noqa: BLE001 - reported as the map's failure
            err = TypeError(
                f"task {node.task.name!r} was mapped over the result of node {node.deps[0]!r}, which could not "
                f"be iterated: {_error_text(exc)}"
            )
            err.__cause__ = exc
            self.finish_failure(Completion(node.id, None, err, started, self.clock.time(), None))
            return
        children = expand_map(self.state, node, length)
        if children:
            self.state.ready.extend(children)
        else:
            self.state.ready.append(node.id)

    def finish(self, done: Completion) -> None:
        state = self.state
        state.running -= 1
        if done.error is None:
            complete(state, done.key, done.handle)
            node = state.nodes[done.key]
            if node.kind == "task":
                state.records.append(TaskRun(f"{state.run_id}/{done.key}", state.run_id, done.key, node.task.name,
                                             "completed", 1, done.started, done.ended, worker=done.worker))
        elif isinstance(done.error, KeyboardInterrupt):
            raise done.error
        else:
            self.finish_failure(done)

    def finish_failure(self, done: Completion) -> None:
        state = self.state
        node = state.nodes[done.key]
        exc = done.error
        assert exc is not None
        state.records.append(TaskRun(
            f"{state.run_id}/{done.key}", state.run_id, done.key, node.task.name, "failed", 1, done.started,
            done.ended, error=_error_text(exc), traceback="".join(_tb.format_exception(exc)),
            worker=done.worker, exception=exc,
        ))
        for skipped in fail(state, done.key):
            if state.nodes[skipped].kind != "map":
                state.records.append(TaskRun(f"{state.run_id}/{skipped}", state.run_id, skipped,
                                             state.nodes[skipped].task.name, "skipped"))

    def loop(self) -> None:
        state = self.state
        ready = state.ready
        while True:
            while ready:
                self.submit(ready.popleft())
            if state.running == 0:
                return
            for done in self.session.wait():
                self.finish(done)

    def cancel(self) -> None:
        """Ctrl-C: stop the session; running tasks are cancelled, the rest skipped."""
        self.session.cancel()
        state = self.state
        finished = {tr.node for tr in state.records}
        for key, node in state.nodes.items():
            if key in finished or key in state.handles or node.kind == "map":
                continue
            status = "cancelled" if key in self.submitted else "skipped"
            state.records.append(TaskRun(f"{state.run_id}/{key}", state.run_id, key, node.task.name, status))


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
    run_id: str | None = None,
    trigger: str = "manual",
    on_end: Callable[[Run], None] | None = None,
) -> Run:
    """Run every node of ``graph`` and return the :class:`Run` record.

    Never raises for a task failure (the run is ``failed`` and ``run.result()``
    raises). A ``KeyboardInterrupt`` ends the run ``cancelled`` and is re-raised.
    ``on_end`` receives the final record in every case, the cancelled one too.
    """
    run_id = run_id or uuid.uuid4().hex
    started = clock.time()
    value = None
    status = "completed"
    with executor.session(clock) as session:
        loop = _Loop(graph, session, clock, run_id)
        state = loop.state
        try:
            loop.loop()
            if state.failed:
                status = "failed"
            else:
                outputs = session.fetch([state.handles[d] for d in graph.output_deps])
                value = fill(graph.output, outputs)
        except KeyboardInterrupt as interrupt:
            loop.cancel()
            run = _record(graph, state, "cancelled", started, clock.time(), trigger, None)
            interrupt.add_note(f"flowkit: run {run_id} of flow {graph.flow!r} was cancelled; "
                               f"{run.counts().get('completed', 0)} finished task(s) kept")
            if on_end is not None:
                on_end(run)
            raise
    run = _record(graph, state, status, started, clock.time(), trigger, value)
    if on_end is not None:
        on_end(run)
    return run


def _record(graph: FlowGraph, state: RunState, status: str, started: float, ended: float, trigger: str,
            value: Any) -> Run:
    error = None
    if status != "completed":
        failed = [tr for tr in state.records if tr.status == "failed"]
        error = FlowRunError(_failure_message(graph.flow, state.records, status), flow=graph.flow,
                             run_id=state.run_id, task_runs=failed, status=status)
        if failed:
            error.__cause__ = failed[0].exception
    return Run(state.run_id, graph.flow, status, graph.params, started, ended, tuple(state.records), trigger,
               error, _graph_of(state, graph), value)
