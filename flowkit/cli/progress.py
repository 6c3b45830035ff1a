"""Showing a run as it goes: a live panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from flowkit import events
from flowkit.records import Run, TaskRun
from flowkit.secrets import mask

__all__ = ["Progress", "duration", "first_line", "summary_table", "timing"]

_STYLE = {"completed": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow",
          "cancelled": "magenta", "running": "blue", "crashed": "red"}


class Progress:
    """A :class:`~flowkit.events.RunListener` for the terminal.

    Args:
        console: where to print.
        live: a live panel (a terminal), else one plain line per finished task.
        known_total: the planned task count is final (no map over a run-time list,
            whose items are known only when it runs): plain lines read ``[k/N]``,
            else ``[k]``.
    """

    def __init__(self, console: Console, *, live: bool, known_total: bool = True) -> None:
        self.known_total = known_total
        self.console = console
        self.total = 0
        self.counts: dict[str, int] = {}
        self.queued: dict[str, str] = {}  # node -> task: handed to the executor, not started yet
        self.running: dict[str, str] = {}  # node -> task: started, not finished
        self.started = time.monotonic()
        self.printed = 0  # plain lines printed so far: their k in [k/N]
        self._early: list[TaskRun] | None = []  # finished before the plan's total was known
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

    def on_event(self, event: Any) -> None:
        """A :class:`~flowkit.RunListener`: show what the run's events say."""
        kind = type(event)
        if kind is events.TaskFinished:
            self.on_finish(event.task_run)
        elif kind is events.TasksCached:
            for task_run in event.task_runs:
                self.on_finish(task_run)
        elif kind is events.TaskSubmitted:
            self.on_start(event.node, event.task)
        elif kind is events.TaskRunning:
            self.on_running(event.node)
        elif kind is events.TaskOutput:
            self.on_output(event.node, event.line)
        elif kind is events.RunPlanned:
            self.on_plan(event.tasks)

    def on_plan(self, tasks: int) -> None:
        self.total = tasks
        early, self._early = self._early, None
        for task_run in early or ():  # hits recorded while planning: numbered now that the total is known
            self._line(task_run)

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
        if self._live is None:
            if self._early is not None:
                self._early.append(task_run)
            else:
                self._line(task_run)
        elif task_run.status == "failed":
            self.console.print(f"[bold red]failed[/] {escape(task_run.node)}: "
                               f"{escape(first_line(task_run.error, 10**6))}")

    def _line(self, task_run: TaskRun) -> None:
        """One plain line per finished task, cached ones too: ``[k/N] completed node in 1.20s``."""
        self.printed += 1
        self.total = max(self.total, self.printed)
        number = f"{self.printed}/{self.total}" if self.known_total else str(self.printed)
        line = f"[{number}] {task_run.status} {task_run.node}{timing(task_run)}"
        if task_run.error:
            line += f": {first_line(task_run.error, 10**6)}"
        self.console.print(Text(line), soft_wrap=True)

    def on_output(self, node: str, line: str) -> None:
        self.console.print(f"[dim]\\[{escape(node)}][/dim] {escape(line)}", highlight=False)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def timing(task_run: TaskRun) -> str:
    """`` in 1.20s`` (the attempts' time), with retry waits apart; nothing for a task that did not compute."""
    if task_run.run_time is None:
        return ""
    text = f" in {duration(task_run.run_time)}"
    if task_run.attempts > 1:
        text += f" over {task_run.attempts} attempts"
    if task_run.waited:
        text += f", {duration(task_run.waited)} waiting to retry"
    return text


def first_line(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    line = mask(text.splitlines()[0]) or ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _took(tr: TaskRun, computed_by: dict[str, TaskRun]) -> str:
    """The duration cell: the attempts' time; for a cached task, that of the run that computed it."""
    if tr.status == "cached":
        origin = computed_by.get(tr.cache_key or "")
        took = origin.run_time if origin is not None else None
        return f"{duration(took)} when computed" if took is not None else ""
    return duration(tr.run_time)


def summary_table(run: Run, *, limit: int = 40, computed_by: dict[str, TaskRun] | None = None) -> Any:
    """The task runs of a run as a rich table (failures first when there are many).

    ``duration`` is the time the attempts took (retry waits in their own column);
    a cached task shows what computing it took, when ``computed_by`` (from
    :meth:`flowkit.Store.computed_by`) knows, and nothing otherwise.
    """
    from rich.table import Table

    computed_by = computed_by or {}
    rows = list(run.task_runs)
    waits = any(tr.waited for tr in rows)
    table = Table()
    columns = ("task", "status", "attempts", "duration") + (("retry waits",) if waits else ()) + ("artifact", "error")
    for column in columns:
        table.add_column(column, overflow="fold")
    if len(rows) > limit:
        order = {"failed": 0, "cancelled": 1, "completed": 2, "skipped": 3, "cached": 4}
        rows = sorted(rows, key=lambda tr: order.get(tr.status, 5))[:limit]
    for tr in rows:
        cells = [tr.node, Text(tr.status, style=_STYLE.get(tr.status, "")), str(tr.attempts), _took(tr, computed_by)]
        if waits:
            cells.append(duration(tr.waited) if tr.waited else "")
        table.add_row(*cells, (tr.artifact_id or "")[:12], first_line(tr.error))
    if len(run.task_runs) > limit:
        table.caption = f"{limit} of {len(run.task_runs)} task runs shown; " + ", ".join(
            f"{v} {k}" for k, v in run.counts().items())
    return table
