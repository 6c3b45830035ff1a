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
it. On CPython's usual build both calls move lists, whatever their length (the
free-threaded build walks the objects).

A process that freezes objects itself is left to do so: a run that begins with
objects frozen (:func:`gc.get_freeze_count` above zero, which counts them one by
one: about a millisecond a run for 100,000 of them) freezes nothing. What a task
freezes while a run goes on is given back with the rest at the run's end.
Runs at once in several threads, or a run inside a task, share the first run's
freeze; the last to end gives it back. So in a process whose runs always overlap
(a scheduler whose runs follow one another without a gap, a run left going in an
abandoned thread) the first freeze stays: what it froze and later dropped is still
freed when nothing refers to it, but a reference cycle among those objects is kept
until then.
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
    counted = False
    try:
        with _lock:
            _runs += 1
            counted = True  # (no call in between, so no Ctrl-C either: the count stays right)
            if _runs == 1 and gc.isenabled() and gc.get_freeze_count() == 0:  # (quick when nothing is frozen)
                _froze = True  # first: interrupted before the freeze, the end unfreezes nothing of anyone's
                gc.freeze()
        yield
    finally:
        if counted:
            with _lock:
                _runs -= 1
                if _runs == 0 and _froze:
                    _froze = False
                    gc.unfreeze()
