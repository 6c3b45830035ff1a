"""Whether a write has the interpreter to itself: the threads parked on flowkit's background writer.

Python's :mod:`sqlite3` takes the GIL back after each row it writes. Beside a thread that
runs Python that costs up to a switch interval (5 ms) a row, so the store's connection
sends many rows in one statement (:mod:`flowkit.store.sqlite_bulk`), which costs more CPU
per row. When no other thread wants the GIL, row by row is the cheaper of the two: the
run's end, when the run's thread waits for the writer to commit the last rows (most of a
cached rerun's rows), or a process with one thread.

A thread that waits on a :class:`~flowkit.store.writer.BatchWriter` (its idle thread, or a
thread waiting for it to commit) marks itself :func:`parked`; :func:`alone` is true when
every other Python thread is. Threads that wait elsewhere (a Dask client's event loop, a
pool's idle workers) count as busy: the rows then go in one statement, which is safe
beside anything.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["alone", "parked"]

_parked = 0
_lock = threading.Lock()


@contextlib.contextmanager
def parked() -> Iterator[None]:
    """Mark the calling thread as wanting no GIL until the block ends (it waits on a lock or a thread)."""
    global _parked
    with _lock:
        _parked += 1
    try:
        yield
    finally:
        with _lock:
            _parked -= 1


def alone() -> bool:
    """No thread but the caller may want the GIL now: every other Python thread is :func:`parked`."""
    return threading.active_count() - _parked <= 1
