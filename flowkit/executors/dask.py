"""Run tasks on Dask: a local cluster started for you, or a cluster by address.

Data stays on the workers: each node is submitted as soon as the engine knows
it, with its upstream *futures* as arguments, so values move worker to worker.
The client receives only small records, as ``distributed`` events: the worker
function (:func:`flowkit._worker.on_dask`) publishes, when an attempt ends,
its timings and the record of the artifact it stored; a scheduler plugin
(:class:`LostAttempts`) publishes each attempt that died with its worker. A
future's completion (or error) and its ``done`` event together make one
:class:`~flowkit.executors.Completion`.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import distributed
from distributed import Client, KilledWorker, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from flowkit._worker import Output, on_dask, unpack_report
from flowkit.clock import Clock
from flowkit.errors import FlowkitError
from flowkit.executors import Completion
from flowkit.hashing import user_modules

__all__ = ["DaskExecutor"]

log = logging.getLogger("flowkit")


class DaskConnectionError(FlowkitError, ConnectionError):
    """The Dask scheduler cannot be reached, or was lost during a run."""


class DaskExecutor:
    """Run tasks on a Dask cluster.

    Args:
        address: a scheduler address such as ``"tcp://10.0.0.5:8786"``; ``None``
            starts a ``distributed.LocalCluster`` on 127.0.0.1 for each run (or
            once, when the executor is used as a context manager).
        n_workers, threads_per_worker, processes: for the local cluster.
        client: an existing ``distributed.Client`` to use (it is not closed).
        **cluster_kwargs: passed on to ``LocalCluster``.

    Use it as a context manager so several runs share one cluster::

        with fk.DaskExecutor(n_workers=4) as dask:
            flow.with_options(executor=dask).run()
            other.with_options(executor=dask).run()
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 threads_per_worker: int | None = None, processes: bool = True, client: Client | None = None,
                 **cluster_kwargs: Any) -> None:
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.processes = processes
        self.cluster_kwargs = cluster_kwargs
        self._given = client
        self._client: Client | None = client
        self._cluster: LocalCluster | None = None
        self._depth = 0

    def __repr__(self) -> str:
        where = self.address or ("client" if self._given else "local cluster")
        return f"DaskExecutor({where})"

    @property
    def client(self) -> Client | None:
        """The client while the executor is open (inside ``with`` or a run)."""
        return self._client

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, when the cluster serves one."""
        try:
            return self._client.dashboard_link if self._client is not None else None
        except Exception:  # noqa: BLE001 - no dashboard (bokeh missing)
            return None

    def _open(self) -> Client:
        if self._client is not None:
            return self._client
        if self.address is not None:
            try:
                self._client = Client(self.address, timeout=self.cluster_kwargs.get("timeout", 10),
                                      set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise DaskConnectionError(
                    f"cannot reach the Dask scheduler at {self.address}: {exc}. Check the address and that "
                    f"`dask scheduler` is running there."
                ) from None
            return self._client
        kwargs = {"dashboard_address": ":0", **self.cluster_kwargs}
        if self.processes:
            kwargs.setdefault("host", "127.0.0.1")  # threads-only clusters talk in-process instead
        self._cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=self.threads_per_worker,
                                     processes=self.processes, **kwargs)
        self._client = Client(self._cluster, set_as_default=False)
        return self._client

    def _close(self) -> None:
        if self._client is not None and self._client is not self._given:
            self._client.close()
        self._client = self._given
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskExecutor:
        if self._depth == 0:
            self._open()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._close()

    @contextmanager
    def session(self, clock: Clock) -> Iterator[_DaskSession]:
        with self:
            session = _DaskSession(self._open(), clock)
            try:
                yield session
            finally:
                session.close()


_LOST_TOPIC = "flowkit-lost-attempts"


class LostAttempts(SchedulerPlugin):
    """Scheduler plugin: report every attempt that died with its worker.

    The worker cannot report it itself (it was killed), so the scheduler does:
    when a task leaves ``processing`` because its worker is gone, it logs
    ``(key, worker address)`` on the ``flowkit-lost-attempts`` topic.
    """

    name = "flowkit-lost-attempts"
    idempotent = True  # registering it again (another client, another run) keeps the one installed

    def __init__(self) -> None:
        self.where: dict[Any, str] = {}

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "processing":
            ts = self.scheduler.tasks.get(key)
            if ts is not None and ts.processing_on is not None:
                self.where[key] = ts.processing_on.address
        elif start == "processing":
            worker = self.where.pop(key, None)
            if worker is not None and finish != "memory" and worker not in self.scheduler.workers:
                self.scheduler.log_event(_LOST_TOPIC, (key, worker))


class _ClientState:
    """What flowkit keeps per client: the lost-attempt subscription and which code it has shipped.

    Held in a ``WeakKeyDictionary`` keyed by the client, so it goes with the
    client, and a new client (a new cluster) subscribes and ships afresh.
    """

    def __init__(self, client: Client) -> None:
        self.sessions: dict[str, _DaskSession] = {}  # dask key -> the session that submitted it
        self.modules: set[str] = set()  # user modules registered to pickle by value
        self.fns: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()  # task code already looked at
        client.register_plugin(LostAttempts(), name=LostAttempts.name)
        client.subscribe_topic(_LOST_TOPIC, self._on_event)

    def _on_event(self, event: tuple[float, Any]) -> None:
        key, worker = event[1]
        session = self.sessions.get(key)
        if session is not None:
            session._queue.put(("lost", key, worker))

    def ship_by_value(self, fn: Callable[..., Any]) -> None:
        """Let workers run user code that is not installed on them (a script, a notebook, a local module).

        cloudpickle pickles ``__main__`` by value already; this does the same for
        the user modules a task's code comes from or uses, so a remote cluster
        needs only flowkit and the libraries, not the user's files.
        """
        import sys

        import cloudpickle

        try:
            if fn in self.fns:
                return
            self.fns.add(fn)
        except TypeError:  # not weakly referenceable: looked at again next time, which is only slower
            pass
        for name in user_modules(fn):
            if name in self.modules or name == "__main__" or name not in sys.modules:
                continue
            self.modules.add(name)
            module = sys.modules[name]
            cloudpickle.register_pickle_by_value(module)
            try:
                cloudpickle.dumps(fn)
            except Exception as exc:  # noqa: BLE001 - e.g. a global lock: fall back to importing it by name
                cloudpickle.unregister_pickle_by_value(module)
                log.info("flowkit: module %r cannot be shipped by value (%s); workers must be able to import it",
                         name, exc)


_CLIENTS: weakref.WeakKeyDictionary[Client, _ClientState] = weakref.WeakKeyDictionary()


def _client_state(client: Client) -> _ClientState:
    state = _CLIENTS.get(client)
    if state is None:
        state = _CLIENTS[client] = _ClientState(client)
    return state


def _forget_topic(topic: str, dask_scheduler: Any = None) -> None:
    """Runs on the scheduler: drop the events of a finished run's topic.

    The scheduler keeps every topic and its recent events for its lifetime, and
    distributed has no public call that drops one (``Client.unsubscribe_topic``
    only stops the delivery), so on a shared cluster each run would leave its
    topic behind. This is the one place that reaches into the scheduler's
    private event broker; on a version without it, the events stay (memory,
    not correctness).
    """
    broker = getattr(dask_scheduler, "_broker", None)
    if broker is None:
        return
    broker.truncate(topic)
    getattr(broker, "_topics", {}).pop(topic, None)


def _label(name: str | None, tags: Sequence[str]) -> str:
    """The key prefix the dashboard groups by: the task name, with its tags."""
    label = name or "flowkit"
    return f"{label}({','.join(tags)})" if tags else label


class _DaskSession:
    """One run on a Dask client: submit with futures, complete from futures + events."""

    eager = True  # a submission's future is a handle at once: dependents can be handed over early
    in_process = False

    def __init__(self, client: Client, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self.topic = f"flowkit-{uuid.uuid4().hex}"
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._futures: dict[str, distributed.Future] = {}  # node -> its running attempt's future
        # Pairing is by Dask key, so an event of an earlier attempt never completes a later one.
        self._done: dict[str, distributed.Future] = {}  # finished futures waiting for their event
        self._events: dict[str, tuple[Any, ...]] = {}  # "done" events waiting for their future
        self.starts: dict[str, list[str]] = {}  # node -> workers whose attempt of it died with them
        self._resources_seen: set[tuple[tuple[str, float], ...]] = set()
        self._client_state = _client_state(client)
        self._node_of: dict[str, str] = {}  # dask key -> node
        self._on_running: dict[str, Callable[[str], None]] = {}  # dask key -> who wants its "start" event
        client.subscribe_topic(self.topic, self._on_event)

    def _on_event(self, event: tuple[float, Any]) -> None:
        self._queue.put(("event", event[1]))

    def _on_future(self, node: str, future: distributed.Future) -> None:
        self._queue.put(("future", node, future))

    def _check_resources(self, name: str | None, resources: dict[str, float]) -> str | None:
        wanted = tuple(sorted(resources.items()))
        if wanted in self._resources_seen:
            return None
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {}).values()
        if any(all(w.get("resources", {}).get(k, 0) >= v for k, v in wanted) for w in workers):
            self._resources_seen.add(wanted)
            return None
        return (f"task {name!r} needs resources {dict(wanted)}, but no worker of the cluster offers them; start "
                f"workers with e.g. `dask worker ... --resources \"GPU=1\"`")

    def submit(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], deps: Sequence[Any], *,
               name: str | None = None, tags: Sequence[str] = (), resources: dict[str, float] | None = None,
               code: Callable[..., Any] | None = None,
               on_running: Callable[[str], None] | None = None) -> distributed.Future | None:
        if code is not None:
            self._client_state.ship_by_value(code)
        self.starts[key] = []
        if resources:
            problem = self._check_resources(name, resources)
            if problem is not None:
                now = self.clock.time()
                self._queue.put(("failed", Completion(key, None, RuntimeError(problem), now, now, None)))
                return None
        dask_key = f"{_label(name, tags)}-{uuid.uuid4().hex}"
        self._node_of[dask_key] = key
        self._client_state.sessions[dask_key] = self
        if on_running is not None:
            self._on_running[dask_key] = on_running
        future = self.client.submit(on_dask, self.topic, key, fn, args, *deps, key=dask_key, pure=False,
                                    resources=resources or None, report_start=on_running is not None)
        self._futures[key] = future
        future.add_done_callback(lambda f, node=key: self._on_future(node, f))
        return future

    def _completion(self, node: str, future: distributed.Future) -> Completion | None:
        """A Completion once both the future and (for a success) its event are in."""
        if future.status == "finished":
            event = self._events.pop(future.key, None)
            if event is None:
                self._done[future.key] = future
                return None
            _, _, _, worker, started, ended, report = event
            info, logs, extras = unpack_report(report)
            self._futures.pop(node, None)
            return Completion(node, future, None, started, ended, worker, info, tuple(self.starts.get(node, ())),
                              logs, extras)
        self._futures.pop(node, None)
        try:
            error = future.exception(timeout=30)
        except Exception as exc:  # noqa: BLE001 - cancelled, or the scheduler is gone
            error = exc
        if error is None or future.status == "cancelled":
            error = DaskConnectionError(f"the Dask scheduler lost the task (status {future.status!r}); the "
                                        f"connection to {self.client.scheduler.address} may be gone")
        lost = self.starts.get(node, [])
        now = self.clock.time()
        if isinstance(error, KilledWorker):
            last = getattr(error, "last_worker", None)
            last_address = getattr(last, "address", None) or (lost[-1] if lost else "an unknown worker")
            error = RuntimeError(
                f"task {node!r} kept killing Dask workers: {len(lost) or 'several'} attempt(s) died with their "
                f"worker, the last on {last_address}")
            # The last lost attempt is this failure itself.
            return Completion(node, None, error, now, now, last_address, None, tuple(lost[:-1]))
        return Completion(node, None, error, now, now, None, None, tuple(lost))

    def _take(self, item: tuple[Any, ...]) -> Completion | None:
        kind = item[0]
        if kind == "failed":
            return item[1]
        if kind == "lost":
            _, dask_key, worker = item
            node = self._node_of.get(dask_key)
            if node is not None:
                self.starts.setdefault(node, []).append(worker)
            return None
        if kind == "future":
            _, node, future = item
            if self._futures.get(node) is not future:
                return None  # an earlier attempt's future
            return self._completion(node, future)
        msg = item[1]
        node, dask_key = msg[1], msg[2]
        if dask_key not in self._node_of:
            return None  # not one of this session's submissions
        if msg[0] == "start":
            on_running = self._on_running.pop(dask_key, None)
            current = self._futures.get(node)
            if on_running is not None and current is not None and current.key == dask_key:
                on_running(node)  # only for the attempt still running: an earlier one's start is stale
            return None
        future = self._done.pop(dask_key, None)
        self._events[dask_key] = msg
        return self._completion(node, future) if future is not None else None

    def wait(self, timeout: float | None = None) -> list[Completion]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[Completion] = []
        while not out:
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                if self.client.status not in ("running", "connecting"):
                    raise DaskConnectionError(f"lost the Dask scheduler at {self.client.scheduler.address}")
                if deadline is not None and time.monotonic() >= deadline:
                    return out
                continue
            done = self._take(item)
            if done is not None:
                out.append(done)
            while True:
                try:
                    done = self._take(self._queue.get_nowait())
                except queue.Empty:
                    break
                if done is not None:
                    out.append(done)
        return out

    def fetch(self, handles: Sequence[Any]) -> list[Any]:
        values = self.client.gather(list(handles))
        return [v.value if type(v) is Output else v for v in values]

    def cancel(self, keys: Sequence[str] | None = None) -> None:
        futures = [f for k, f in self._futures.items() if keys is None or k in keys]
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        try:
            self.client.unsubscribe_topic(self.topic)
            # The scheduler keeps every event of a topic: drop this run's, or a shared cluster grows.
            self.client.run_on_scheduler(_forget_topic, self.topic)
        except Exception:  # noqa: BLE001 - the client may be gone already
            pass
        for dask_key in self._node_of:
            self._client_state.sessions.pop(dask_key, None)
        self._futures.clear()
        self._done.clear()
        self._on_running.clear()
