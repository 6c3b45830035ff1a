"""The garbage collector during a run: what was there before it began is left alone.

CPython's cyclic collector looks at every object it tracks in a full collection,
and it makes one each time the objects that survived the last one have grown by
a quarter. A run makes many objects (its records, the rows on their way to the
store), so it triggers full collections, and each walks the whole process: the
traced graph (ten objects or so a task) and whatever the process held before,
a notebook's data frames and imported libraries. At 100,000 tasks that was a
seventh of a cold run's time, and grew with the graph.

:func:`frozen` moves what exists as the run begins into the collector's
permanent generation (:func:`gc.freeze`) and gives it back when the run ends
(:func:`gc.unfreeze`): the collections during the run look only at what the run
made. What the run makes and drops is collected as before; cyclic garbage that
was already there waits for the run's end, when the next full collection finds
it. Both calls move lists, whatever their length.

A process that freezes objects itself is left to do so: a run that begins with
objects frozen (:func:`gc.get_freeze_count` above zero) freezes nothing. (What a
task freezes while a run goes on is given back with the rest at the run's end:
counting the frozen objects walks them all, too slow to do at each run's end.)
Runs at once in several threads, or a run inside a task, share the first run's
freeze; the last to end gives it back.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["frozen"]

_lock = threading.Lock()
_runs = 0  # runs going on in this process
_froze = False  # the runs going on share a freeze of their own


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """While the block runs, the collector leaves alone the objects that existed when it began."""
    global _runs, _froze
    with _lock:
        if _runs == 0 and gc.isenabled() and gc.get_freeze_count() == 0:  # (quick when nothing is frozen)
            gc.freeze()
            _froze = True
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _froze:
                gc.unfreeze()
                _froze = False
