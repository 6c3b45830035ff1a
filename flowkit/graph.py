"""The traced flow: :class:`Node` (one task call) and :class:`FlowGraph`.

Both are inert: they describe work, the engine runs it. ``FlowGraph.nx`` is a
plain ``networkx.DiGraph`` whose node ids are the node ids below, with the
attributes ``task`` (the task name), ``kind`` and ``node`` (the :class:`Node`);
edges point from an upstream node to the nodes that consume its value.

Node ids are stable across traces of the same flow with the same parameters:
the first call of task ``load`` is ``load``, the second ``load#2``; the items
of a map over ``square`` are ``square[0]``, ``square[1]``...; nodes of a flow
called inside a flow are prefixed with its name, as ``prepare/load``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from flowkit.task import Task

__all__ = ["FlowGraph", "Node"]

#: Node kinds: a task call; a map whose items are known (its deps are the
#: items, its value their list); a map over a value known only at run time,
#: which the engine expands into items when that value arrives.
KINDS = ("task", "map", "dynamic_map")


class Node:
    """One task call in a graph.

    Attributes:
        id: the node id, unique in its graph and stable across traces.
        task: the :class:`~flowkit.Task` called.
        kind: ``"task"``, ``"map"`` or ``"dynamic_map"``.
        args, kwargs: the argument template (constants, with refs as slots).
        deps: the ids of the upstream nodes, in slot order.
        source_path: for a dynamic map, the index path into its first dep
            (the iterable); ``None`` otherwise.
        canon: the same call in one canonical spelling, ``(args, kwargs)``, when it
            differs from how it was written (see :func:`flowkit.tracing.canonical_call`):
            what cache keys and lineage see. The task is called as written.
    """

    __slots__ = ("id", "task", "kind", "args", "kwargs", "deps", "source_path", "canon")

    def __init__(
        self,
        id: str,
        task: Task[..., Any],
        kind: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        deps: tuple[str, ...],
        source_path: tuple[Any, ...] | None = None,
        canon: tuple[tuple[Any, ...], dict[str, Any] | None] | None = None,
    ) -> None:
        self.id = id
        self.task = task
        self.kind = kind
        self.args = args
        self.kwargs = kwargs
        self.deps = deps
        self.source_path = source_path
        self.canon = canon

    def spelling(self) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        """The call's arguments as keys and lineage see them: ``canon``, or as written."""
        return self.canon if self.canon is not None else (self.args, self.kwargs)

    @property
    def name(self) -> str:
        """The name of the task this node calls."""
        return self.task.name

    def __repr__(self) -> str:
        return f"Node({self.id!r}, kind={self.kind!r}, deps={list(self.deps)!r})"


class FlowGraph:
    """A traced flow: its nodes, their dependencies and the flow's output.

    Attributes:
        flow: the name of the flow traced.
        params: the bound parameters the flow was traced with.
        nx: the ``networkx.DiGraph`` of node ids.
        nodes: node id -> :class:`Node`, in trace order (a topological order).
        output: the flow's return value as a template over ``output_deps``.
        output_deps: the node ids the output refers to.
    """

    __slots__ = ("flow", "params", "_nx", "nodes", "output", "output_deps")

    def __init__(
        self,
        flow: str,
        params: dict[str, Any],
        nodes: dict[str, Node],
        output: Any,
        output_deps: tuple[str, ...],
    ) -> None:
        self.flow = flow
        self.params = params
        self.nodes = nodes
        self.output = output
        self.output_deps = output_deps
        self._nx: nx.DiGraph | None = None

    @property
    def nx(self) -> nx.DiGraph:
        """The ``networkx.DiGraph`` of node ids (built on first use; running a flow does not need it)."""
        if self._nx is None:
            g = nx.DiGraph()
            g.add_nodes_from((nid, {"task": n.task.name, "kind": n.kind, "node": n}) for nid, n in self.nodes.items())
            g.add_edges_from((dep, nid) for nid, n in self.nodes.items() for dep in n.deps)
            self._nx = g
        return self._nx

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def __repr__(self) -> str:
        edges = sum(len(n.deps) for n in self.nodes.values())
        return f"<FlowGraph {self.flow!r}: {len(self.nodes)} nodes, {edges} edges>"

    def _label(self, node: Node) -> str:
        if node.kind == "map":
            return f"{node.id} (map of {len(node.deps)})"
        if node.kind == "dynamic_map":
            return f"{node.id} (map)"
        return node.id

    def to_mermaid(self) -> str:
        """The graph as a Mermaid ``flowchart`` (paste into Markdown)."""
        index = {node_id: f"n{i}" for i, node_id in enumerate(self.nodes)}
        lines = ["flowchart TD"]
        for node_id, node in self.nodes.items():
            label = self._label(node).replace('"', "#quot;")
            shape = ('[["', '"]]') if node.kind != "task" else ('["', '"]')
            lines.append(f"    {index[node_id]}{shape[0]}{label}{shape[1]}")
        for dst, node in self.nodes.items():
            lines.extend(f"    {index[src]} --> {index[dst]}" for src in node.deps)
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        """The graph in Graphviz DOT (render with ``dot -Tsvg``)."""

        def quote(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [f"digraph {quote(self.flow)} {{", "    node [shape=box, style=rounded];"]
        for node_id, node in self.nodes.items():
            extra = ", shape=box3d" if node.kind != "task" else ""
            lines.append(f"    {quote(node_id)} [label={quote(self._label(node))}{extra}];")
        for dst, node in self.nodes.items():
            lines.extend(f"    {quote(src)} -> {quote(dst)};" for src in node.deps)
        lines.append("}")
        return "\n".join(lines) + "\n"
