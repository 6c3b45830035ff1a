"""Server-side SVG charts of the web view: a metric over steps (compare page) and a run's timeline.

Plain markup, no script; every label is escaped. Numbers are formatted with
:func:`_num` so the axes show readable min/max labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from flowkit.ui.graph_svg import COLOURS

__all__ = ["PALETTE", "TIMELINE_MAX_ROWS", "line_plot", "timeline"]

#: Line colours of the runs of a plot, in order (repeating).
PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457")
#: Task runs drawn on a timeline at most (the earliest-starting ones).
TIMELINE_MAX_ROWS = 300


def _num(x: float) -> str:
    if x == 0 or (1e-3 <= abs(x) < 1e6):
        return f"{x:.4g}"
    return f"{x:.3e}"


def line_plot(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, title: str = "",
              width: int = 760, height: int = 320) -> str:
    """One polyline per (label, [(step, value), ...]) with a legend and min/max labels on both axes."""
    points = [p for _, pts in series for p in pts if math.isfinite(p[1])]
    left, right, top, bottom = 70, 20, 24, 40
    legend_h = 18 * len(series)
    full_h = height + legend_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{full_h}" '
           f'viewBox="0 0 {width} {full_h}" role="img" aria-label="{escape(title)} over steps">']
    if title:
        out.append(f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>')
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="#fff" stroke="#bbb"/>')
    if not points:
        out.append(f'<text x="{x0 + 10}" y="{(y0 + y1) // 2}" font-size="12" fill="#607d8b">no values</text></svg>')
        return "".join(out)
    smin, smax = min(p[0] for p in points), max(p[0] for p in points)
    vmin, vmax = min(p[1] for p in points), max(p[1] for p in points)
    sspan, vspan = (smax - smin) or 1.0, (vmax - vmin) or 1.0

    def sx(s: float) -> float:
        return x0 + (s - smin) / sspan * (x1 - x0) if smax != smin else (x0 + x1) / 2

    def sy(v: float) -> float:
        return y0 - (v - vmin) / vspan * (y0 - y1) if vmax != vmin else (y0 + y1) / 2

    out.append(f'<text class="axis" x="{x0 - 6}" y="{y0}" font-size="11" text-anchor="end">{_num(vmin)}</text>'
               f'<text class="axis" x="{x0 - 6}" y="{y1 + 10}" font-size="11" text-anchor="end">{_num(vmax)}</text>'
               f'<text class="axis" x="{x0}" y="{y0 + 16}" font-size="11">{_num(smin)}</text>'
               f'<text class="axis" x="{x1}" y="{y0 + 16}" font-size="11" text-anchor="end">{_num(smax)}</text>'
               f'<text x="{(x0 + x1) // 2}" y="{y0 + 30}" font-size="11" text-anchor="middle" fill="#607d8b">step</text>')
    for i, (label, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        good = [(s, v) for s, v in pts if math.isfinite(v)]
        coords = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in good)
        out.append(f'<g class="series" data-run="{escape(label)}"><title>{escape(label)}</title>')
        if len(good) > 1:
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for s, v in good:
            out.append(f'<circle cx="{sx(s):.1f}" cy="{sy(v):.1f}" r="2.5" fill="{colour}"/>')
        out.append("</g>")
        ly = height + 18 * i + 4
        out.append(f'<g class="legend-item"><rect x="{x0}" y="{ly}" width="14" height="10" fill="{colour}"/>'
                   f'<text x="{x0 + 20}" y="{ly + 9}" font-size="11">{escape(label)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def timeline(tasks: Sequence[dict[str, Any]], *, width: int = 900) -> tuple[str, int]:
    """A Gantt chart: one row per task run with timings, one bar per timed attempt, coloured by status.

    ``tasks``: dicts with ``node``, ``status`` and ``segments`` ([(started, ended, status), ...]).
    Task runs without segments (cached, skipped) are left out. Returns the SVG and how many
    task runs were left out because they have no timings.
    """
    timed = [t for t in tasks if t["segments"]]
    untimed = len(tasks) - len(timed)
    timed.sort(key=lambda t: min(s[0] for s in t["segments"]))
    more = max(len(timed) - TIMELINE_MAX_ROWS, 0)
    timed = timed[:TIMELINE_MAX_ROWS]
    label_w, row_h, top, pad = 190, 18, 8, 10
    height = top + max(len(timed), 1) * row_h + 34
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="the run\'s timeline">']
    if not timed:
        out.append('<text x="10" y="20" font-size="12" fill="#607d8b">no task run has timings</text></svg>')
        return "".join(out), untimed
    t0 = min(s[0] for t in timed for s in t["segments"])
    t1 = max(s[1] for t in timed for s in t["segments"])
    span = (t1 - t0) or 1e-6
    x0, x1 = label_w, width - pad

    def tx(t: float) -> float:
        return x0 + (t - t0) / span * (x1 - x0)

    for r, t in enumerate(timed):
        y = top + r * row_h
        label = t["node"] if len(t["node"]) <= 26 else t["node"][:25] + "…"
        out.append(f'<g class="task" data-task="{escape(t["node"])}">'
                   f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{escape(label)}</text>')
        for n, (start, end, status) in enumerate(t["segments"], 1):
            bx, bw = tx(start), max(tx(end) - tx(start), 1.5)
            colour = COLOURS.get(status, "#607d8b")
            out.append(f'<rect class="bar status-{escape(status)}" x="{bx:.1f}" y="{y + 2}" width="{bw:.1f}" '
                       f'height="{row_h - 5}" rx="2" fill="{colour}"><title>{escape(t["node"])}: attempt {n}, '
                       f'{escape(status)}, {end - start:.3f} s</title></rect>')
        out.append("</g>")
    axis_y = top + len(timed) * row_h + 4
    out.append(f'<line x1="{x0}" y1="{axis_y}" x2="{x1}" y2="{axis_y}" stroke="#999"/>')
    for i in range(5):
        frac = i / 4
        x = x0 + frac * (x1 - x0)
        anchor = "start" if i == 0 else ("end" if i == 4 else "middle")
        out.append(f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#999"/>'
                   f'<text class="axis" x="{x:.1f}" y="{axis_y + 16}" font-size="11" text-anchor="{anchor}">'
                   f'+{_secs(frac * span)}</text>')
    if more:
        out.append(f'<text x="{x0}" y="{axis_y + 30}" font-size="11" fill="#607d8b">and {more} more task runs '
                   f'(not drawn)</text>')
    out.append("</svg>")
    return "".join(out), untimed


def _secs(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"
