"""The engine: the one loop that runs a :class:`~flowkit.FlowGraph`.

The engine owns the policy (cache planning, readiness, failure and skipping,
dynamic map expansion, recording); an executor session only runs callables
(:mod:`flowkit.executors`). Its state is plain data in :class:`RunState`,
changed by small functions. :func:`flowkit.runner.run_graph` sets a run up
around it (keys, the run's record, the session) and builds the final record.

**Planning.** With a store, every node's key is computed up front
(:mod:`flowkit.cache`) and looked up in one query. A task node whose key is
in the cache is a *hit*: it is loaded only if a node that must run (or the
flow's output) needs its value, and otherwise just recorded ``cached``. Every
other task node must run. :meth:`Loop.materialize` schedules a node and,
first, whatever it needs: hits as loads, the rest as runs.

**The loop.** For the diamond ``a -> (b, c) -> d`` with nothing cached::

    plan:         waiting={a:0, b:1, c:1, d:2}  ready=[a]
    submit a; a completes:
                  handles={a}  waiting={b:0, c:0, d:2}  ready=[b, c]
    b fails:      failed=[b]  skipped={d}  (d never becomes ready)
    c completes:  handles={a, c}  ready=[]  nothing running -> run "failed"

Rerun after fixing b: a and c are hits; b must run and needs a, so a is
loaded; c is needed by d, so it is loaded too; b and d run.

**Releasing values.** ``consumers`` counts, for each node, the nodes that take
its value and are not done with it. When the count reaches zero the engine
drops its handle (the value in-process, the future on Dask, whose workers then
free the data), unless the flow returns it: in the diamond, ``a`` goes once
``b`` and ``c`` have finished. A consumer that may still need its inputs (an
attempt to retry, a cached hit that a damaged neighbour could make run) keeps
them.

A dynamic map node (``t.map(ref)``) becomes ready when its iterable is known;
the engine then adds one item node per element and turns the map node into a
collector of their values (:func:`expand_map`). A cached value that is damaged
or no longer loads is reported, forgotten, and its node recomputed instead.

**Retries** are timers in the loop (``timers``), never sleeping workers. On a
session whose handles exist at submission (Dask futures, ``session.eager``), a
node is handed over as soon as its inputs were submitted
(:meth:`Loop.make_available`); an error it then reports waits (``deferred``)
until its inputs' fate is known, so an input's failure skips it rather than
failing it.
"""

from __future__ import annotations

import functools
import heapq
import logging
import random
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from flowkit._template import Item, Slot, resolve_path
from flowkit._worker import call_with_timeout, collect, load_artifact, run_task
from flowkit.cache import KeyMaker
from flowkit.clock import Clock
from flowkit.errors import CheckFailedError, user_traceback
from flowkit.executors import Completion, Session
from flowkit.graph import FlowGraph, Node
from flowkit.events import (
    CacheForgotten,
    RunEvent,
    RunPlanned,
    TaskFinished,
    TaskOutput,
    TaskRetrying,
    TaskRunning,
    TaskSubmitted,
    TasksCached,
)
from flowkit.planning import CachePlan
from flowkit.records import Attempt, TaskRun, cached_task_run
from flowkit.recording import lineage_rows
from flowkit.store import Store
from flowkit.retry import retry_delay, should_retry
from flowkit.store.artifacts import DamagedArtifact
from flowkit.store.metadata import CacheHit
from flowkit.task import Task, TaskOptions, effective_options

_NOTHING_MORE = (None, (), False, False, None, None)  # TaskFinished's fields after the task run

__all__ = ["Loop", "RunState", "complete", "error_text", "expand_map"]

log = logging.getLogger("flowkit")


@dataclass
class RunState:
    """Everything the loop knows about one run (see the module docstring)."""

    run_id: str
    nodes: dict[str, Node]
    waiting: dict[str, int] = field(default_factory=dict)
    dependents: dict[str, list[str]] = field(default_factory=dict)
    ready: deque[str] = field(default_factory=deque)
    scheduled: set[str] = field(default_factory=set)
    handles: dict[str, Any] = field(default_factory=dict)
    records: list[TaskRun] = field(default_factory=list)
    running: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    submitted: set[str] = field(default_factory=set)
    keys: dict[str, str] = field(default_factory=dict)
    hits: dict[str, CacheHit] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    expanded: bool = False


RELEASED = object()  # stands in ``RunState.handles`` for a value nothing needs any more


def complete(state: RunState, key: str, handle: Any) -> None:
    """Record a node's result handle and make its dependents ready when they can run."""
    state.handles[key] = handle
    waiting = state.waiting
    for dep in state.dependents.pop(key, ()):
        left = waiting[dep] - 1
        waiting[dep] = left
        if left == 0 and dep not in state.skipped and dep not in state.submitted:
            state.ready.append(dep)


def expand_map(state: RunState, node: Node, length: int) -> dict[str, Node]:
    """Replace a dynamic map node by ``length`` item nodes and a collector; return the items.

    Item ``k`` calls the task with element ``k`` of the iterable (slot 0 of
    the map node, at ``node.source_path``) plus the map's fixed keyword arguments;
    its canonical spelling follows the map's (``node.canon``: what comes after the
    item, and the keywords).
    """
    path = node.source_path or ()
    children = {}
    for k in range(length):
        child_id = f"{node.id}[{k}]"
        item = Slot(0, path + (Item(k),))
        canon = ((item, *node.canon[0]), node.canon[1]) if node.canon is not None else None
        children[child_id] = Node(child_id, node.task, "task", (item,), node.kwargs, node.deps, canon=canon)
    state.nodes.update(children)
    state.nodes[node.id] = Node(node.id, node.task, "map", tuple(Slot(i) for i in range(length)), None,
                                tuple(children))
    state.expanded = True
    return children


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Loop:
    """One run of one graph on one executor session."""

    def __init__(self, graph: FlowGraph, session: Session, clock: Clock, run_id: str, store: Store | None,
                 keymaker: KeyMaker | None, forced: Collection[str], task_defaults: dict[str, Any] | None = None,
                 fail_fast: bool = False, emit: Callable[[RunEvent], None] | None = None,
                 stream_output: bool = False) -> None:
        self.graph = graph
        self.session = session
        self.clock = clock
        self.store = store
        self.files = store.files if store is not None else None
        self.keymaker = keymaker
        self.emit = emit
        self.task_defaults = task_defaults
        self.fail_fast = fail_fast
        self.stopped = False
        self.state = RunState(run_id, dict(graph.nodes))
        self.cache = CachePlan(self.state, store, keymaker, clock, forced, emit or (lambda event: None))
        self.submitted = self.state.submitted
        self.loads: set[str] = set()
        # On a session whose handles exist before the value does (Dask futures), a node is handed
        # over as soon as its inputs were submitted: dependencies resolve on the cluster, with no
        # round trip through the client per step (see `make_available`).
        self.eager = session.eager
        self.inflight: dict[str, Any] = {}  # eager: node -> handle of its running attempt
        self.deferred: dict[str, Completion] = {}  # eager: failures waiting for their inputs' fate
        self.available: set[str] = set()  # eager: nodes whose handle dependents may take now
        self.record_index: dict[str, int] = {}  # node -> its place in state.records
        self.missing: dict[str, int] = {}  # eager: node -> how many of its inputs are not available
        self.attempts: dict[str, list[Attempt]] = {}
        # Task output goes to the listeners line by line when tasks run in this process.
        self.live = emit is not None and stream_output  # listeners of the run's own (a display): output, starts
        self.sink = None
        if self.live and session.in_process:
            self.sink = lambda node, line: emit(TaskOutput(run_id, node, line))  # type: ignore[misc]
        self.timers: list[tuple[float, int, str]] = []  # (due, tie-breaker, node id): retries waiting
        self._options: dict[int, TaskOptions] = {}
        self.consumers: dict[str, int] = {}  # node -> consumers not done with its value (see `release`)
        self.done: set[str] = set()  # nodes done with their inputs
        self.keep = set(graph.output_deps)  # what the flow returns is never released

    def planned(self) -> None:
        """Tell a display how many task nodes the run has (now)."""
        assert self.emit is not None
        self.emit(RunPlanned(self.state.run_id, sum(1 for n in self.state.nodes.values() if n.kind != "map")))

    def running(self, node: str) -> None:
        """The session says a submitted task really began."""
        assert self.emit is not None
        self.emit(TaskRunning(self.state.run_id, node))

    def options(self, task: Task[..., Any]) -> TaskOptions:
        """A task's options with the flow's ``task_defaults`` applied (memoized per task)."""
        opts = self._options.get(id(task))
        if opts is None:
            opts = self._options[id(task)] = effective_options(task, self.task_defaults)
        return opts

    # --- planning ------------------------------------------------------------------------------

    def plan(self, keys: dict[str, str]) -> None:
        state = self.state
        state.keys = keys
        state.hits = self.cache.lookup(state.nodes)
        hits = state.hits
        if self.live:  # before any task is recorded, so a display knows the total first
            self.planned()
        consumers = self.consumers
        get = consumers.get
        for node in state.nodes.values():
            for dep in node.deps:
                consumers[dep] = get(dep, 0) + 1
        nodes = state.nodes
        for node_id, node in nodes.items():
            # What nothing consumes runs for its own sake unless it is cached (a map over a
            # run-time value included: only running it can tell which of its items are); the
            # rest runs only if something that runs needs it.
            if not get(node_id) and node_id not in hits:
                self.materialize_leaf(node_id)
        for node_id in self.graph.output_deps:
            self.materialize(node_id)
        scheduled = state.scheduled
        idle = False
        if len(scheduled) < len(nodes):
            idle_hits = []
            for node_id, node in nodes.items():
                if node_id in scheduled:
                    continue
                hit = hits.get(node_id)
                if hit is not None:  # a hit nobody needs: recorded, never loaded
                    idle_hits.append(node_id)  # ids only: a tuple each would be work for the gc
                    idle = True
                elif node.kind == "task":  # every task that takes its value is cached
                    self.record(TaskRun(f"{state.run_id}/{node_id}", state.run_id, node_id, node.task.name,
                                        "unneeded", cache_key=state.keys.get(node_id)))
                    idle = True
            if idle_hits:
                self.record_idle_hits(idle_hits)
        if idle:
            self.retire_idle()
        self.cache.prepare(self.graph.flow, self.loads)

    def materialize_leaf(self, node_id: str) -> None:
        """Schedule a node nothing consumes; for a map, only its items that are not cached."""
        node = self.state.nodes[node_id]
        if node.kind != "map":
            self.materialize(node_id)
            return
        for child in node.deps:
            if child not in self.state.hits:
                self.materialize_leaf(child)

    def retire_idle(self) -> None:
        """Stop counting tasks that can never run (unscheduled) as consumers, so they pin no value.

        A hit or an unneeded task that is not scheduled runs only if a load it feeds fails
        and must be recomputed (:meth:`recompute`), so only those upstream of a load, through
        other unscheduled nodes, may still need their inputs.
        """
        state = self.state
        nodes, scheduled = state.nodes, state.scheduled
        idle = [n for n, node in nodes.items() if n not in scheduled and any(d in scheduled for d in node.deps)]
        if not idle:  # only a hit that takes a scheduled node's value could pin one
            return
        may_run: set[str] = set()
        stack = list(self.loads)
        while stack:
            for dep in nodes[stack.pop()].deps:
                if dep not in scheduled and dep not in may_run:
                    may_run.add(dep)
                    stack.append(dep)
        for node_id in idle:
            if node_id not in may_run:
                self.done_with(node_id)

    def materialize(self, root: str) -> None:
        """Schedule ``root`` (and first what it needs): a hit is loaded, anything else runs."""
        state = self.state
        scheduled, hits, nodes = state.scheduled, state.hits, state.nodes
        stack = [root]
        while stack:
            node_id = stack[-1]
            if node_id in scheduled:
                stack.pop()
                continue
            if node_id in hits:
                scheduled.add(node_id)
                self.loads.add(node_id)
                state.ready.append(node_id)
                stack.pop()
                continue
            deps = nodes[node_id].deps
            todo = [d for d in deps if d not in scheduled]
            if todo:
                stack.extend(reversed(todo))  # the first upstream is handled first
                continue
            stack.pop()
            scheduled.add(node_id)
            waiting = 0
            doomed = False
            for dep in deps:
                if dep in state.handles:
                    continue
                if dep in state.skipped or dep in state.failed:
                    doomed = True
                    continue
                state.dependents.setdefault(dep, []).append(node_id)
                waiting += 1
            state.waiting[node_id] = waiting
            if doomed:
                self.skip([node_id])
            elif waiting == 0:
                state.ready.append(node_id)

    # --- submitting ----------------------------------------------------------------------------

    def submit(self, key: str) -> None:
        state = self.state
        node = state.nodes[key]
        if key in self.submitted or key in state.skipped:
            return  # handed over early already (eager), or skipped meanwhile
        if self.stopped and key not in self.loads:  # fail_fast: nothing new starts
            self.skip([key])
            return
        if key not in self.loads and self.cache.cutoff and self.cache.cut_off(key, node):
            self.loads.add(key)  # early cutoff: found by the content of its inputs
        if key in self.loads:
            hit = state.hits[key]
            self.session.submit(key, load_artifact, (self.files, hit.artifact_id, hit.serializer,
                                                     self.cache.inline_bytes(hit)), (), name=node.task.name)
        else:
            handles, inflight = state.handles, self.inflight
            deps = [handles[d] if d in handles else inflight[d] for d in node.deps]
            if any(h is RELEASED for h in deps):  # `consumers` guarantees it never happens
                raise RuntimeError(f"flowkit internal error: an input of node {key!r} was released too early")
            kind = node.kind
            if kind == "task":
                task = node.task
                fn: Callable[..., Any] = task.fn
                timeout = self.options(task).timeout
                if timeout is not None:
                    fn = functools.partial(call_with_timeout, task.name, timeout, fn)
                hints = {"name": task.name, "tags": task.options.tags, "resources": task.options.resources,
                         "code": task.fn}
                if self.live:  # only a display wants to know when a task is handed over, and really starts
                    self.emit(TaskSubmitted(state.run_id, key, task.name))  # type: ignore[misc]
                    hints["on_running"] = self.running
                ctx = (state.run_id, task.name, state.keys.get(key), self.store, task.options.checks)
                handle = self.session.submit(key, run_task, (key, self.sink, self.files, task.options.serializer,
                                                             fn, node.args, node.kwargs, ctx), deps, **hints)
            elif kind == "map":
                handle = self.session.submit(key, collect, (), deps, name=node.task.name)
            else:
                self.expand(node, deps[0])
                return
            if self.eager:
                self.inflight[key] = handle
                # Dependents may take this future now, unless a retry could replace it.
                if kind == "map" or not self.options(node.task).retries:
                    self.make_available(key)
        self.submitted.add(key)
        state.running += 1

    def make_available(self, key: str) -> None:
        """Eager: ``key``'s handle can be passed on; hand over dependents whose inputs all can.

        Counting missing inputs per dependent keeps this linear in the edges, even for a
        reduce over thousands of inputs. Loads and dynamic maps are never handed over early.
        """
        if key in self.available:
            return
        self.available.add(key)
        state = self.state
        for dependent in state.dependents.get(key, ()):
            left = self.missing.get(dependent)
            if left is None:
                left = sum(1 for dep in state.nodes[dependent].deps if dep not in self.available)
            else:
                left -= 1
            self.missing[dependent] = left
            if left == 0 and state.nodes[dependent].kind != "dynamic_map" and dependent not in self.loads and \
                    not self.cache.may_cut(dependent, state.nodes[dependent]):  # cutoff needs its inputs' digests
                state.ready.append(dependent)

    def expand(self, node: Node, source: Any) -> None:
        state = self.state
        started = self.clock.time()
        try:
            value = resolve_path(self.session.fetch([source])[0], node.source_path or ())
            elements = value if isinstance(value, (list, tuple)) else list(value)
            length = len(elements)
        except Exception as exc:  # noqa: BLE001 - reported as the map's failure
            err = TypeError(
                f"task {node.task.name!r} was mapped over the result of node {node.deps[0]!r}, which could not "
                f"be iterated: {error_text(exc)}"
            )
            err.__cause__ = exc
            self.finish_failure(Completion(node.id, None, err, started, self.clock.time(), None))
            return
        old_deps = node.deps
        children = expand_map(state, node, length)
        consumers = self.consumers
        for dep in old_deps:  # each item takes the map's inputs; the map now takes the items
            consumers[dep] += length - 1
        for child in children:
            consumers[child] = 1
        for dep in old_deps:
            self.release(dep)
        state.scheduled.discard(node.id)
        self.missing.pop(node.id, None)  # its inputs are now its items
        if self.keymaker is not None:
            self.keymaker.keys(children, state.keys)
            cache = self.cache
            if node.id in cache.forced:
                cache.forced = set(cache.forced) | set(children)
            state.hits.update(cache.lookup(children))
            cache.item_contents(node, old_deps, children, elements)
        self.materialize(node.id)
        if self.live:  # the run has more tasks than planned
            self.planned()

    # --- finishing -----------------------------------------------------------------------------

    def finish(self, done: Completion) -> None:
        state = self.state
        state.running -= 1
        key = done.key
        self.inflight.pop(key, None)
        if key in state.skipped:
            return  # handed over early, then an input failed: already recorded as skipped
        if done.error is None:
            node = state.nodes[key]
            if key in self.loads:  # found by content: its own inputs in this run are its lineage
                self.record_cached(key, state.hits[key], done.started, done.ended, done.worker,
                                   node if key in self.cache.by_content else None)
            elif node.kind == "task":
                self.cache.computed(key, node, done.ended)
                info = done.info
                if info is not None:
                    state.artifacts[key] = info.digest
                    if info.description.get("opaque"):
                        self.cache.opaque.add(key)
                history = self.attempted(done)
                tracked, checks = done.extras if done.extras is not None else ((), ())
                self.record(TaskRun(f"{state.run_id}/{key}", state.run_id, key, node.task.name, "completed",
                                    len(history), history[0].started, done.ended, state.keys.get(key),
                                    info.digest if info is not None else None, worker=done.worker,
                                    history=history, logs=self.output_of(done, done.logs), tracked=tracked,
                                    checks=checks), info, node)
            else:  # a map's list goes stale with its first stale item
                self.cache.computed(key, node, done.ended)
            waiting_on_me = list(state.dependents.get(key, ()))
            if self.eager:
                self.make_available(key)
            complete(state, key, done.handle)
            self.done_with(key)
            if not self.consumers.get(key):  # a value nobody takes (the flow's output is kept)
                self.release(key)
            for dependent in waiting_on_me:  # eager: a failure that waited for this input's fate
                if dependent in self.deferred and all(d in state.handles for d in state.nodes[dependent].deps):
                    self.failed_attempt(self.deferred.pop(dependent))
        elif isinstance(done.error, KeyboardInterrupt):
            raise done.error
        elif key in self.loads:
            self.recompute(key, done.error)
        elif self.eager and any(d not in state.handles for d in state.nodes[key].deps):
            # Handed over early: the error may be an input's, passed on by Dask. Decide once the
            # inputs are known: an input failing skips this node, all succeeding makes it its own.
            self.deferred[key] = done
        else:
            self.failed_attempt(done)

    def failed_attempt(self, done: Completion) -> None:
        """A node's own attempt failed: retry it, or record the failure."""
        key = done.key
        node = self.state.nodes[key]
        if node.kind == "task" and not self.stopped and should_retry(
                self.options(node.task), done.error, len(self.attempts.get(key, ())) + 1):
            self.retry_later(done)
        else:
            self.finish_failure(done)

    def attempted(self, done: Completion) -> tuple[Attempt, ...]:
        """Every attempt of a node so far, ending with the one that just finished."""
        earlier = self.attempts.pop(done.key, [])
        for worker in done.lost:  # attempts that died with their worker, recomputed by the cluster
            earlier.append(Attempt(len(earlier) + 1, None, None, f"worker {worker} was lost during the attempt"))
        error = error_text(done.error) if done.error is not None else None
        return (*earlier, Attempt(len(earlier) + 1, done.started, done.ended, error))

    def retry_later(self, done: Completion) -> None:
        """Note the failed attempt and schedule the next one after the policy's delay."""
        history = self.attempted(done)
        self.attempts[done.key] = list(history)
        self.submitted.discard(done.key)  # so the timer can submit it again, and nothing sooner
        if done.key in self.state.ready:
            self.state.ready.remove(done.key)
        opts = self.options(self.state.nodes[done.key].task)
        delay = retry_delay(opts, len(history) - 1, random.random())
        log.info("flowkit: task %r failed (attempt %d of %d: %s); retrying in %.3gs", done.key, len(history),
                 opts.retries + 1, history[-1].error, delay)
        if self.emit is not None:
            self.emit(TaskRetrying(self.state.run_id, done.key, self.state.nodes[done.key].task.name, len(history),
                                   history[-1].error or "", delay))
        heapq.heappush(self.timers, (self.clock.monotonic() + delay, len(self.timers), done.key))

    def recompute(self, key: str, error: BaseException) -> None:
        """A cached value could not be loaded: report it, forget it, and run the node instead.

        Damaged bytes are removed; bytes that are intact but no longer load (a class that was
        renamed, a library that changed) stay on disk, only the cache entry goes.
        """
        state = self.state
        node = state.nodes[key]
        artifact_id = state.hits[key].artifact_id
        if isinstance(error, DamagedArtifact):
            log.warning("flowkit: the cached result of task %r (node %r, key %s) is damaged: %s; it was removed "
                        "and will be recomputed", node.task.name, key, state.keys.get(key), error)
            if self.files is not None:
                self.files.delete(error.expected)
        else:
            log.warning("flowkit: the cached result of task %r (node %r, key %s) could not be loaded (%s); it "
                        "will be recomputed", node.task.name, key, state.keys.get(key), error_text(error))
        if self.emit is not None and key in state.keys:
            self.emit(CacheForgotten(state.run_id, key, state.keys[key],
                                     artifact_id if isinstance(error, DamagedArtifact) else None))
        self.loads.discard(key)
        self.submitted.discard(key)  # it runs now, instead of the load
        del state.hits[key]
        state.scheduled.discard(key)
        self.materialize(key)

    def output_of(self, done: Completion, logs: str | None) -> str | None:
        """A task's captured output; shown by the listener now unless it was streamed live."""
        if logs and self.live and self.sink is None:
            for line in logs.splitlines():
                self.emit(TaskOutput(self.state.run_id, done.key, line))
        return logs

    def record(self, tr: TaskRun, info: Any = None, node: Node | None = None) -> None:
        records = self.state.records
        index = self.record_index.get(tr.node)
        if index is None:
            self.record_index[tr.node] = len(records)
            records.append(tr)
        else:  # recorded before (a cached value that then had to be recomputed): the latest counts
            records[index] = tr
        if self.emit is None:
            return
        if node is None:
            self.emit(tuple.__new__(TaskFinished, (tr, *_NOTHING_MORE)))  # TaskFinished(tr), without a frame
            return
        self.emit(tuple.__new__(TaskFinished, (  # TaskFinished(...), without a Python-level __new__
            tr, info, lineage_rows(self.state.run_id, node, self.state.nodes, self.state.artifacts, self.store),
            tr.status == "completed", not node.task.options.cache, self.cache.inherited.get(tr.node),
            self.cache.entry_content(node) if info is not None else None)))

    def finish_failure(self, done: Completion) -> None:
        state = self.state
        node = state.nodes[done.key]
        exc = done.error
        assert exc is not None
        history = self.attempted(done)
        self.record(TaskRun(
            f"{state.run_id}/{done.key}", state.run_id, done.key, node.task.name, "failed", len(history),
            history[0].started, done.ended, state.keys.get(done.key), error=error_text(exc),
            traceback=user_traceback(exc), worker=done.worker, exception=exc, history=history,
            logs=self.output_of(done, getattr(exc, "__flowkit_logs__", None)),
            tracked=getattr(exc, "__flowkit_extras__", ((),))[0], checks=getattr(exc, "results", ())
            if isinstance(exc, CheckFailedError) else (),
        ))
        state.failed.append(done.key)
        self.done_with(done.key)
        self.skip(list(state.dependents.get(done.key, ())))
        if self.fail_fast:
            self.stop()

    def done_with(self, key: str) -> None:
        """``key`` needs its inputs no more (it finished for good): release those nobody else needs."""
        done = self.done
        if key in done:
            return
        done.add(key)
        consumers = self.consumers
        for dep in self.state.nodes[key].deps:
            left = consumers[dep] - 1
            consumers[dep] = left
            if not left:  # the last of a dep taken twice by one node counts once
                self.release(dep)

    def release(self, key: str) -> None:
        """Drop ``key``'s handle if it has one, no consumer waits for it and the flow does not return it.

        In-process, the value can then be garbage-collected; on Dask, the future goes and the
        workers free the data once the tasks that took it have finished.
        """
        handles = self.state.handles
        if key in handles and not self.consumers.get(key) and key not in self.keep:
            handles[key] = RELEASED

    def skip(self, roots: list[str]) -> None:
        """Mark ``roots`` and every scheduled node downstream of them skipped, and record them."""
        state = self.state
        stack = list(roots)
        while stack:
            node_id = stack.pop()
            if node_id in state.skipped:
                continue
            state.skipped.add(node_id)
            self.deferred.pop(node_id, None)
            self.done_with(node_id)
            node = state.nodes[node_id]
            if node.kind == "task" and node_id not in state.handles:
                self.record(TaskRun(f"{state.run_id}/{node_id}", state.run_id, node_id, node.task.name, "skipped",
                                    cache_key=state.keys.get(node_id)))
            stack.extend(state.dependents.get(node_id, ()))

    def record_idle_hits(self, idle_hits: list[str]) -> None:
        """Record the hits nobody needs: what :meth:`record_cached` does, in one loop (most of a rerun)."""
        state = self.state
        run_id, nodes, keys, artifacts = state.run_id, state.nodes, state.keys, state.artifacts
        records, index, hits = state.records, self.record_index, state.hits
        first = len(records)
        for node_id in idle_hits:
            hit = hits[node_id]
            artifact_id = artifacts[node_id] = hit.artifact_id
            tr = cached_task_run(f"{run_id}/{node_id}", run_id, node_id, nodes[node_id].task.name, keys[node_id],
                                 artifact_id, hit.task_run_id)
            index[node_id] = len(records)
            records.append(tr)
        if self.emit is not None:
            self.emit(TasksCached(run_id, tuple(records[first:])))

    def record_cached(self, node_id: str, hit: CacheHit, started: float | None, ended: float | None,
                      worker: str | None, node: Node | None = None) -> None:
        state = self.state
        artifact_id = hit.artifact_id
        if state.artifacts.get(node_id) == artifact_id:
            return  # already recorded at plan time, then loaded after all (a damaged neighbour)
        state.artifacts[node_id] = artifact_id
        self.record(TaskRun(f"{state.run_id}/{node_id}", state.run_id, node_id, state.nodes[node_id].task.name,
                            "cached", 0, started, ended, state.keys[node_id], artifact_id, worker=worker,
                            source=hit.task_run_id), node=node)

    def loop(self) -> None:
        state = self.state
        ready = state.ready
        timers = self.timers
        clock = self.clock
        session = self.session
        while True:
            while ready:
                self.submit(ready.popleft())
                for done in session.wait(0):  # an in-process session may have finished it already
                    self.finish(done)
            if timers:
                now = clock.monotonic()
                if timers[0][0] <= now:
                    while timers and timers[0][0] <= now:
                        ready.append(heapq.heappop(timers)[2])
                    continue
                if state.running == 0:
                    clock.sleep(timers[0][0] - now)  # nothing else to do until the next retry
                    continue
                completions = self.session.wait(timers[0][0] - now)
            elif state.running == 0:
                return
            else:
                completions = self.session.wait(None)
            for done in completions:
                self.finish(done)

    def stop(self) -> None:
        """``fail_fast``: submit nothing more (retries included); running tasks finish and are recorded."""
        self.stopped = True
        state = self.state
        waiting = [key for _, _, key in self.timers]
        self.timers.clear()
        for key in waiting:  # a retry that will not happen: the task failed with what it had
            history = tuple(self.attempts.pop(key))
            node = state.nodes[key]
            state.failed.append(key)
            self.done_with(key)
            self.record(TaskRun(f"{state.run_id}/{key}", state.run_id, key, node.task.name, "failed",
                                len(history), history[0].started, history[-1].ended, state.keys.get(key),
                                error=history[-1].error, history=history))
        state.ready.clear()
        # Handed over early but not started for real (an input is unfinished): take them back.
        early = [k for k in self.inflight if any(d not in state.handles for d in state.nodes[k].deps)]
        if early:
            self.session.cancel(early)
        self.skip(early + [key for key in state.scheduled if key not in state.handles and key not in self.submitted
                           and key not in state.failed])

    def cancel(self) -> None:
        """Ctrl-C: stop the session; running tasks are cancelled, the rest skipped."""
        self.session.cancel()
        state = self.state
        finished = {tr.node for tr in state.records}
        for key, node in state.nodes.items():
            if key in finished or key in state.handles or node.kind != "task" or key in state.hits:
                continue
            status = "cancelled" if key in self.submitted else "skipped"
            self.record(TaskRun(f"{state.run_id}/{key}", state.run_id, key, node.task.name, status))
