"""The driver of one run: the loop between the engine's state and an executor session.

:class:`Loop` holds what a run talks to (the session, the clock, the store, the
listeners) and the run's :class:`~flowkit.engine.RunState`, and nothing else that
changes. It submits ready nodes to the session, waits for completions, hands each
to the transitions of :mod:`flowkit.engine`, fires retry timers when they are due,
and turns what the transitions report into task records and events. The cache side
of a run is :class:`~flowkit.planning.CachePlan`'s.

Unless a listener follows the run live, the records of quick tasks are made a batch at a
time (:meth:`Loop.record_quick`): the same records and events in the same order, a few
hundred tasks later at most, and before anything else is recorded or told and before
the loop waits for a task.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Collection
from typing import Any

from flowkit._template import resolve_path
from flowkit._worker import call_with_timeout, collect, load_artifact, run_task
from flowkit.cache import KeyMaker
from flowkit.clock import Clock
from flowkit.engine import (
    RELEASED,
    Eager,
    Release,
    RunState,
    attempted,
    defer,
    error_text,
    expand,
    fail,
    fire_timers,
    forget,
    halt,
    make_available,
    materialize,
    plan_retry,
    schedule,
    skip,
    succeed,
    undefer,
)
from flowkit.errors import CheckFailedError, user_traceback
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
from flowkit.executors import Completion, Session
from flowkit.graph import FlowGraph, Node
from flowkit.planning import CachePlan, RefusedEntry
from flowkit.records import TaskRun, cached_task_run, completed_task_run
from flowkit.recording import lineage_rows, param_rows, settled_constants
from flowkit.retry import should_retry
from flowkit.store import Store
from flowkit.store.artifacts import DamagedArtifact
from flowkit.store.metadata import CacheHit
from flowkit.store.serializers import incompatible
from flowkit.task import Task, TaskOptions, effective_options

_NOTHING_MORE = (None, (), False, False, None, None)  # TaskFinished's fields after the task run

#: Quick completions recorded together, up to this many at a time (see :meth:`Loop.record_quick`).
BATCH = 256
#: A task that ran at least this long (seconds) is recorded as it completes.
QUICK = 0.001
#: Idle hits told in events of up to this many (:class:`~flowkit.events.TasksCached`): the
#: recorder's writer commits the rows of one while the next are made.
CACHED_EVENT = 1024

__all__ = ["Loop"]

log = logging.getLogger("flowkit")


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
        self.tell = emit  # the listeners, as given
        self.task_defaults = task_defaults
        self.fail_fast = fail_fast
        # On a session whose handles exist before the value does (Dask futures), a node is handed
        # over as soon as its inputs were submitted: dependencies resolve on the cluster, with no
        # round trip through the client per step (see `make_available`).
        self.state = RunState(run_id, dict(graph.nodes), release=Release(keep=set(graph.output_deps)),
                              eager=Eager(enabled=session.eager))
        # Task output goes to the listeners line by line when tasks run in this process.
        self.live = emit is not None and stream_output  # listeners of the run's own (a display): output, starts
        # Held back, unless live: (node id, node, artifact record, attempts, end, worker, logs, extras,
        # constants' lineage rows) of quick task runs; not their values, which go as soon as nothing needs them.
        self._quick: list[tuple[str, Node, Any, tuple[Any, ...], float, str | None, str | None, Any, Any]] | None = \
            None if self.live else []
        # What the loop tells the listeners comes after the records held back (the records' own: self.tell).
        self.emit = emit if emit is None or self.live else self.in_order
        self.cache = CachePlan(self.state, store, keymaker, clock, forced, self.emit or (lambda event: None))
        self.sink = None
        if self.live and session.in_process:
            self.sink = lambda node, line: emit(TaskOutput(run_id, node, line))  # type: ignore[misc]
        self._options: dict[int, TaskOptions] = {}
        self._calls: dict[int, tuple[Callable[..., Any], dict[str, Any], str | None, Any]] = {}  # call_of, per task

    def in_order(self, event: RunEvent) -> None:
        """Tell the listeners of ``event``, after the records held back."""
        if self._quick:
            self.record_quick()
        self.tell(event)  # type: ignore[misc]

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

    def call_of(self, task: Task[..., Any]) -> tuple[Callable[..., Any], dict[str, Any], str | None, Any]:
        """What each submission of a task's nodes hands the session: (function, hints, serializer, checks)."""
        fn: Callable[..., Any] = task.fn
        timeout = self.options(task).timeout
        if timeout is not None:
            fn = functools.partial(call_with_timeout, task.name, timeout, fn)
        opts = task.options
        hints = {"name": task.name, "tags": opts.tags, "resources": opts.resources, "code": task.fn}
        return fn, hints, opts.serializer, opts.checks

    def plan(self, keys: dict[str, str]) -> None:
        """Look the keys up, schedule what must run, record what need not."""
        state = self.state
        state.keys = keys
        state.hits = self.cache.lookup(state.nodes)
        if self.live:  # before any task is recorded, so a display knows the total first
            self.planned()
        idle_hits, unneeded = schedule(state, self.graph.output_deps)
        for node_id in unneeded:  # every task that takes its value is cached
            self.record(TaskRun(f"{state.run_id}/{node_id}", state.run_id, node_id, state.nodes[node_id].task.name,
                                "unneeded", cache_key=state.keys.get(node_id)))
        if idle_hits:  # hits nobody needs: recorded, never loaded
            self.record_idle_hits(idle_hits)
        self.cache.prepare(self.graph.flow, state.plan.loads)

    def loop(self) -> None:
        """Submit what is ready, fire the retries that are due, finish what completes; until nothing runs."""
        state = self.state
        ready = state.plan.ready
        timers = state.retry.timers
        clock = self.clock
        session = self.session
        submit, finish = self.submit, self.finish
        quick = self._quick if self._quick is not None else ()
        while True:
            while ready:
                submit(ready.popleft())
                for done in session.wait(0):  # an in-process session may have finished it already
                    finish(done)
            if quick:  # the loop waits now, or ends: what finished is recorded first
                self.record_quick()
            if timers:
                now = clock.monotonic()
                if timers[0][0] <= now:
                    fire_timers(state, now)
                    continue
                if state.running == 0:
                    clock.sleep(timers[0][0] - now)  # nothing else to do until the next retry
                    continue
                completions = session.wait(timers[0][0] - now)
            elif state.running == 0:
                return
            else:
                completions = session.wait(None)
            for done in completions:
                finish(done)

    # --- submitting ----------------------------------------------------------------------------

    def submit(self, key: str) -> None:
        state = self.state
        if key in state.submitted or key in state.skipped:
            return  # handed over early already (eager), or skipped meanwhile
        node = state.nodes[key]
        loads = state.plan.loads
        if state.stopped and key not in loads:  # fail_fast: nothing new starts
            self.record_skipped(skip(state, [key]))
            return
        cache = self.cache
        if key not in loads and cache.cutoff and cache.cut_off(key, node):
            loads.add(key)  # early cutoff: found by the content of its inputs
        if key in loads:
            hit = state.hits[key]
            refused = cache.refusal(hit)
            if refused is not None:  # as for a value that does not load: it runs instead
                self.recompute(key, refused)
                return
            self.session.submit(key, load_artifact, (self.files, hit.artifact_id, hit.serializer,
                                                     cache.inline_bytes(hit)), (), name=node.task.name)
        else:
            handles, eager = state.handles, state.eager
            inflight = eager.inflight
            deps = [handles[d] if d in handles else inflight[d] for d in node.deps]
            for h in deps:
                if h is RELEASED:  # `release.consumers` guarantees it never happens
                    raise RuntimeError(f"flowkit internal error: an input of node {key!r} was released too early")
            kind = node.kind
            if kind == "task":
                task = node.task
                call = self._calls.get(id(task))
                if call is None:
                    call = self._calls[id(task)] = self.call_of(task)
                fn, hints, serializer, checks = call
                if self.live:  # only a display wants to know when a task is handed over, and really starts
                    self.emit(TaskSubmitted(state.run_id, key, task.name))  # type: ignore[misc]
                    hints = {**hints, "on_running": self.running}
                ctx = (state.run_id, task.name, state.keys.get(key), self.store, checks)
                handle = self.session.submit(key, run_task, (key, self.sink, self.files, serializer, fn, node.args,
                                                             node.kwargs, ctx), deps, **hints)
            elif kind == "map":
                handle = self.session.submit(key, collect, (), deps, name=node.task.name)
            else:
                self.expand(node, deps[0])
                return
            if eager.enabled:
                inflight[key] = handle
                # Dependents may take this future now, unless a retry could replace it.
                if kind == "map" or not self.options(node.task).retries:
                    make_available(state, key, cache.may_cut)
        state.submitted.add(key)
        state.running += 1

    def expand(self, node: Node, source: Any) -> None:
        """A dynamic map's iterable is known: add its items, look them up, schedule them."""
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
        children = expand(state, node, length)
        if self.keymaker is not None:
            self.keymaker.keys(children, state.keys)
            cache = self.cache
            if node.id in cache.forced:
                cache.forced = set(cache.forced) | set(children)
            state.hits.update(cache.lookup(children))
            cache.item_contents(node, old_deps, children, elements)
        loads = state.plan.loads
        before = len(loads)
        self.record_skipped(materialize(state, node.id))
        if len(loads) != before:  # hits among the items: their small values and bindings in one query each
            self.cache.loading(c for c in children if c in loads)
        if self.live:  # the run has more tasks than planned
            self.planned()

    # --- finishing -----------------------------------------------------------------------------

    def finish(self, done: Completion) -> None:
        """One completion: record it and pass it to the transitions."""
        state = self.state
        state.running -= 1
        key = done.key
        eager = state.eager
        if eager.enabled:
            eager.inflight.pop(key, None)
        if key in state.skipped:
            return  # handed over early, then an input failed: already recorded as skipped
        if done.error is None:
            node = state.nodes[key]
            if key in state.plan.loads:  # found by content: its own inputs in this run are its lineage
                self.record_cached(key, state.hits[key], done.started, done.ended, done.worker,
                                   node if key in self.cache.by_content else None)
            elif node.kind == "task":
                self.cache.computed(key, node, done.ended)
                info = done.info
                if info is not None:
                    state.artifacts[key] = info.digest
                    if info.description.get("opaque"):
                        self.cache.opaque.add(key)
                history = attempted(state, done)
                quick = self._quick
                if quick is not None and done.ended - done.started < QUICK:
                    # The constants' lineage now if a later task could change what it says (a file rewritten).
                    params = None if self.tell is None or settled_constants(node) else \
                        param_rows(state.run_id, node, self.store)
                    quick.append((key, node, info, history, done.ended, done.worker, done.logs, done.extras, params))
                    if len(quick) >= BATCH:
                        self.record_quick()
                else:
                    self.record(self.completed(key, node, info, history, done.ended, done.worker, done.logs,
                                               done.extras), info, node)
            else:  # a map's list goes stale with its first stale item
                self.cache.computed(key, node, done.ended)
            if eager.enabled:
                make_available(state, key, self.cache.may_cut)
            for dependent in succeed(state, key, done.handle):  # eager: a failure that waited for this input
                settled = undefer(state, dependent)
                if settled is not None:
                    self.failed_attempt(settled)
        elif isinstance(done.error, KeyboardInterrupt):
            raise done.error
        elif key in state.plan.loads:
            self.recompute(key, done.error)
        elif not (eager.enabled and defer(state, done)):  # handed over early: wait for the inputs' fate
            self.failed_attempt(done)

    def completed(self, key: str, node: Node, info: Any, history: tuple[Any, ...], ended: float, worker: str | None,
                  logs: str | None, extras: Any) -> TaskRun:
        """The task run of a node whose last attempt (which ended at ``ended``) succeeded."""
        state = self.state
        tracked, checks = extras if extras is not None else ((), ())
        if logs and self.live:
            logs = self.output_of(key, logs)
        return completed_task_run(f"{state.run_id}/{key}", state.run_id, key, node.task.name, len(history),
                                  history[0].started, ended, state.keys.get(key),
                                  info.digest if info is not None else None, worker, history, logs, tracked, checks)

    def record_quick(self) -> None:
        """Record the quick task runs held back, in the order they completed.

        Made one after another, the records of a few hundred tasks find the code and data they
        need in the CPU's caches, where one record between two tasks finds them evicted: about
        a tenth of a no-op chain's time. Each is recorded as :meth:`record` would have.
        """
        quick = self._quick
        if not quick:
            return
        done_with = 0
        completed, file = self.completed, self.file
        tr = None
        try:
            for key, node, info, history, ended, worker, logs, extras, params in quick:
                tr = completed(key, node, info, history, ended, worker, logs, extras)
                file(tr, info, node, params)
                done_with += 1
        finally:  # interrupted (Ctrl-C): what was filed is not filed again, the rest is left for cancel()
            if done_with < len(quick):
                index = self.state.record_index.get(quick[done_with][0])
                if index is not None and self.state.records[index] is tr:  # filed, then interrupted
                    done_with += 1
            del quick[:done_with]

    def failed_attempt(self, done: Completion) -> None:
        """A node's own attempt failed: retry it, or record the failure."""
        state = self.state
        key = done.key
        node = state.nodes[key]
        if node.kind == "task" and not state.stopped and should_retry(
                self.options(node.task), done.error, len(state.retry.attempts.get(key, ())) + 1):
            self.retry_later(done)
        else:
            self.finish_failure(done)

    def retry_later(self, done: Completion) -> None:
        """Note the failed attempt and set a timer for the next one, after the policy's delay."""
        state = self.state
        key = done.key
        task = state.nodes[key].task
        opts = self.options(task)
        history, delay = plan_retry(state, done, opts, self.clock.monotonic(), random.random())
        log.info("flowkit: task %r failed (attempt %d of %d: %s); retrying in %.3gs", key, len(history),
                 opts.retries + 1, history[-1].error, delay)
        if self.emit is not None:
            self.emit(TaskRetrying(state.run_id, key, task.name, len(history), history[-1].error or "", delay))

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
            record = self.store.artifact(artifact_id) if self.store is not None and \
                not isinstance(error, RefusedEntry) else None
            problem = incompatible(artifact_id, record.versions, error, node.task.name) if record else None
            log.warning("flowkit: the cached result of task %r (node %r, key %s) could not be loaded (%s); it "
                        "will be recomputed", node.task.name, key, state.keys.get(key), error_text(problem or error))
        if self.emit is not None and key in state.keys:
            self.emit(CacheForgotten(state.run_id, key, state.keys[key],
                                     artifact_id if isinstance(error, DamagedArtifact) else None))
        self.record_skipped(forget(state, key))

    def finish_failure(self, done: Completion) -> None:
        """A node failed for good: record it, skip what is downstream; with ``fail_fast``, stop."""
        state = self.state
        node = state.nodes[done.key]
        exc = done.error
        assert exc is not None
        history = attempted(state, done)
        self.record(TaskRun(
            f"{state.run_id}/{done.key}", state.run_id, done.key, node.task.name, "failed", len(history),
            history[0].started, done.ended, state.keys.get(done.key), error=error_text(exc),
            traceback=user_traceback(exc), worker=done.worker, exception=exc, history=history,
            logs=self.output_of(done.key, getattr(exc, "__flowkit_logs__", None)),
            tracked=getattr(exc, "__flowkit_extras__", ((),))[0], checks=getattr(exc, "results", ())
            if isinstance(exc, CheckFailedError) else (),
        ))
        self.record_skipped(fail(state, done.key))
        if self.fail_fast:
            self.stop()

    def stop(self) -> None:
        """``fail_fast``: submit nothing more (retries included); running tasks finish and are recorded."""
        state = self.state
        given_up, early, skipped = halt(state)
        for key, history in given_up:  # a retry that will not happen: the task failed with what it had
            self.record(TaskRun(f"{state.run_id}/{key}", state.run_id, key, state.nodes[key].task.name, "failed",
                                len(history), history[0].started, history[-1].ended, state.keys.get(key),
                                error=history[-1].error, history=history))
        if early:  # handed over early but not started for real (an input is unfinished): take them back
            self.session.cancel(early)
        self.record_skipped(skipped)

    def cancel(self) -> None:
        """Ctrl-C: stop the session; running tasks are cancelled, the rest skipped."""
        self.session.cancel()
        self.record_quick()
        state = self.state
        finished = {tr.node for tr in state.records}
        for key, node in state.nodes.items():
            if key in finished or key in state.handles or node.kind != "task" or key in state.hits:
                continue
            status = "cancelled" if key in state.submitted else "skipped"
            self.record(TaskRun(f"{state.run_id}/{key}", state.run_id, key, node.task.name, status))

    # --- recording -----------------------------------------------------------------------------

    def output_of(self, key: str, logs: str | None) -> str | None:
        """A task's captured output; shown by the listener now unless it was streamed live."""
        if logs and self.live and self.sink is None:
            for line in logs.splitlines():
                self.emit(TaskOutput(self.state.run_id, key, line))  # type: ignore[misc]
        return logs

    def record(self, tr: TaskRun, info: Any = None, node: Node | None = None) -> None:
        """File a node's task run (the latest counts) and tell the listeners, after the records held back."""
        if self._quick:
            self.record_quick()
        self.file(tr, info, node)

    def file(self, tr: TaskRun, info: Any = None, node: Node | None = None, params: Any = None) -> None:
        """File a node's task run (the latest counts) and tell the listeners (``params``: :func:`lineage_rows`')."""
        state = self.state
        records = state.records
        index = state.record_index.get(tr.node)
        if index is None:
            state.record_index[tr.node] = len(records)
            records.append(tr)
        else:  # recorded before (a cached value that then had to be recomputed): the latest counts
            records[index] = tr
        if self.tell is None:
            return
        if node is None:
            self.tell(tuple.__new__(TaskFinished, (tr, *_NOTHING_MORE)))  # TaskFinished(tr), without a frame
            return
        self.tell(tuple.__new__(TaskFinished, (  # TaskFinished(...), without a Python-level __new__
            tr, info, lineage_rows(state.run_id, node, state.nodes, state.artifacts, self.store, params),
            tr.status == "completed", not node.task.options.cache, self.cache.inherited.get(tr.node),
            self.cache.entry_content(node) if info is not None else None)))

    def record_skipped(self, node_ids: list[str]) -> None:
        """Record task nodes a transition skipped."""
        state = self.state
        for node_id in node_ids:
            self.record(TaskRun(f"{state.run_id}/{node_id}", state.run_id, node_id, state.nodes[node_id].task.name,
                                "skipped", cache_key=state.keys.get(node_id)))

    def record_idle_hits(self, idle_hits: list[str]) -> None:
        """Record the hits nobody needs: what :meth:`record_cached` does, in one loop (most of a rerun)."""
        self.record_quick()
        state = self.state
        run_id, nodes, keys, artifacts = state.run_id, state.nodes, state.keys, state.artifacts
        records, index, hits = state.records, state.record_index, state.hits
        for at in range(0, len(idle_hits), CACHED_EVENT):
            first = len(records)
            for node_id in idle_hits[at:at + CACHED_EVENT]:
                hit = hits[node_id]
                artifact_id = artifacts[node_id] = hit.artifact_id
                tr = cached_task_run(f"{run_id}/{node_id}", run_id, node_id, nodes[node_id].task.name,
                                     keys[node_id], artifact_id, hit.task_run_id)
                index[node_id] = len(records)
                records.append(tr)
            if self.emit is not None:
                self.emit(TasksCached(run_id, tuple(records[first:])))

    def record_cached(self, node_id: str, hit: CacheHit, started: float | None, ended: float | None,
                      worker: str | None, node: Node | None = None) -> None:
        """Record a hit that was loaded (or found by content, with ``node`` for its lineage)."""
        state = self.state
        artifact_id = hit.artifact_id
        if state.artifacts.get(node_id) == artifact_id:
            return  # already recorded at plan time, then loaded after all (a damaged neighbour)
        state.artifacts[node_id] = artifact_id
        self.record(TaskRun(f"{state.run_id}/{node_id}", state.run_id, node_id, state.nodes[node_id].task.name,
                            "cached", 0, started, ended, state.keys[node_id], artifact_id, worker=worker,
                            source=hit.task_run_id), node=node)
