"""Run tasks on Dask: a local cluster started for you, or a cluster by address.

Data stays on the workers: each node is submitted as soon as the engine knows
it, with its upstream *futures* as arguments, so values move worker to worker.
The client receives only small records, as ``distributed`` events: the worker
function (:func:`flowkit._worker.on_dask`) publishes, when an attempt ends,
its timings and the record of the artifact it stored; a scheduler plugin
(:class:`~flowkit.executors._dask_deaths.LostAttempts`) publishes each attempt
that died with its worker, and keeps Dask from blaming bystanders for it. A
future's completion (or error) and its ``done`` event together make one
:class:`~flowkit.executors.Completion`.

A run always ends. What goes wrong on the cluster rather than in a task is a
:class:`DaskClusterError` naming the scheduler: no worker for longer than
``no_workers_timeout``, a lost scheduler, an error Dask could not deliver. A
result lost with its worker after it finished is waited for while Dask
computes it again; it never turns into a failure, nor into a timeout of a
task that has none.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import distributed
from distributed import Client, KilledWorker, LocalCluster
from distributed.core import Status

from flowkit._worker import Output, on_dask, started_topic, unpack_report
from flowkit.clock import Clock
from flowkit.errors import FlowkitError
from flowkit.executors import Completion
from flowkit.executors._dask_client import CLIENTS as _CLIENTS  # noqa: F401 - read by the tests
from flowkit.executors._dask_client import client_state as _client_state
from flowkit.executors._dask_client import leave_topics as _leave_topics

__all__ = ["DaskClusterError", "DaskConnectionError", "DaskExecutor", "KilledWorkersError"]

log = logging.getLogger("flowkit")

#: How long a run waits, by default, while the cluster has no worker at all.
NO_WORKERS_TIMEOUT = 300.0


class DaskClusterError(FlowkitError):
    """The Dask cluster cannot carry on with the run: no worker for too long, a lost scheduler, a lost reply.

    The message names the scheduler's address. It is the cluster's failure, not the task's:
    a communication timeout inside Dask is reported as this, never as a task's ``timeout``.
    The tasks in flight fail with it, what finished before is kept, and a rerun resumes.
    """


class DaskConnectionError(DaskClusterError, ConnectionError):
    """The Dask scheduler cannot be reached, or was lost during a run."""


class KilledWorkersError(FlowkitError, RuntimeError):
    """A task kept killing the Dask workers that ran it (out of memory, a crash in native code...).

    Dask gives up on a task after ``distributed.scheduler.allowed-failures`` + 1 worker
    deaths it may have caused; the message names the task, its attempts and the workers
    that died with them.
    """


class DaskExecutor:
    """Run tasks on a Dask cluster.

    Args:
        address: a scheduler address such as ``"tcp://10.0.0.5:8786"``; ``None``
            starts a ``distributed.LocalCluster`` on 127.0.0.1 for each run (or
            once, when the executor is used as a context manager).
        n_workers, threads_per_worker, processes: for the local cluster (default: Dask's
            choice for this machine, worker processes); refused with ``address`` or ``client``,
            whose cluster has its workers already.
        client: an existing ``distributed.Client`` to use (it is not closed).
        no_workers_timeout: seconds a run waits while the cluster has no worker at all
            (all lost, none started yet) before its tasks in flight fail with a
            :class:`DaskClusterError`; ``None`` waits for ever.
        **cluster_kwargs: passed on to ``LocalCluster``; with ``address``, only ``timeout``
            (seconds to wait for the scheduler, default 10) is taken.

    Use it as a context manager so several runs share one cluster::

        with fk.DaskExecutor(n_workers=4) as dask:
            flow.with_options(executor=dask).run()
            other.with_options(executor=dask).run()
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 threads_per_worker: int | None = None, processes: bool | None = None, client: Client | None = None,
                 no_workers_timeout: float | None = NO_WORKERS_TIMEOUT, **cluster_kwargs: Any) -> None:
        if address is not None or client is not None:
            given = "address=" if address is not None else "client="
            if address is not None and client is not None:
                raise ValueError("DaskExecutor: give address= or client=, not both")
            local = {"n_workers": n_workers, "threads_per_worker": threads_per_worker, "processes": processes}
            ignored = [name for name, value in local.items() if value is not None]
            ignored += [name for name in cluster_kwargs if address is None or name != "timeout"]
            if ignored:
                raise ValueError(f"DaskExecutor({given}...): {', '.join(ignored)} would be ignored: they configure "
                                 f"the local cluster flowkit starts, and the cluster at {given[:-1]} has its own "
                                 f"workers")
        if no_workers_timeout is not None and not no_workers_timeout > 0:
            raise ValueError(f"DaskExecutor(no_workers_timeout={no_workers_timeout!r}): give a number of seconds "
                             f"above 0, or None to wait for ever")
        self.no_workers_timeout = no_workers_timeout
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.processes = True if processes is None else processes
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
    def cluster(self) -> LocalCluster | None:
        """The ``LocalCluster`` the executor started, while it is open (``None`` for a cluster by address)."""
        return self._cluster

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
            client = self._open()
            keep = functools.partial(_keep_size, self._cluster) if self._cluster is not None else None
            session = _DaskSession(client, clock, self.no_workers_timeout, keep)
            try:
                yield session
            finally:
                session.close()


def _label(name: str | None, tags: Sequence[str]) -> str:
    """The key prefix the dashboard groups by: the task name, with its tags."""
    label = name or "flowkit"
    return f"{label}({','.join(tags)})" if tags else label


def _keep_size(cluster: LocalCluster) -> None:
    """Start again the workers of a local cluster whose nanny gave up.

    ``LocalCluster`` closes a worker's nanny for good when no worker of that name is back
    ``distributed.deploy.lost-worker-timeout`` after it was lost, as happens when a
    restarted worker dies again soon; a cluster flowkit started is put back to its size.
    """
    if len(cluster.workers) < len(cluster.worker_spec) and cluster.status == Status.running:
        log.warning("flowkit: %d of the %d workers of the local Dask cluster are gone for good; starting them "
                    "again", len(cluster.worker_spec) - len(cluster.workers), len(cluster.worker_spec))
        cluster.scale(len(cluster.worker_spec))


def _what(name: str | None, node: str) -> str:
    """How a message names a node's task: ``'train'``, or ``'train' (node 'train#2')``."""
    return repr(node) if name is None or name == node else f"{name!r} (node {node!r})"


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _DaskSession:
    """One run on a Dask client: submit with futures, complete from futures + events."""

    eager = True  # a submission's future is a handle at once: dependents can be handed over early
    in_process = False

    def __init__(self, client: Client, clock: Clock, no_workers_timeout: float | None = NO_WORKERS_TIMEOUT,
                 keep_size: Callable[[], None] | None = None) -> None:
        self.client = client
        self._keep_size = keep_size
        self._next_keep = 0.0
        self.clock = clock
        self.no_workers_timeout = no_workers_timeout
        self.topic = f"flowkit-{uuid.uuid4().hex}"
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._futures: dict[str, distributed.Future] = {}  # node -> its running attempt's future
        # Pairing is by Dask key, so an event of an earlier attempt never completes a later one.
        self._done: dict[str, distributed.Future] = {}  # finished futures waiting for their event
        self._events: dict[str, tuple[Any, ...]] = {}  # "done" events waiting for their future
        # Finished, then the result was lost with its worker before it was read: Dask computes it again.
        self._recomputing: dict[str, distributed.Future] = {}
        self.lost: dict[str, list[tuple[str, bool]]] = {}  # node -> (worker, blamed) per attempt lost with it
        self._names: dict[str, str | None] = {}  # node -> its task's name, for messages
        self._resources_seen: set[tuple[tuple[str, float], ...]] = set()
        self._client_state = _client_state(client)
        self._node_of: dict[str, str] = {}  # dask key -> node
        self._on_running: dict[str, Callable[[str], None]] = {}  # dask key -> who wants its "start" event
        self._no_workers_since: float | None = None
        self._broken: DaskClusterError | None = None  # once set, everything in flight or submitted fails with it
        self._starts = False  # subscribed to the topic of the "start" events (see _worker.on_dask)
        client.subscribe_topic(self.topic, self._on_event)

    @property
    def address(self) -> str:
        try:
            return str(self.client.scheduler.address)
        except Exception:  # noqa: BLE001 - a client that never connected
            return "an unknown address"

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
        self.lost[key] = []
        self._names[key] = name
        if self._broken is not None:
            now = self.clock.time()
            self._queue.put(("failed", Completion(key, None, self._broken, now, now, None)))
            return None
        if code is not None:
            self._client_state.ship_by_value(code)
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
            if not self._starts:  # sent before the task, on the same stream: no start is missed
                self._starts = True
                self.client.subscribe_topic(started_topic(self.topic), self._on_event)
            self._on_running[dask_key] = on_running
        future = self.client.submit(on_dask, self.topic, key, fn, args, *deps, key=dask_key, pure=False,
                                    resources=resources or None)
        self._futures[key] = future
        future.add_done_callback(lambda f, node=key: self._on_future(node, f))
        return future

    def _lost_workers(self, node: str) -> tuple[str, ...]:
        return tuple(worker for worker, _ in self.lost.get(node, ()))

    def _completion(self, node: str, future: distributed.Future) -> Completion | None:
        """A Completion once both the future and (for a success) its event are in."""
        status = future.status
        if status == "finished":
            event = self._events.pop(future.key, None)
            if event is None:
                self._done[future.key] = future
                return None
            _, _, _, worker, started, ended, report = event
            info, logs, extras = unpack_report(report)
            self._futures.pop(node, None)
            return Completion(node, future, None, started, ended, worker, info, self._lost_workers(node), logs,
                              extras)
        if status in ("lost", "pending"):
            # It finished, then its worker died with the result before this was read. Dask computes it
            # again (it is wanted): wait for that. The report of the lost attempt is dropped; the next
            # attempt sends its own.
            self._events.pop(future.key, None)
            self._recomputing[node] = future
            return None
        self._futures.pop(node, None)
        now = self.clock.time()
        what = _what(self._names.get(node), node)
        if status != "error":  # cancelled: the scheduler forgot it (restarted, or the client reconnected)
            error: BaseException = DaskClusterError(
                f"the Dask scheduler at {self.address} dropped task {what} (its future is {status!r}); the "
                f"scheduler may have restarted. Run the flow again: what finished is kept")
            return Completion(node, None, error, now, now, None, None, self._lost_workers(node))
        try:
            error = future.exception(timeout=10)  # delivered with the failure already: no wait in practice
        except Exception as exc:  # noqa: BLE001 - the reply did not come: the cluster's failure, not the task's
            error = DaskClusterError(f"could not learn why task {what} failed from the Dask scheduler at "
                                     f"{self.address}: {_text(exc)}")
            error.__cause__ = exc
        if isinstance(error, KilledWorker):
            return self._killed(node, future, error, now)
        if type(error).__name__ in ("NoValidWorkerError", "NoWorkerError"):  # distributed's no-workers-timeout
            cluster = DaskClusterError(f"no Dask worker of the cluster at {self.address} could run task {what}: "
                                       f"{error}")
            cluster.__cause__ = error
            error = cluster
        return Completion(node, None, error, now, now, None, None, self._lost_workers(node))

    def _killed(self, node: str, future: distributed.Future, error: KilledWorker, now: float) -> Completion:
        """Dask gave up on a task whose workers kept dying: say whose fault, with the attempts recorded."""
        what = _what(self._names.get(node), node)
        allowed = getattr(error, "allowed_failures", None)
        last = getattr(getattr(error, "last_worker", None), "address", None)
        if error.task != future.key:  # an input's: its value was lost with its worker, and recomputing it failed
            upstream = self._node_of.get(error.task, str(error.task))
            cluster = DaskClusterError(
                f"task {what} could not run: the value of its input {upstream!r} was lost with its Dask worker, "
                f"and the workers computing it again kept dying (the last {last}, cluster at {self.address}). Run "
                f"the flow again: what finished is kept")
            cluster.__cause__ = error
            return Completion(node, None, cluster, now, now, None, None, self._lost_workers(node))
        workers = list(self._lost_workers(node))  # the plugin's events come before the failure; the last is it
        if last is not None and last not in workers:
            workers.append(last)
        if not workers:
            workers.append("an unknown worker")
        n = len(workers)
        shown = ", ".join(workers[:6]) + (f" and {n - 6} more" if n > 6 else "")
        limit = f" (distributed.scheduler.allowed-failures = {allowed})" if allowed is not None else ""
        killed = KilledWorkersError(
            f"task {what} kept killing Dask workers: {n} attempt{'s' if n != 1 else ''} died with the worker "
            f"running {'them' if n != 1 else 'it'} ({shown}), and Dask gave up on it{limit}. Look in the workers' "
            f"logs for what ended them: memory, a crash in native code, os._exit")
        killed.__cause__ = error
        # The last lost attempt is this failure itself.
        return Completion(node, None, killed, now, now, workers[-1], None, tuple(workers[:-1]))

    def _take(self, item: tuple[Any, ...]) -> Completion | None:
        kind = item[0]
        if kind == "failed":
            return item[1]
        if kind == "lost":
            _, dask_key, worker, blamed = item
            node = self._node_of.get(dask_key)
            if node is not None:
                self.lost.setdefault(node, []).append((worker, blamed))
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
        current = self._futures.get(node)
        if current is None or current.key != dask_key:
            return None  # an earlier attempt's, or a recomputation of a node completed already
        if msg[0] == "start":
            on_running = self._on_running.pop(dask_key, None)
            if on_running is not None:
                on_running(node)
            return None
        future = self._done.pop(dask_key, None)
        self._events[dask_key] = msg
        return self._completion(node, future) if future is not None else None

    def _recomputed(self) -> list[Completion]:
        """Completions of results that were lost with their worker and have been computed again."""
        out = []
        for node, future in list(self._recomputing.items()):
            if future.done():
                del self._recomputing[node]
                if self._futures.get(node) is future:
                    done = self._completion(node, future)
                    if done is not None:
                        out.append(done)
        return out

    def _cluster_problem(self, waiting: int | None = None) -> DaskClusterError | None:
        """Why the run cannot go on (the scheduler is gone, no worker for too long), or ``None``."""
        if self.client.status not in ("running", "connecting"):
            return DaskConnectionError(f"lost the Dask scheduler at {self.address} (the client is "
                                       f"{self.client.status!r})")
        n = len(self._futures) if waiting is None else waiting
        if self.no_workers_timeout is None or not n:
            self._no_workers_since = None
            return None
        try:
            workers = len(self.client.nthreads())
        except Exception:  # noqa: BLE001 - no answer: as good as no worker, for as long as it lasts
            workers = 0
        now = time.monotonic()
        if workers:
            self._no_workers_since = None
            return None
        if self._no_workers_since is None:
            self._no_workers_since = now
        if now - self._no_workers_since < self.no_workers_timeout:
            return None
        return DaskClusterError(
            f"the Dask cluster at {self.address} has had no worker for {self.no_workers_timeout:g} s, with {n} "
            f"task{'s' if n != 1 else ''} of the run waiting; start workers (or look in the scheduler's log for "
            f"why they died), or give DaskExecutor(no_workers_timeout=...) more time")

    def _break(self, problem: DaskClusterError) -> list[Completion]:
        """The run cannot go on here: fail what is in flight, and whatever is submitted from now on."""
        self._broken = problem
        log.error("flowkit: %s", problem)
        futures = list(self._futures.values())
        now = self.clock.time()
        out = [Completion(node, None, problem, now, now, None, None, self._lost_workers(node))
               for node in self._futures]
        self._futures.clear()
        self._done.clear()
        self._recomputing.clear()
        try:
            self.client.cancel(futures)
        except Exception:  # noqa: BLE001 - the scheduler may be gone
            pass
        return out

    def wait(self, timeout: float | None = None) -> list[Completion]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[Completion] = []
        while not out:
            poll = 0.2 if self._recomputing else 1.0
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                item = None
            idle = item is None and left > 0  # nothing came for a while: is the cluster still there?
            while item is not None:
                done = self._take(item)
                if done is not None:
                    out.append(done)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if self._recomputing:
                out.extend(self._recomputed())
            if self._keep_size is not None and time.monotonic() >= self._next_keep:
                self._next_keep = time.monotonic() + 5.0  # a nanny being started takes a few seconds to show
                self._keep_size()
            if out:
                break
            if idle:
                problem = self._cluster_problem()
                if problem is not None:
                    return self._break(problem)
            if deadline is not None and time.monotonic() >= deadline:
                break
        return out

    def fetch(self, handles: Sequence[Any]) -> list[Any]:
        futures = [h for h in handles if isinstance(h, distributed.Future)]
        # A result lost with its worker is computed again, if the cluster can: wait for it with a bound.
        check = time.monotonic() + 1.0
        while not all(f.done() for f in futures):
            time.sleep(0.05)
            if time.monotonic() >= check:
                problem = self._cluster_problem(waiting=len(futures))
                if problem is not None:
                    raise problem
                check = time.monotonic() + 1.0
        try:
            values = self.client.gather(list(handles))
        except Exception as exc:  # noqa: BLE001 - these values were computed: failing to get them is the cluster's
            raise DaskClusterError(f"could not fetch results from the Dask cluster at {self.address}: "
                                   f"{_text(exc)}") from exc
        return [v.value if type(v) is Output else v for v in values]

    def cancel(self, keys: Sequence[str] | None = None) -> None:
        futures = [f for k, f in self._futures.items() if keys is None or k in keys]
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        try:
            # The scheduler keeps every event of a topic: drop this run's, or a shared cluster grows.
            _leave_topics(self.client, self.topic, started_topic(self.topic))
        except Exception:  # noqa: BLE001 - the client may be gone already
            pass
        for dask_key in self._node_of:
            self._client_state.sessions.pop(dask_key, None)
        self._futures.clear()
        self._done.clear()
        self._recomputing.clear()
        self._on_running.clear()
