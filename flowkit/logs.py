"""Task output: what a task prints or logs, captured per task run.

While a task runs, ``print`` output (stdout and stderr) and ``logging``
records are appended to that task run's buffer, and, in-process, passed line
by line to a *sink* (the CLI streams them to the terminal, prefixed with the
task). Outside a task, output goes where it always went. The buffer is stored
with the task run (``flowkit show RUN --logs TASK``).

Capturing is scoped: :func:`capturing` installs the stdout/stderr proxies and
the logging handler for the duration of a run and removes them afterwards.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from flowkit import secrets as _secrets

__all__ = ["Capture", "capturing", "current_capture", "task_output"]

#: At most this much output is kept per task run (the end of it, when longer).
MAX_LOG = 256 * 1024

Sink = Callable[[str, str], None]  # (node id, line) -> None


class Capture:
    """The output of one task run."""

    __slots__ = ("node", "sink", "buffer", "_partial")

    def __init__(self, node: str, sink: Sink | None) -> None:
        self.node = node
        self.sink = sink
        self.buffer: io.StringIO | None = None  # made at the first write: most tasks print nothing
        self._partial = ""

    def write(self, text: str) -> None:
        if self.buffer is None:
            self.buffer = io.StringIO()
        self.buffer.write(text)
        if self.sink is not None:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                self._emit(line)

    def _emit(self, line: str) -> None:
        if _secrets._ordered:  # a secret's value never reaches the terminal
            line = _secrets.mask(line)  # type: ignore[assignment]
        token = _CURRENT.set(None)  # what the sink prints goes to the real stream, not back here
        try:
            self.sink(self.node, line)  # type: ignore[misc]
        finally:
            _CURRENT.reset(token)

    def text(self) -> str | None:
        if self.sink is not None and self._partial:
            self._emit(self._partial)
            self._partial = ""
        if self.buffer is None:
            return None
        value = self.buffer.getvalue()
        if not value:
            return None
        if _secrets._ordered:  # nor the store
            value = _secrets.mask(value)  # type: ignore[assignment]
        return value if len(value) <= MAX_LOG else "[... earlier output dropped ...]\n" + value[-MAX_LOG:]


_CURRENT: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("flowkit_capture", default=None)


def current_capture() -> Capture | None:
    return _CURRENT.get()


class _StreamProxy:
    """Stands in for sys.stdout / sys.stderr: a task's writes go to its capture."""

    def __init__(self, original: TextIO) -> None:
        self._original = original

    def write(self, text: str) -> int:
        capture = _CURRENT.get()
        if capture is None:
            return self._original.write(text)
        capture.write(text)
        return len(text)

    def flush(self) -> None:
        if _CURRENT.get() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _CaptureHandler(logging.Handler):
    """Routes log records emitted inside a task to its capture."""

    def emit(self, record: logging.LogRecord) -> None:
        capture = _CURRENT.get()
        if capture is not None and not record.name.startswith(("flowkit", "distributed")):
            try:
                capture.write(self.format(record) + "\n")
            except Exception:  # noqa: BLE001 - logging must never break a task
                self.handleError(record)
        elif _saved.get("unconfigured") and logging.lastResort is not None:
            # Logging was not configured: keep Python's default of printing warnings to stderr.
            if record.levelno >= logging.lastResort.level:
                logging.lastResort.handle(record)


_lock = threading.Lock()
_installed = 0
_saved: dict[str, Any] = {}
_HANDLER = _CaptureHandler()
_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


@contextlib.contextmanager
def capturing() -> Iterator[None]:
    """Install the output proxies and the logging handler while a run is going on."""
    global _installed
    with _lock:
        if _installed == 0:
            _saved["stdout"], _saved["stderr"] = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = _StreamProxy(sys.stdout), _StreamProxy(sys.stderr)  # type: ignore[assignment]
            root = logging.getLogger()
            _saved["level"] = root.level
            # Unconfigured logging drops INFO records before any handler sees them: let tasks'
            # INFO logs through to the capture, and print the rest as Python would have.
            _saved["unconfigured"] = not root.handlers
            root.addHandler(_HANDLER)
            if _saved["unconfigured"] and root.level > logging.INFO:
                root.setLevel(logging.INFO)
        _installed += 1
    try:
        yield
    finally:
        with _lock:
            _installed -= 1
            if _installed == 0:
                if isinstance(sys.stdout, _StreamProxy):
                    sys.stdout = _saved["stdout"]
                if isinstance(sys.stderr, _StreamProxy):
                    sys.stderr = _saved["stderr"]
                root = logging.getLogger()
                root.removeHandler(_HANDLER)
                root.setLevel(_saved["level"])


def task_output(capture: Capture, fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """Call ``fn(*args)`` with its output captured into ``capture``; return (result, captured text).

    ``capture`` is current while ``fn`` runs (a :class:`~flowkit.context.TaskContext`, which
    is a capture too, when a worker runs a task).
    """
    token = _CURRENT.set(capture)
    try:
        result = fn(*args)
    except BaseException as exc:
        _CURRENT.reset(token)
        text = capture.text()
        if text:
            exc.__flowkit_logs__ = text  # type: ignore[attr-defined]
        raise
    _CURRENT.reset(token)
    return result, capture.text()
