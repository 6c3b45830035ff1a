"""The engine's state, and the small functions that change it.

The engine owns the policy (readiness, cache planning, failure and skipping,
dynamic maps, retries, releasing values); a session only runs callables
(:mod:`flowkit.executors`). All of one run's state is plain data in
:class:`RunState`; each thing that happens is a function here that changes it and
returns what must be recorded (the nodes it skipped, a retry's delay), with no
session, store or listener in sight. :class:`flowkit.driver.Loop` drives them:
it submits, waits, passes on completions, fires timers and emits the events.

The state: what :mod:`flowkit.planning` reads too (``run_id``, ``nodes``, ``keys``,
``hits``, ``artifacts``); progress (``handles``: a value in-process, a future on
Dask; ``records``, ``submitted``, ``running``, ``failed``, ``skipped``...); and
the groups :class:`Plan`, :class:`Release`, :class:`Retry` and :class:`Eager`.

**Planning.** With a store, every node's key is computed up front
(:mod:`flowkit.cache`) and looked up in one query. A task node whose key is in
the cache is a *hit*: it is loaded only if a node that must run (or the flow's
output) needs its value, and otherwise just recorded ``cached``. Every other
task node must run. :func:`schedule` counts consumers and materializes the
leaves and the output; :func:`materialize` schedules a node and, first, what it
needs: hits as loads, the rest as runs.

**A worked example**, the diamond ``a -> (b, c) -> d`` with nothing cached::

    schedule     plan.waiting={a:0, b:1, c:1, d:2}  plan.ready=[a]
                 plan.dependents={a:[b, c], b:[d], c:[d]}  release.consumers={a:2, b:1, c:1}
    a completes  (succeed) handles={a}  plan.waiting={a:0, b:0, c:0, d:2}  plan.ready=[b, c]
                 release.done={a}
    b fails      (fail) failed=[b]  skipped={d}  release.done={a, b, d}
                 release.consumers={a:1, b:0, c:0}  (d never becomes ready)
    c completes  handles={a: RELEASED, c: RELEASED}  release.consumers={a:0, b:0, c:0}
                 nothing running: the run is "failed"

Rerun after fixing b: a and c are hits, loaded since b and d (which run) need them.

**Releasing values.** A handle becomes :data:`RELEASED` once its ``consumers``
count is zero (in-process the value can be collected; on Dask the future goes
and the workers free the data), unless the flow returns it: above, ``a`` goes
once ``b`` and ``c`` are done with it. A consumer that may still need its inputs
(an attempt to retry, a hit that a damaged neighbour could make run) keeps them.

A dynamic map (``t.map(ref)``) is ready when its iterable is known; :func:`expand`
adds an item node per element and makes the map a collector of their values. A
cached value that does not load is forgotten (:func:`forget`) and recomputed.

**Retries** are timers, never sleeping workers: :func:`plan_retry` files the
failed attempt and pushes ``(now + delay, ...)``; :func:`fire_timers` makes what
is due ready. With ``retry_delay=1, backoff=2`` and the clock at 10.0, a second
failure of ``b`` makes ``retry.timers=[(12.0, 0, "b")]``.

**Eager hand-over.** On a session whose handles exist at submission (Dask
futures, ``session.eager``), a node is handed over once every input's handle is
*available* (:func:`make_available`), before the values exist; an error it then
reports is deferred (:func:`defer`) until its inputs' fate is known
(:func:`undefer`), so an input's failure skips it rather than failing it.
"""

from __future__ import annotations

import functools
import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowkit._template import Item, Slot
from flowkit.executors import Completion
from flowkit.graph import Node
from flowkit.records import Attempt, TaskRun
from flowkit.retry import retry_delay
from flowkit.store.metadata import CacheHit

if TYPE_CHECKING:
    from flowkit.driver import Loop
    from flowkit.task import TaskOptions

__all__ = ["RELEASED", "Eager", "Loop", "Plan", "Release", "Retry", "RunState", "attempted", "complete", "defer",
           "done_with", "error_text", "expand", "expand_map", "fail", "fire_timers", "forget", "halt",
           "make_available", "materialize", "plan_retry", "release", "retire_idle", "schedule", "skip",
           "succeed", "undefer"]

RELEASED = object()  # stands in ``RunState.handles`` for a value nothing needs any more
_attempt = functools.partial(tuple.__new__, Attempt)  # Attempt(...) without its Python-level __new__


@dataclass
class Plan:
    """What is scheduled, what waits for what, and what may be submitted now."""

    waiting: dict[str, int] = field(default_factory=dict)  # node -> inputs without a handle yet
    dependents: dict[str, list[str]] = field(default_factory=dict)  # node -> scheduled nodes waiting for it
    ready: deque[str] = field(default_factory=deque)  # to submit, in order
    scheduled: set[str] = field(default_factory=set)
    loads: set[str] = field(default_factory=set)  # scheduled hits: loaded rather than run


@dataclass
class Release:
    """Who still needs each value (see :func:`done_with`)."""

    consumers: dict[str, int] = field(default_factory=dict)  # node -> nodes taking its value, not done
    done: set[str] = field(default_factory=set)  # nodes done with their inputs
    keep: set[str] = field(default_factory=set)  # what the flow returns: never released


@dataclass
class Retry:
    """Failed attempts of nodes that will be tried again, and when."""

    attempts: dict[str, list[Attempt]] = field(default_factory=dict)  # node -> its failed attempts so far
    timers: list[tuple[float, int, str]] = field(default_factory=list)  # a heap of (due, tie-breaker, node)


@dataclass
class Eager:
    """Hand-over before values exist, for a session whose handles are futures (see :func:`make_available`)."""

    enabled: bool = False
    inflight: dict[str, Any] = field(default_factory=dict)  # node -> handle of its running attempt
    available: set[str] = field(default_factory=set)  # nodes whose handle dependents may take now
    missing: dict[str, int] = field(default_factory=dict)  # node -> how many of its inputs are not available
    deferred: dict[str, Completion] = field(default_factory=dict)  # failures waiting for their inputs' fate


@dataclass
class RunState:
    """Everything one run knows (see the module docstring)."""

    run_id: str
    nodes: dict[str, Node]
    keys: dict[str, str] = field(default_factory=dict)
    hits: dict[str, CacheHit] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    handles: dict[str, Any] = field(default_factory=dict)
    records: list[TaskRun] = field(default_factory=list)
    record_index: dict[str, int] = field(default_factory=dict)
    submitted: set[str] = field(default_factory=set)
    running: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    stopped: bool = False  # fail_fast: nothing new starts
    expanded: bool = False  # a dynamic map was expanded: ``nodes`` is not the traced graph's
    plan: Plan = field(default_factory=Plan)
    release: Release = field(default_factory=Release)
    retry: Retry = field(default_factory=Retry)
    eager: Eager = field(default_factory=Eager)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def schedule(state: RunState, output_deps: Iterable[str]) -> tuple[list[str], list[str]]:
    """Plan the run once ``state.hits`` is known; return the hits and the tasks nobody needs (to record).

    What nothing consumes runs unless it is cached (a map over a run-time value too: only
    running it tells which of its items are), and so does the flow's output; the rest runs
    only if something that runs needs it.
    """
    nodes, hits = state.nodes, state.hits
    consumers = state.release.consumers
    get = consumers.get
    for node in nodes.values():
        for dep in node.deps:
            consumers[dep] = get(dep, 0) + 1
    for node_id in nodes:
        if not get(node_id) and node_id not in hits:
            _materialize_leaf(state, node_id)
    for node_id in output_deps:
        materialize(state, node_id)
    scheduled = state.plan.scheduled
    idle_hits: list[str] = []  # ids only: a tuple each would be work for the gc
    unneeded: list[str] = []  # tasks every consumer of which is cached
    if len(scheduled) < len(nodes):
        for node_id, node in nodes.items():
            if node_id in scheduled:
                continue
            if node_id in hits:
                idle_hits.append(node_id)
            elif node.kind == "task":
                unneeded.append(node_id)
        if idle_hits or unneeded:
            retire_idle(state)
    return idle_hits, unneeded


def _materialize_leaf(state: RunState, node_id: str) -> None:
    """Schedule a node nothing consumes; for a map, only its items that are not cached."""
    node = state.nodes[node_id]
    if node.kind != "map":
        materialize(state, node_id)
        return
    for child in node.deps:
        if child not in state.hits:
            _materialize_leaf(state, child)


def materialize(state: RunState, root: str) -> list[str]:
    """Schedule ``root`` (and first what it needs): a hit is loaded, anything else runs.

    A node with a failed or skipped input is skipped at once: returns what :func:`skip` does.
    """
    plan = state.plan
    scheduled, hits, nodes, handles = plan.scheduled, state.hits, state.nodes, state.handles
    skipped_now: list[str] = []
    stack = [root]
    while stack:
        node_id = stack[-1]
        if node_id in scheduled:
            stack.pop()
            continue
        if node_id in hits:
            scheduled.add(node_id)
            plan.loads.add(node_id)
            plan.ready.append(node_id)
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
            if dep in handles:
                continue
            if dep in state.skipped or dep in state.failed:
                doomed = True
                continue
            plan.dependents.setdefault(dep, []).append(node_id)
            waiting += 1
        plan.waiting[node_id] = waiting
        if doomed:
            skipped_now += skip(state, [node_id])
        elif waiting == 0:
            plan.ready.append(node_id)
    return skipped_now


def retire_idle(state: RunState) -> None:
    """Stop counting unscheduled nodes as consumers, so they pin no value.

    One runs only if a load it feeds fails and is recomputed (:func:`forget`): only those
    upstream of a load, through other unscheduled nodes, may still need their inputs.
    """
    nodes, scheduled = state.nodes, state.plan.scheduled
    idle = [n for n, node in nodes.items() if n not in scheduled and any(d in scheduled for d in node.deps)]
    if not idle:  # only a hit that takes a scheduled node's value could pin one
        return
    may_run: set[str] = set()
    stack = list(state.plan.loads)
    while stack:
        for dep in nodes[stack.pop()].deps:
            if dep not in scheduled and dep not in may_run:
                may_run.add(dep)
                stack.append(dep)
    for node_id in idle:
        if node_id not in may_run:
            done_with(state, node_id)


def complete(state: RunState, key: str, handle: Any) -> None:
    """Record a node's result handle and make its dependents ready when they can run."""
    state.handles[key] = handle
    plan = state.plan
    waiting = plan.waiting
    for dep in plan.dependents.pop(key, ()):
        left = waiting[dep] - 1
        waiting[dep] = left
        if left == 0 and dep not in state.skipped and dep not in state.submitted:
            plan.ready.append(dep)


def succeed(state: RunState, key: str, handle: Any) -> list[str] | tuple[()]:
    """A node's value is here: :func:`complete` it, it is :func:`done_with` its inputs, its value goes if unused.

    Returns the dependents whose deferred failure this may settle (:func:`undefer`), if any is deferred.
    """
    waiting_on_me = state.plan.dependents.get(key) if state.eager.deferred else None
    complete(state, key, handle)
    done_with(state, key)
    if not state.release.consumers.get(key):  # a value nobody takes (the flow's output is kept)
        release(state, key)
    return waiting_on_me or ()


def done_with(state: RunState, key: str) -> None:
    """``key`` needs its inputs no more (it finished for good): release those nobody else needs."""
    group = state.release
    done = group.done
    if key in done:
        return
    done.add(key)
    consumers = group.consumers
    for dep in state.nodes[key].deps:
        left = consumers[dep] - 1
        consumers[dep] = left
        if not left:  # the last of a dep taken twice by one node counts once
            release(state, dep)


def release(state: RunState, key: str) -> None:
    """Drop ``key``'s handle if it has one, no consumer waits for it and the flow does not return it."""
    handles = state.handles
    if key in handles and not state.release.consumers.get(key) and key not in state.release.keep:
        handles[key] = RELEASED


def skip(state: RunState, roots: list[str]) -> list[str]:
    """Mark ``roots`` and every scheduled node downstream skipped; return the task nodes to record so."""
    skipped, handles, nodes = state.skipped, state.handles, state.nodes
    dependents, deferred = state.plan.dependents, state.eager.deferred
    out = []
    stack = list(roots)
    while stack:
        node_id = stack.pop()
        if node_id in skipped:
            continue
        skipped.add(node_id)
        deferred.pop(node_id, None)
        done_with(state, node_id)
        if nodes[node_id].kind == "task" and node_id not in handles:
            out.append(node_id)
        stack.extend(dependents.get(node_id, ()))
    return out


def fail(state: RunState, key: str) -> list[str]:
    """``key`` failed for good: it is done with its inputs; skip what waits for it (returned)."""
    state.failed.append(key)
    done_with(state, key)
    return skip(state, list(state.plan.dependents.get(key, ())))


def forget(state: RunState, key: str) -> list[str]:
    """A cached value could not be loaded: it is no hit, and its node is scheduled to run instead."""
    plan = state.plan
    plan.loads.discard(key)
    state.submitted.discard(key)  # it runs now, instead of the load
    del state.hits[key]
    plan.scheduled.discard(key)
    return materialize(state, key)


def halt(state: RunState) -> tuple[list[tuple[str, tuple[Attempt, ...]]], list[str], list[str]]:
    """``fail_fast``: nothing more starts; running tasks finish.

    Returns the nodes whose retry will not happen (with the attempts they had), those
    handed over early with inputs unfinished (to take back), and the task nodes skipped.
    """
    state.stopped = True
    retry = state.retry
    given_up = []
    for _, _, key in retry.timers:
        history = tuple(retry.attempts.pop(key))
        state.failed.append(key)
        done_with(state, key)
        given_up.append((key, history))
    retry.timers.clear()
    state.plan.ready.clear()
    handles, nodes = state.handles, state.nodes
    early = [k for k in state.eager.inflight if any(d not in handles for d in nodes[k].deps)]
    rest = [key for key in state.plan.scheduled if key not in handles and key not in state.submitted
            and key not in state.failed]
    return given_up, early, skip(state, early + rest)


def attempted(state: RunState, done: Completion) -> tuple[Attempt, ...]:
    """Every attempt of a node so far, ending with the one that just finished (taken from ``retry``)."""
    attempts = state.retry.attempts
    if not done.lost and done.error is None and done.key not in attempts:  # most task runs: one attempt, fine
        return (_attempt((1, done.started, done.ended, None)),)
    earlier = attempts.pop(done.key, [])
    for worker in done.lost:  # attempts that died with their worker, recomputed by the cluster
        earlier.append(Attempt(len(earlier) + 1, None, None, f"worker {worker} was lost during the attempt"))
    error = error_text(done.error) if done.error is not None else None
    return (*earlier, Attempt(len(earlier) + 1, done.started, done.ended, error))


def plan_retry(state: RunState, done: Completion, options: TaskOptions, now: float,
               spread: float) -> tuple[tuple[Attempt, ...], float]:
    """File a failed attempt; time the next for ``now`` plus the delay (``spread`` in [0, 1) draws the jitter).

    Returns the attempts so far and the delay.
    """
    key = done.key
    history = attempted(state, done)
    retry = state.retry
    retry.attempts[key] = list(history)
    state.submitted.discard(key)  # so the timer can submit it again, and nothing sooner
    ready = state.plan.ready
    if key in ready:
        ready.remove(key)
    delay = retry_delay(options, len(history) - 1, spread)
    heapq.heappush(retry.timers, (now + delay, len(retry.timers), key))
    return history, delay


def fire_timers(state: RunState, now: float) -> int:
    """Make the retries due by ``now`` ready; return how many."""
    timers, ready = state.retry.timers, state.plan.ready
    fired = 0
    while timers and timers[0][0] <= now:
        ready.append(heapq.heappop(timers)[2])
        fired += 1
    return fired


def make_available(state: RunState, key: str, may_cut: Callable[[str, Node], bool]) -> None:
    """Eager: ``key``'s handle can be passed on; make ready dependents whose inputs all can.

    Counting missing inputs per dependent keeps this linear in the edges (a reduce over
    thousands). Loads, dynamic maps and what early cutoff may serve (``may_cut``: it needs
    its inputs' digests) are never handed over early.
    """
    eager = state.eager
    available, missing = eager.available, eager.missing
    if key in available:
        return
    available.add(key)
    nodes, loads, ready = state.nodes, state.plan.loads, state.plan.ready
    for dependent in state.plan.dependents.get(key, ()):
        left = missing.get(dependent)
        if left is None:
            left = sum(1 for dep in nodes[dependent].deps if dep not in available)
        else:
            left -= 1
        missing[dependent] = left
        if left == 0 and nodes[dependent].kind != "dynamic_map" and dependent not in loads and \
                not may_cut(dependent, nodes[dependent]):
            ready.append(dependent)


def defer(state: RunState, done: Completion) -> bool:
    """Eager: hold the error of a node handed over early while an input has no value yet.

    It may be an input's error, passed on: an input failing skips the node, all succeeding
    makes the error its own.
    """
    handles = state.handles
    if all(d in handles for d in state.nodes[done.key].deps):
        return False
    state.eager.deferred[done.key] = done
    return True


def undefer(state: RunState, key: str) -> Completion | None:
    """Eager: ``key``'s deferred failure, taken out, once all its inputs have values (else ``None``)."""
    deferred = state.eager.deferred
    settled = key in deferred and all(d in state.handles for d in state.nodes[key].deps)
    return deferred.pop(key) if settled else None


def expand_map(state: RunState, node: Node, length: int) -> dict[str, Node]:
    """Replace a dynamic map node by ``length`` item nodes and a collector; return the items.

    Item ``k`` calls the task with element ``k`` of the iterable (slot 0 of the map node, at
    ``node.source_path``) plus the map's fixed keyword arguments; its canonical spelling
    follows the map's (``node.canon``: what comes after the item, and the keywords).
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


def expand(state: RunState, node: Node, length: int) -> dict[str, Node]:
    """:func:`expand_map`, consumers moved (each item takes the map's inputs, the map the items).

    The map node is unscheduled, for :func:`materialize` to schedule it again as a collector.
    """
    old_deps = node.deps
    children = expand_map(state, node, length)
    consumers = state.release.consumers
    for dep in old_deps:
        consumers[dep] += length - 1
    for child in children:
        consumers[child] = 1
    for dep in old_deps:
        release(state, dep)
    state.plan.scheduled.discard(node.id)
    state.eager.missing.pop(node.id, None)  # its inputs are now its items
    return children


def __getattr__(name: str) -> Any:
    if name == "Loop":  # the driver lives beside the state (:mod:`flowkit.driver`) and imports it
        from flowkit.driver import Loop

        return Loop
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
