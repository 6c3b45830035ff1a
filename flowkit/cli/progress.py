"""Showing a run as it goes: a live panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from flowkit.records import Run, TaskRun

__all__ = ["Progress", "summary_table"]

_STYLE = {"completed": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow",
          "cancelled": "magenta", "running": "blue"}


class Progress:
    """A :class:`~flowkit.engine.RunListener` for the terminal."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console = console
        self.total = 0
        self.counts: dict[str, int] = {}
        self.queued: dict[str, str] = {}  # node -> task: handed to the executor, not started yet
        self.running: dict[str, str] = {}  # node -> task: started, not finished
        self.started = time.monotonic()
        self._live = Live(console=console, refresh_per_second=8, transient=True,
                          get_renderable=self._panel) if live else None

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()

    def _panel(self) -> Text:
        done = sum(self.counts.values())
        text = Text(f"{done}/{self.total} tasks  ", style="bold")
        for status in ("completed", "cached", "failed", "skipped"):
            if self.counts.get(status):
                text.append(f"{status} {self.counts[status]}  ", style=_STYLE[status])
        text.append(f"{time.monotonic() - self.started:.1f}s")
        running, queued = list(self.running), len(self.queued)
        if running or queued:
            names = ", ".join(running[:6]) + (" ..." if len(running) > 6 else "")
            text.append(f"\nrunning: {names or 'none'}", style=_STYLE["running"])
            if queued:
                text.append(f"; {queued} queued")
        return text

    # RunListener
    def on_plan(self, tasks: int) -> None:
        self.total = tasks

    def on_start(self, node: str, task: str) -> None:
        self.running.pop(node, None)  # a retry waits in the queue again
        self.queued[node] = task

    def on_running(self, node: str) -> None:
        task = self.queued.pop(node, None)
        if task is not None:  # else it finished already (a late report)
            self.running[node] = task

    def on_finish(self, task_run: TaskRun) -> None:
        self.queued.pop(task_run.node, None)
        self.running.pop(task_run.node, None)
        self.counts[task_run.status] = self.counts.get(task_run.status, 0) + 1
        self.total = max(self.total, sum(self.counts.values()))
        if self._live is None and task_run.status != "cached":
            done = sum(self.counts.values())
            took = f" in {task_run.duration:.2f}s" if task_run.duration is not None else ""
            error = f": {task_run.error.splitlines()[0]}" if task_run.error else ""
            self.console.print(f"[{done}/{self.total}] {task_run.status} {escape(task_run.node)}{took}"
                               f"{escape(error)}", highlight=False, markup=True)
        elif task_run.status == "failed":
            self.console.print(f"[bold red]failed[/] {escape(task_run.node)}: "
                               f"{escape((task_run.error or '').splitlines()[0] if task_run.error else '')}")

    def on_output(self, node: str, line: str) -> None:
        self.console.print(f"[dim]\\[{escape(node)}][/dim] {escape(line)}", highlight=False)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def first_line(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    line = text.splitlines()[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def summary_table(run: Run, *, limit: int = 40) -> Any:
    """The task runs of a run as a rich table (failures first when there are many)."""
    from rich.table import Table

    table = Table(title=f"run {run.id[:12]} of {run.flow}: {run.status}", title_justify="left")
    for column in ("task", "status", "attempts", "duration", "artifact", "error"):
        table.add_column(column, overflow="fold")
    rows = list(run.task_runs)
    if len(rows) > limit:
        order = {"failed": 0, "cancelled": 1, "completed": 2, "skipped": 3, "cached": 4}
        rows = sorted(rows, key=lambda tr: order.get(tr.status, 5))[:limit]
    for tr in rows:
        table.add_row(tr.node, Text(tr.status, style=_STYLE.get(tr.status, "")), str(tr.attempts),
                      duration(tr.duration), (tr.artifact_id or "")[:12], first_line(tr.error))
    if len(run.task_runs) > limit:
        table.caption = f"{limit} of {len(run.task_runs)} task runs shown; " + ", ".join(
            f"{v} {k}" for k, v in run.counts().items())
    return table
