"""The in-process executor: sequential by default, or a thread pool."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from flowkit.clock import Clock
from flowkit.errors import DefinitionError
from flowkit.executors import Completion, completed

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Run tasks in this process.

    Args:
        max_workers: ``None`` (the default) runs one task at a time in the
            calling thread, in a deterministic order; an int ``N >= 1`` runs
            independent tasks on a pool of ``N`` threads (good for I/O-bound
            tasks and for libraries that release the GIL).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                        or max_workers < 1):
            raise DefinitionError(f"LocalExecutor(max_workers=...) must be None or an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers

    def __repr__(self) -> str:
        return f"LocalExecutor(max_workers={self.max_workers!r})"

    def __enter__(self) -> LocalExecutor:
        return self  # nothing to start; here so every executor can be used with `with`

    def __exit__(self, *exc: object) -> None:
        return None

    @contextmanager
    def session(self, clock: Clock) -> Iterator[_SequentialSession | _ThreadSession]:
        if self.max_workers is None:
            yield _SequentialSession(clock)
            return
        pool = _Pool(self.max_workers, "flowkit")
        s = _ThreadSession(clock, pool)
        try:
            yield s
        finally:
            pool.shutdown(cancel=s.cancelled)


def _call(clock: Clock, key: str, fn: Callable[..., Any], args: tuple[Any, ...], deps: Sequence[Any],
          worker: str | None) -> Completion:
    started = clock.time()
    try:
        value = fn(*args, *deps)
    except BaseException as exc:  # noqa: BLE001 - the engine decides (KeyboardInterrupt cancels the run)
        return Completion(key, None, exc, started, clock.time(), worker)
    return completed(key, value, started, clock.time(), worker)


class _SequentialSession:
    """Runs each call as it is submitted, in the calling thread."""

    eager = False
    in_process = True  # task output can be streamed live

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._done: list[Completion] = []
        self._worker = threading.current_thread().name

    def submit(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], deps: Sequence[Any],
               **hints: Any) -> None:
        on_running = hints.get("on_running")
        if on_running is not None:
            on_running(key)
        self._done.append(_call(self._clock, key, fn, args, deps, self._worker))

    def wait(self, timeout: float | None = None) -> list[Completion]:
        done, self._done = self._done, []
        return done

    def fetch(self, handles: Sequence[Any]) -> list[Any]:
        return list(handles)

    def cancel(self, keys: Sequence[str] | None = None) -> None:
        if keys is None:
            self._done = []


class _Pool:
    """``n`` daemon threads running the calls submitted to them, in order.

    Daemon threads, unlike a ``ThreadPoolExecutor``'s: after Ctrl-C cancels a run, the calls
    still running are abandoned (Python cannot stop a thread), and the process may exit at
    once instead of waiting at exit for them to end.
    """

    def __init__(self, n: int, prefix: str) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"{prefix}_{i}", daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            item[0](*item[1])

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._work.put((fn, args))

    def shutdown(self, cancel: bool) -> None:
        """Stop the threads: after what was submitted (joined), or, with ``cancel``, dropping what has not begun."""
        if cancel:
            try:
                while True:
                    self._work.get_nowait()
            except queue.Empty:
                pass
        for _ in self._threads:
            self._work.put(None)
        if not cancel:
            for t in self._threads:
                t.join()


class _Began(NamedTuple):
    """A pool thread began a call: ``wait`` passes it on to the submission's ``on_running``."""

    key: str
    on_running: Callable[[str], None]


class _ThreadSession:
    """Runs calls on a thread pool; completions (and starts) arrive through a queue."""

    eager = False
    in_process = True

    def __init__(self, clock: Clock, pool: _Pool) -> None:
        self._clock = clock
        self._pool = pool
        self._queue: queue.SimpleQueue[Completion | _Began] = queue.SimpleQueue()
        self.cancelled = False

    def _run(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], deps: list[Any],
             on_running: Callable[[str], None] | None) -> None:
        if on_running is not None:  # reported by `wait`, so the callback runs in the engine's thread
            self._queue.put(_Began(key, on_running))
        done = _call(self._clock, key, fn, args, deps, threading.current_thread().name)
        deps.clear()  # once the engine sees the completion it may release these values: hold none
        self._queue.put(done)

    def submit(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], deps: Sequence[Any],
               **hints: Any) -> None:
        self._pool.submit(self._run, key, fn, args, list(deps), hints.get("on_running"))

    def wait(self, timeout: float | None = None) -> list[Completion]:
        deadline = None if timeout is None else time.monotonic() + timeout
        done: list[Completion] = []
        while not done:
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            try:
                # Short waits keep the main thread responsive to Ctrl-C.
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                if left <= 0:
                    return done
                continue
            while True:
                if type(item) is _Began:
                    item.on_running(item.key)
                else:
                    done.append(item)  # type: ignore[arg-type]
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
        return done

    def fetch(self, handles: Sequence[Any]) -> list[Any]:
        return list(handles)

    def cancel(self, keys: Sequence[str] | None = None) -> None:
        if keys is None:  # single submissions cannot be taken back from the pool: they run
            self.cancelled = True
