"""When a Dask worker dies: which attempts died with it, and which of them are to blame.

Dask counts, for each task, the worker deaths it was "involved in": every task the dead
worker was *processing*, whether it was running or only queued there waiting for its turn
or its inputs. After ``distributed.scheduler.allowed-failures`` + 1 deaths the task fails
with ``KilledWorker``. Under repeated worker loss that blames innocent tasks: a short task
that sat in the queues of four workers that were killed for other reasons fails as if it
had killed them.

The scheduler plugin here (:class:`LostAttempts`) does two things:

- it logs every attempt that died with its worker, as ``(key, worker, blamed)`` on the
  ``flowkit-lost-attempts`` topic (the worker cannot say it: it is dead). The event is logged
  as the task leaves ``processing``, before Dask tells the client anything about the task,
  so a client sees the lost attempts of a task before its failure;
- it decides the blame. Each flowkit attempt logs a ``start`` event as it begins (see
  :func:`flowkit._worker.on_dask`), which the plugin sees arrive on the scheduler. When a
  worker dies, the tasks known to have started there are *blamed*; if they do not fill the
  worker's threads (a task that kills its worker at once may die before its ``start`` gets
  out), the threads left over are filled with the tasks that were handed to that worker
  first: a worker runs what it was given in order, so those are the likely ones. Every
  other task it was processing is a bystander: the plugin takes that death back off Dask's
  count (``TaskState.suspicious``), so only the deaths a task may have caused count towards
  ``allowed-failures``.

Worked example, one thread per worker: worker W was given ``a``, ``b``, ``c`` in that order;
``a`` started (its event is in). W is killed: ``a`` is blamed (``suspicious`` 1), ``b`` and
``c`` are bystanders (Dask counted 1 each; the plugin puts them back to 0). Had no ``start``
come in, ``a`` would be blamed all the same, as the first handed over. All three are logged
lost and run again elsewhere. A task that kills every worker it starts on is blamed each
time and fails with ``KilledWorker`` after ``allowed-failures`` + 1 deaths, as in plain Dask.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["LOST_TOPIC", "LostAttempts"]

#: The topic the plugin logs lost attempts on: ``(dask key, worker address, blamed)``.
LOST_TOPIC = "flowkit-lost-attempts"

#: Finished runs' topics the plugin remembers, to drop again when a late event makes one anew.
FORGOTTEN = 10_000

#: The prefix of the topics flowkit's attempts report on (one per run).
RUN_TOPICS = "flowkit-"


class LostAttempts(SchedulerPlugin):
    """Scheduler plugin: report every attempt that died with its worker, and blame only the likely culprits."""

    name = "flowkit-lost-attempts"
    idempotent = True  # registering it again (another client, another run) keeps the one installed

    def __init__(self) -> None:
        self.where: dict[Any, str] = {}  # key -> the worker processing it
        self.threads: dict[str, int] = {}  # worker -> its number of threads
        self.given: dict[str, dict[Any, None]] = {}  # worker -> keys processing there, in the order handed over
        self.running: dict[str, set[Any]] = {}  # worker -> keys processing there whose attempt has started
        self.blamed: dict[str, set[Any]] = {}  # dead worker -> the keys its death is blamed on
        self.gone: dict[str, None] = {}  # topics of finished runs, oldest first (see forgotten)

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def forgotten(self, topics: Iterable[str]) -> None:
        """Finished runs' topics, dropped from the scheduler (``_dask_client.forget_topic``)."""
        gone = self.gone
        for topic in topics:
            gone[topic] = None
        while len(gone) > FORGOTTEN:
            del gone[next(iter(gone))]

    def log_event(self, topic: str, msg: Any) -> None:
        if topic in self.gone:  # a task that was still running when its run ended: its topic was made again
            broker = getattr(self.scheduler, "_broker", None)
            getattr(broker, "_topics", {}).pop(topic, None)
            return
        # ("start", node, key, worker) from flowkit's worker function; msgpack makes tuples lists.
        if (isinstance(topic, str) and topic.startswith(RUN_TOPICS) and isinstance(msg, (list, tuple))
                and len(msg) >= 4 and msg[0] == "start"):
            key, worker = msg[2], msg[3]
            if self.where.get(key) == worker:
                self.running.setdefault(worker, set()).add(key)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "processing":
            ts = self.scheduler.tasks.get(key)
            ws = ts.processing_on if ts is not None else None
            if ws is not None:
                self.where[key] = ws.address
                self.threads[ws.address] = ws.nthreads
                self.given.setdefault(ws.address, {})[key] = None
        elif start == "processing":
            worker = self.where.pop(key, None)
            if worker is None:
                return
            if worker in self.scheduler.workers:  # finished, erred or moved, on a live worker
                self.given.get(worker, {}).pop(key, None)
                running = self.running.get(worker)
                if running:
                    running.discard(key)
                return
            if finish == "memory":
                return
            # Left processing because its worker is gone: the blame of this death is decided once,
            # at its first task, from what the worker had, and kept until `remove_worker`.
            blamed_keys = self.blamed.get(worker)
            if blamed_keys is None:
                blamed_keys = self.blamed[worker] = self._blame(worker)
            blamed = key in blamed_keys
            if not blamed:
                ts = self.scheduler.tasks.get(key)
                if ts is not None and ts.suspicious > 0:
                    ts.suspicious -= 1  # a bystander: this death is not counted against it
            self.scheduler.log_event(LOST_TOPIC, (key, worker, blamed))

    def _blame(self, worker: str) -> set[Any]:
        """The keys the death of ``worker`` is blamed on: those started there, then the first handed over."""
        running = self.running.get(worker, set())
        blamed = set(running)
        free = self.threads.get(worker, 1) - len(blamed)
        for key in self.given.get(worker, {}):
            if free <= 0:
                break
            if key not in blamed:
                blamed.add(key)
                free -= 1
        return blamed

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        for table in (self.running, self.threads, self.given, self.blamed):
            table.pop(worker, None)
