"""A run's graph as a server-side SVG, laid out left to right and coloured by task status.

Columns are the graph's topological generations (``nx.topological_generations``):
a node sits one column right of its deepest input. The items of a map
(``sq[0]``, ``sq[1]``...) become one node with counts by status when there are
more than :data:`COLLAPSE_OVER` of them, so a map of thousands of items stays a
readable picture. Every label is escaped; the SVG is plain markup (no script).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

import networkx as nx

__all__ = ["COLLAPSE_OVER", "Box", "collapse", "layout", "render"]

#: A map with more items than this is drawn as one node.
COLLAPSE_OVER = 4
_ITEM = re.compile(r"^(?P<base>.+)\[(?P<index>\d+)\]$")
_W, _H, _GAP_X, _GAP_Y, _PAD = 170, 44, 60, 16, 12
#: Fill colours by status (the page's legend uses the same ones).
COLOURS = {"completed": "#2e7d32", "cached": "#1565c0", "failed": "#c62828", "skipped": "#9e9e9e",
           "running": "#ef6c00", "unneeded": "#bdbdbd", "cancelled": "#6d4c41", "crashed": "#6a1b9a"}
_WORST = ("failed", "running", "cancelled", "skipped", "completed", "cached", "unneeded")


@dataclass
class Box:
    """One drawn node: a task run, or the items of a map collapsed into one."""

    id: str
    label: str
    counts: Counter[str] = field(default_factory=Counter)
    column: int = 0
    row: int = 0

    @property
    def status(self) -> str:
        """The status it is coloured by: the worst among its task runs."""
        for status in _WORST:
            if self.counts.get(status):
                return status
        return next(iter(self.counts), "unknown")

    @property
    def collapsed(self) -> bool:
        return sum(self.counts.values()) > 1


def collapse(nodes: Sequence[tuple[str, str]], edges: Iterable[tuple[str, str]]) -> tuple[dict[str, Box], nx.DiGraph]:
    """Boxes and their graph from (node id, status) pairs and (upstream, node) edges, big maps collapsed."""
    groups: dict[str, list[str]] = {}
    for node, _ in nodes:
        m = _ITEM.match(node)
        if m:
            groups.setdefault(m["base"], []).append(node)
    box_of: dict[str, str] = {}
    for base, items in groups.items():
        if len(items) > COLLAPSE_OVER:
            for item in items:
                box_of[item] = f"{base}[*]"
    boxes: dict[str, Box] = {}
    for node, status in nodes:
        bid = box_of.get(node, node)
        box = boxes.get(bid)
        if box is None:
            label = node if bid == node else f"{bid[:-3]}[0..{len(groups[bid[:-3]]) - 1}]"
            box = boxes[bid] = Box(bid, label)
        box.counts[status] += 1
    g = nx.DiGraph()
    g.add_nodes_from(boxes)
    for a, b in edges:
        ba, bb = box_of.get(a, a), box_of.get(b, b)
        if ba != bb and ba in boxes and bb in boxes:
            g.add_edge(ba, bb)
    return boxes, g


def layout(boxes: dict[str, Box], g: nx.DiGraph) -> list[list[str]]:
    """Set each box's column and row; the columns, left to right (recording order within a column)."""
    order = {bid: i for i, bid in enumerate(boxes)}
    try:
        columns = [sorted(gen, key=order.__getitem__) for gen in nx.topological_generations(g)]
    except nx.NetworkXUnfeasible:  # a cycle cannot come from a traced flow; draw one column rather than fail
        columns = [list(boxes)]
    for c, column in enumerate(columns):
        for r, bid in enumerate(column):
            boxes[bid].column, boxes[bid].row = c, r
    return columns


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(nodes: Sequence[tuple[str, str]], edges: Iterable[tuple[str, str]], *, link: str = "#task-") -> str:
    """The SVG markup of a run's graph (``nodes``: (node id, status) in recording order).

    Each box links to ``link + node id`` (the task's row on the run page) and has a
    tooltip with its counts by status.
    """
    boxes, g = collapse(nodes, edges)
    columns = layout(boxes, g)
    width = _PAD * 2 + max(len(columns), 1) * (_W + _GAP_X) - _GAP_X
    height = _PAD * 2 + max((len(c) for c in columns), default=1) * (_H + _GAP_Y) - _GAP_Y

    def xy(box: Box) -> tuple[int, int]:
        return _PAD + box.column * (_W + _GAP_X), _PAD + box.row * (_H + _GAP_Y)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="the run\'s graph">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#777"/></marker></defs>']
    for a, b in g.edges:
        (x1, y1), (x2, y2) = xy(boxes[a]), xy(boxes[b])
        x1, y1, y2 = x1 + _W, y1 + _H // 2, y2 + _H // 2
        mid = (x1 + x2) // 2
        out.append(f'<path class="edge" d="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" fill="none" '
                   f'stroke="#777" stroke-width="1.2" marker-end="url(#arrow)"/>')
    for box in boxes.values():
        x, y = xy(box)
        colour = COLOURS.get(box.status, "#607d8b")
        counts = ", ".join(f"{n} {s}" for s, n in sorted(box.counts.items()))
        detail = counts if box.collapsed else box.status
        anchor = box.id if not box.collapsed else box.id[:-3] + "[0]"
        out.append(
            f'<a href="{escape(link + anchor)}"><g class="node status-{escape(box.status)}" '
            f'data-node="{escape(box.id)}"><title>{escape(box.label)}: {escape(counts)}</title>'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{colour}"/>'
            f'<text x="{x + 8}" y="{y + 18}" fill="#fff" font-size="13" font-weight="600">'
            f'{escape(_short(box.label))}</text>'
            f'<text x="{x + 8}" y="{y + 35}" fill="#fff" font-size="11">{escape(_short(detail, 30))}</text></g></a>')
    out.append("</svg>")
    return "".join(out)
