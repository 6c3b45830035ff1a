"""A background writer: a run's batches of records committed by a thread of their own.

:class:`BatchWriter` takes :class:`~flowkit.store.protocols.Batch`\\ es from the
thread that runs a flow (:meth:`~BatchWriter.submit` returns at once) and
writes them through the metadata store's :meth:`~MetadataStore.flush` on a
thread with its own connection (both backends keep one connection per thread),
so the run goes on while SQLite or PostgreSQL commits: many rows go in one statement
(:mod:`flowkit.store.sqlite_bulk`), during which the database works without the GIL,
and the run makes way for the writer between tasks (:meth:`~BatchWriter.make_way`). Batches that queue while
a write is under way are merged and go in the next transaction, so a fast run
makes few large transactions and a slow one commits each result soon after it
is made.

What the records promise is unchanged: a batch is written whole or not at all;
a cache entry is written only after its value was stored (workers store values
before they report, and the writer receives their records after that); the
run's end (:meth:`~BatchWriter.drain`) waits for every batch submitted before
it, and the writer's thread commits the run's last rows too. Its connection
checkpoints SQLite's log in larger pieces (:meth:`~MetadataStore.defer_checkpoints`),
and the last checkpoint is made as the thread ends, after the run has been told its
rows are committed (they are in the log, which survives the process). A crash loses
at most the batches not yet committed: their tasks run again when the flow is run again.

A write that fails (a full disk) stops the writer: the batches it held are kept
(:meth:`~BatchWriter.take_failure`) and the error is raised on the run's thread
at its next submit or drain.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from flowkit.store.parked import parked
from flowkit.store.protocols import Batch

__all__ = ["BatchWriter", "merge"]

#: Seconds the thread waits for more work before it closes its connection and ends.
IDLE_SECONDS = 5.0

def merge(batches: list[Batch]) -> Batch:
    """One batch with the rows of ``batches`` in order (the first one, extended); the latest end and heartbeat."""
    into = batches[0]
    for batch in batches[1:]:
        into.extend(batch)
    return into


class BatchWriter:
    """Writes the batches of one metadata store on a background thread (see the module docstring)."""

    def __init__(self, db: Any, name: str = "flowkit-recorder") -> None:
        self.db = db
        self.name = name
        self._cond = threading.Condition()
        self._pending: list[Batch] = []
        self._writing: list[Batch] = []  # the batches of the write under way, or of the one that failed
        self._busy = False
        self._thread: threading.Thread | None = None
        self._started: threading.Thread | None = None  # the last thread started (it may be ending)
        self._error: BaseException | None = None
        self._closing = False

    @property
    def idle(self) -> bool:
        """Nothing waits to be written and nothing is being written."""
        return not self._pending and not self._busy

    def make_way(self) -> None:
        """While a batch is being written, let the writer's thread take the GIL for a moment.

        The database drivers let go of the GIL while the database works and take it back
        after each step of a statement; a thread that runs Python all the time (the run's
        own) hands it over only every switch interval (5 ms), so a write of a few statements
        would wait tens of milliseconds for it, its batch growing meanwhile. The run calls this
        between tasks: a write then waits for the GIL as long as a few tasks take, and records
        are committed within milliseconds of being made (a crash loses fewer of them). A batch
        just handed over counts too: the writer needs the GIL to wake and take it.
        """
        if self._busy or self._pending:
            time.sleep(0)  # gives up the GIL (for about 60 µs on Linux: the kernel's timer slack)

    @property
    def failed(self) -> bool:
        """A write failed and its error was not taken yet."""
        return self._error is not None

    def submit(self, batch: Batch) -> None:
        """Queue ``batch`` to be written; returns at once. Raises the error of a write that failed."""
        with self._cond:
            self._raise()
            self._pending.append(batch)
            if self._thread is None:
                self._thread = self._started = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def drain(self) -> None:
        """Wait until every batch submitted so far is committed; raise the error of a write that failed."""
        with self._cond:
            self._wait_written()
            self._raise()

    def close(self) -> None:
        """Write what is queued, then let the thread end (a later submit starts anew).

        Returns once the queue is written; the thread then checkpoints, closes its
        connection and ends by itself, so a run's end does not wait for the checkpoint.
        """
        with self._cond:
            if self._thread is None:
                return
            self._closing = True
            self._cond.notify_all()
            self._wait_written()

    def _wait_written(self) -> None:
        """Under the lock: wait until nothing is queued or being written, or a write failed."""
        while (self._pending or self._busy) and self._error is None:
            with parked():  # the writer may write the last rows one by one (flowkit.store.parked)
                self._cond.wait()

    def holds(self, batch: Batch) -> bool:
        """``batch`` is queued, being written, or part of the write that failed."""
        with self._cond:
            return any(b is batch for b in self._pending) or any(b is batch for b in self._writing)

    @property
    def running(self) -> bool:
        """The thread is alive and would take a batch at once."""
        return self._thread is not None and not self._closing

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after :meth:`close`): its checkpoint made, its connection closed."""
        thread = self._started
        if thread is not None:
            with parked():
                thread.join(timeout)

    def take_failure(self) -> tuple[BaseException | None, Batch | None]:
        """The error of a failed write and the rows it could not write (with those queued after), once."""
        with self._cond:
            error = self._error
            # The failed write's rows are all in its first batch (merge), those queued since after them.
            failed = merge([self._writing[0], *self._pending]) if error is not None and self._writing else None
            self._error, self._pending, self._writing = None, [], []
            return error, failed

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        cond = self._cond
        try:
            with contextlib.suppress(Exception):  # fewer, larger checkpoints; the last one after the run
                self.db.defer_checkpoints()
            while True:
                with cond:
                    while not self._pending or self._error is not None:
                        if self._closing:  # (what was queued when it closed is written first)
                            self._thread, self._closing = None, False  # a later submit starts anew
                            return
                        with parked():  # an idle writer wants no GIL (flowkit.store.parked)
                            woken = cond.wait(IDLE_SECONDS)
                        if not woken and (not self._pending or self._error is not None):
                            self._thread, self._closing = None, False  # idle: a later submit starts anew
                            return
                    batches, self._pending = self._pending, []
                    self._writing = batches
                    self._busy = True
                error = None
                try:
                    self.db.flush(merge(batches))
                except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
                    error = exc
                with cond:
                    if error is None:
                        self._writing = []
                    else:  # its rows stay in self._writing, for take_failure
                        self._error = error
                    self._busy = False
                    cond.notify_all()
        finally:
            with contextlib.suppress(Exception), parked():  # in the database, without the GIL, until it ends
                self.db.checkpoint()  # what its commits left, once nothing waits for them
            with contextlib.suppress(Exception):
                self.db.close()  # this thread's own connection
