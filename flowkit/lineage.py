"""Lineage: which artifacts, task runs and parameters produced a value.

``fk.lineage(target)`` returns a ``networkx.DiGraph`` whose edges point from
inputs to what they produced (artifact -> task run -> artifact, and param ->
task run). ``target`` is either

- a task run (a :class:`~flowkit.TaskRun`, or its id ``"<run id>/<node>"``;
  a unique prefix of the run id is enough): the lineage of *that* value, as
  the run got it. A cached task run leads to the task run that computed the
  value, and each input leads to the task run of the same run that produced
  it. This is the answer an audit wants: ``fk.lineage(run.task_run("train"))``;
- an artifact id (or a unique prefix): content-addressed storage keeps equal
  bytes once, so a digest alone cannot say which task produced it. Every task
  run that computed those bytes is shown, newest first (``producers`` on the
  artifact node lists them in that order). A registered model version's
  artifact that no task run returned leads to the task run that registered it
  (``fk.registry.register`` inside a task).

Node attributes:

- artifact (id = artifact id): ``kind="artifact"``, ``type``, ``size``,
  ``serializer``, ``columns``/``rows`` for tables, and ``removed``/``removed_by``
  when gc (or damage) removed its bytes (the record stays);
- task run (id = task-run id): ``kind="task_run"``, ``task``, ``node``,
  ``run_id``, ``flow``, ``started``, ``cache_key``, ``git_commit``, ``status``, and
  ``computed_by`` (the source) for a cached one found by the content of its inputs;
- parameter (id = ``param:<name>:<token>``): ``kind="param"``, ``name``, ``repr``.

The graph's ``root`` attribute (``g.graph["root"]``) is the artifact asked about.
"""

from __future__ import annotations

import os
from typing import Any

import networkx as nx

from flowkit.records import TaskRun
from flowkit.store import Store
from flowkit.store.protocols import LineageStep, MetadataStore

__all__ = ["lineage"]


def lineage(target: str | TaskRun, *, home: str | os.PathLike[str] | None = None,
            store: Store | None = None) -> nx.DiGraph:
    """The graph of everything that produced a value (see the module docstring).

    Args:
        target: a task run, a task-run id (``"<run id>/<node>"``) or an artifact id
            (a unique prefix of either id is enough).
        home: the store's folder (default ``$FLOWKIT_HOME``, else ``./.flowkit``).
        store: the store to read instead.

    Raises:
        KeyError: no such artifact or task run, or an ambiguous prefix.
    """
    store = store or Store.open(home)
    walk = _Walk(store)
    if isinstance(target, TaskRun) or "/" in target:
        step = _task_run(store, target)
        if step.artifact_id is None:
            raise KeyError(f"task run {step.id} ({step.status}) has no stored value, so it has no lineage")
        walk.graph.graph["root"] = step.artifact_id
        walk.artifact(step.artifact_id)
        producer = walk.producer_of(step)
        if producer is not None:
            walk.task_run(producer, step.artifact_id)
        else:
            walk.all_producers(step.artifact_id)
    else:
        artifact_id = _artifact_id(store, target)
        walk.graph.graph["root"] = artifact_id
        walk.artifact(artifact_id)
        walk.all_producers(artifact_id)
    return walk.graph


def _task_run(store: Store, target: str | TaskRun) -> LineageStep:
    if isinstance(target, TaskRun):
        run_id, node = target.run_id, target.node
    else:
        prefix, _, node = target.partition("/")
        ids = store.db.run_ids_like(prefix) if prefix and node else []  # "/x" or "run/" names no task run
        if len(ids) != 1:
            what = "is ambiguous" if ids else "is not in the store"
            raise KeyError(f"task run {target!r}: run {prefix!r} {what} at {store.home}; a task run is "
                           f"named RUN/NODE, as `flowkit show RUN` lists them")
        run_id = ids[0]
    step = store.db.step(run_id, node)
    if step is None:
        named = f"task run {target!r}: " if isinstance(target, str) else ""
        raise KeyError(f"{named}run {run_id[:12]} has no task run of node {node!r} in the store at {store.home}")
    return step


def _artifact_id(store: Store, artifact_id: str) -> str:
    if store.artifact(artifact_id) is not None:
        return artifact_id
    ids = store.db.artifact_ids_like(artifact_id) if artifact_id else []  # "" is no prefix of one artifact
    if len(ids) != 1:
        what = "is ambiguous" if ids else "is not in the store"
        raise KeyError(f"artifact {artifact_id!r} {what} at {store.home}")
    return ids[0]


class _Walk:
    """Builds one lineage graph, visiting each task run once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db: MetadataStore = store.db
        self.graph = nx.DiGraph()
        self.seen: set[str] = set()

    def artifact(self, artifact_id: str) -> None:
        if artifact_id in self.graph and self.graph.nodes[artifact_id].get("kind") == "artifact":
            return
        record: dict[str, Any] = self.store.artifact(artifact_id) or {}
        self.graph.add_node(artifact_id, kind="artifact", type=record.get("type"), size=record.get("size"),
                            serializer=record.get("serializer"), columns=record.get("columns"),
                            rows=record.get("rows"), removed=record.get("removed"),
                            removed_by=record.get("removed_by"))

    def producer_of(self, step: LineageStep) -> LineageStep | None:
        """The task run whose inputs a task run's value answers for.

        A completed one itself; a cached one its source, which computed the value, unless it
        was found by the content of its own inputs (early cutoff): then it recorded those, and
        they are this run's lineage (``computed_by`` names the source).
        """
        if step.status == "completed":
            return step
        if step.status == "cached" and step.source and self.db.consumed(step.run_id, step.node):
            return step
        if step.status == "cached" and step.source:
            run_id, _, node = step.source.partition("/")
            return self.db.step(run_id, node)
        return None  # recorded before sources were: the digest is all there is to go on

    def all_producers(self, artifact_id: str) -> None:
        producers = self.db.producers(artifact_id)
        if not producers:  # a model registered inside a task is not that task run's output: the registry links it
            registered = self.db.registered_producers([artifact_id]).get(artifact_id)
            run_id, _, node = (registered or "").partition("/")
            step = self.db.step(run_id, node) if registered else None
            producers = [step] if step is not None else []
        self.graph.nodes[artifact_id]["producers"] = [p.id for p in producers]
        for producer in producers:
            self.task_run(producer, artifact_id)

    def task_run(self, step: LineageStep, output: str) -> None:
        g = self.graph
        g.add_node(step.id, kind="task_run", task=step.task, node=step.node, run_id=step.run_id, flow=step.flow,
                   started=step.started, cache_key=step.cache_key, git_commit=step.git_commit, status=step.status,
                   computed_by=step.source if step.status == "cached" else None)
        g.add_edge(step.id, output)
        if step.id in self.seen:
            return
        self.seen.add(step.id)
        for record in self.db.consumed(step.run_id, step.node):
            if record.kind == "artifact" and record.artifact_id is not None:
                self.artifact(record.artifact_id)
                g.add_edge(record.artifact_id, step.id)
                upstream = self.db.step(step.run_id, record.name) if record.name else None
                producer = self.producer_of(upstream) if upstream is not None else None
                if producer is not None and producer.artifact_id == record.artifact_id:
                    self.task_run(producer, record.artifact_id)
                elif "producers" not in g.nodes[record.artifact_id]:
                    self.all_producers(record.artifact_id)
            else:
                # One node per parameter name and value: ``n = 1`` and ``x = 1`` are two inputs.
                param_id = f"param:{record.name}:{record.token or record.repr or ''}"
                g.add_node(param_id, kind="param", name=record.name, repr=record.repr)
                g.add_edge(param_id, step.id)
