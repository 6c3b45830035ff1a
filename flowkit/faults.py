"""Crash points: named places where a test can make the process signal itself.

``FLOWKIT_FAULTS`` lists ``point=SIGNAL`` pairs, comma separated, read once when
this module is imported::

    FLOWKIT_FAULTS="cache.after_temp_write=SIGKILL"        # the first time the point is reached
    FLOWKIT_FAULTS="db.before_commit=SIGTERM@3"            # the third time

At the point the process sends itself the signal (``os.kill(os.getpid(), ...)``):
``SIGKILL`` ends it on the spot, ``SIGTERM`` and ``SIGINT`` go through the
handlers a run installs (the run ends ``cancelled``). The points, in the order a
task's result reaches the store:

==========================  ==============================================================
``task.before_start``       a worker is about to call a task
``cache.after_temp_write``  an artifact's bytes are in its temporary file, not yet fsynced
``cache.after_fsync``       the temporary file is fsynced, not yet renamed into place
``cache.after_rename``      the artifact file is in place, not yet recorded
``db.before_commit``        a batch of records is written, its transaction not committed
``db.after_commit``         the batch is committed
==========================  ==============================================================

Unset, this costs nothing on the hot paths: a call site reads ``if FAULTS:
fault("name")``, one truth test of an empty dict. ``docs/reliability.md`` says
what a crash at each point may and may not leave behind, and how the fault tests
(``tests/faults/``) use them.
"""

from __future__ import annotations

import os
import signal

__all__ = ["FAULTS", "POINTS", "RUN_POINTS", "SCHEDULER_POINTS", "fault", "parse"]

#: Every crash point, in the order a task's result reaches the store.
#: The points a flow run passes.
RUN_POINTS = ("task.before_start", "cache.after_temp_write", "cache.after_fsync", "cache.after_rename",
              "db.before_commit", "db.after_commit")
#: The points the scheduler passes: a slot claimed, not marked running; marked running, its run not begun.
SCHEDULER_POINTS = ("scheduler.after_claim", "scheduler.after_launch")
POINTS = RUN_POINTS + SCHEDULER_POINTS


def parse(text: str) -> dict[str, tuple[signal.Signals, int]]:
    """``{point: (signal, nth hit)}`` from ``FLOWKIT_FAULTS`` text; a bad entry raises ``ValueError``."""
    out: dict[str, tuple[signal.Signals, int]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        point, sep, action = item.partition("=")
        name, _, nth = action.strip().partition("@")
        point = point.strip()
        if not sep or point not in POINTS:
            raise ValueError(f"FLOWKIT_FAULTS: {item!r} is not POINT=SIGNAL[@N]; the points are: {', '.join(POINTS)}")
        try:
            sig = signal.Signals[name.strip().upper()]
            count = int(nth) if nth else 1
        except (KeyError, ValueError):
            raise ValueError(f"FLOWKIT_FAULTS: {item!r}: name a signal (SIGKILL, SIGTERM, SIGINT) and, after @, "
                             f"a positive count") from None
        if count < 1:
            raise ValueError(f"FLOWKIT_FAULTS: {item!r}: the count after @ starts at 1")
        out[point] = (sig, count)
    return out


#: The configured points; empty (and so false) unless ``FLOWKIT_FAULTS`` is set.
FAULTS = parse(os.environ.get("FLOWKIT_FAULTS", ""))
_hits: dict[str, int] = {}


def fault(point: str) -> None:
    """Reached ``point``: signal this process if ``FLOWKIT_FAULTS`` says so for this hit."""
    planned = FAULTS.get(point)
    if planned is None:
        return
    hits = _hits[point] = _hits.get(point, 0) + 1
    if hits == planned[1]:
        os.kill(os.getpid(), planned[0])
