"""Lineage: which artifacts, task runs and parameters produced an artifact.

``fk.lineage(artifact_id)`` returns a ``networkx.DiGraph`` whose edges point
from inputs to what they produced (artifact -> task run -> artifact, and
param -> task run). Node attributes:

- artifact (id = artifact id): ``kind="artifact"``, ``type``, ``size``,
  ``serializer``, and ``columns``/``rows`` for tables;
- task run (id = task-run id): ``kind="task_run"``, ``task``, ``node``,
  ``run_id``, ``flow``, ``started``, ``cache_key``, ``git_commit``;
- parameter (id = ``param:<token>``): ``kind="param"``, ``name``, ``repr``.

A cached artifact leads back to the run that computed it: lineage follows the
first task run that *completed* with that artifact, across runs.
"""

from __future__ import annotations

import os

import networkx as nx

from flowkit.store import Store

__all__ = ["lineage"]


def lineage(artifact_id: str, *, home: str | os.PathLike[str] | None = None, store: Store | None = None) -> nx.DiGraph:
    """The graph of everything that produced ``artifact_id`` (see the module docstring)."""
    store = store or Store.open(home)
    db = store.db
    if store.artifact(artifact_id) is None:
        rows = db.query("SELECT id FROM artifacts WHERE id LIKE ? LIMIT 2", (artifact_id + "%",))
        if len(rows) != 1:
            what = "is ambiguous" if rows else "is not in the store"
            raise KeyError(f"artifact {artifact_id!r} {what} at {store.home}")
        artifact_id = rows[0][0]
    g = nx.DiGraph()
    todo = [artifact_id]
    seen: set[str] = set()
    while todo:
        aid = todo.pop()
        if aid in seen:
            continue
        seen.add(aid)
        record = store.artifact(aid) or {}
        g.add_node(aid, kind="artifact", type=record.get("type"), size=record.get("size"),
                   serializer=record.get("serializer"), columns=record.get("columns"), rows=record.get("rows"))
        producer = db.query(
            "SELECT tr.run_id || '/' || tr.node, tr.run_id, tr.task, tr.node, tr.started, tr.cache_key, r.flow, "
            "r.git_commit FROM task_runs tr LEFT JOIN runs r ON r.id = tr.run_id "
            "WHERE tr.artifact_id = ? AND tr.status = 'completed' ORDER BY tr.started LIMIT 1", (aid,))
        if not producer:
            continue
        tr_id, run_id, task, node, started, cache_key, flow, git_commit = producer[0]
        g.add_node(tr_id, kind="task_run", task=task, node=node, run_id=run_id, flow=flow, started=started,
                   cache_key=cache_key, git_commit=git_commit)
        g.add_edge(tr_id, aid)
        for kind, input_id, name, tok, text in db.query(
                "SELECT kind, artifact_id, name, token, repr FROM inputs WHERE run_id = ? AND node = ? ORDER BY rowid",
                (run_id, node)):
            if kind == "artifact":
                g.add_edge(input_id, tr_id)
                todo.append(input_id)
            else:
                param_id = f"param:{tok or name + '=' + (text or '')}"
                g.add_node(param_id, kind="param", name=name, repr=text)
                g.add_edge(param_id, tr_id)
    return g
