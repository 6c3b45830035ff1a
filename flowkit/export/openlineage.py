"""OpenLineage export: every run's lineage sent to an OpenLineage backend, when one is configured.

Configure it the way the ``openlineage-python`` client is configured, and every
flow run sends ``RunEvent``\\ s for itself and each of its task runs::

    export OPENLINEAGE_URL=http://localhost:5000          # Marquez, or any OpenLineage HTTP endpoint
    export OPENLINEAGE_API_KEY=...                         # optional
    export OPENLINEAGE_NAMESPACE=analytics                 # the jobs' namespace (default "flowkit")

or an ``openlineage.yml`` (``OPENLINEAGE_CONFIG``, else ``./openlineage.yml``, else
``~/.openlineage/openlineage.yml``), or ``OPENLINEAGE__TRANSPORT__*`` variables, for
any of the client's transports (http, file, console, kafka, composite...);
``OPENLINEAGE_DISABLED=true`` turns it off. With none of these, nothing happens and
nothing of the client is imported. What the events hold: ``docs/lineage.md``.

The run never waits for the backend and never fails because of it. Its listener
(:class:`OpenLineageListener`, added by the runner) only queues what the run's
events say (task runs, lineage rows, artifacts); one background thread per configuration builds the OpenLineage events from
them (:mod:`flowkit.export.openlineage_events`) and sends them through the client.
While runs go, that thread uses at most :data:`RUN_SHARE` of the time (and
none in a run's first :data:`QUIET` second), so a CPU-bound run is slowed by a few percent at most;
that counts its setup too: importing the client takes about 0.25 s of CPU, which a
CPU-bound run earns in about a minute (a shorter one has its events sent from its end);
a run's end waits for its events for at most :data:`END_SHARE` of its duration (and
never more than ``FLOWKIT_OPENLINEAGE_TIMEOUT`` seconds, default 10); what is left is
sent in the background, and the interpreter's exit waits for it up to that timeout. Use
:func:`flush` to wait for delivery yourself. A backend that fails is reported once
in the ``flowkit`` log, naming its URL without credentials; its events are dropped
for :data:`COOLDOWN` seconds before the next try, so a backend that is down costs a
run nothing.
"""

from __future__ import annotations

import atexit
import collections
import importlib.util
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from flowkit.errors import FlowkitError
from flowkit.events import RunFinished, RunStarted, TaskFinished

__all__ = ["LineageExportError", "OpenLineageListener", "configured", "flush", "listener", "run_events", "send"]

log = logging.getLogger("flowkit")

NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"
TIMEOUT_ENV = "FLOWKIT_OPENLINEAGE_TIMEOUT"
DEFAULT_NAMESPACE = "flowkit"
DEFAULT_TIMEOUT = 10.0
#: Share of the wall time the sending thread may use while runs go (it shares the GIL with them). Each
#: time it takes the interpreter the runs' threads stop and then wait to take it back, so what they lose
#: is a few times what the thread itself uses: at 2% a run of 2,000 no-op tasks was 5-17% slower, at
#: 0.5% (with a run's first 0.1 s left alone, see _Emitter.begin) 2-5%, about the noise of that figure.
RUN_SHARE = 0.005
#: Seconds at a run's start in which the thread sends nothing while the run keeps the interpreter busy:
#: a shorter run loses nothing to it while it goes. (With 0.1 s, the flow run's ``START`` went out during
#: runs of 5,000 no-op tasks, 0.15-0.3 s long; with 1 s the thread uses about 0.1% of such a run.)
QUIET = 1.0
#: Share of a run's duration its end waits for its events to be sent.
END_SHARE = 0.02
#: Seconds during which events are dropped after the backend failed (then the next one is tried).
COOLDOWN = 10.0
#: A run's queued items (task runs, their lineage rows, new artifacts) at most; past it a task's events are
#: built from its final record at the run's end.
QUEUE_SIZE = 50_000
_BURST = 0.0005  # CPU seconds the thread may spend at once while runs go
#: CPU seconds the thread's setup takes (importing the client and the event builder, ~0.25 s here), when
#: nothing of them is imported yet; a CPU-bound run earns that much of RUN_SHARE in 50 s.
_SETUP_IMPORT = 0.3
_SETUP_CLIENT = 0.002  # the same once they are imported: making a client
_LOOK = 0.1  # seconds a pause lasts at most before the thread looks again at how busy the runs are
_FREE_BELOW = 0.5  # share of a pause the rest of the process used below which the runs leave the GIL free
_FREE_FOR = 0.05  # seconds of sending at full speed after such a pause


# --- configuration --------------------------------------------------------------------------------

def _config_file() -> str | None:
    """The ``openlineage.yml`` the client would read, looked for as it does."""
    candidates = (os.environ.get("OPENLINEAGE_CONFIG"), os.path.join(os.getcwd(), "openlineage.yml"),
                  os.path.join(os.path.expanduser("~/.openlineage"), "openlineage.yml"))
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.R_OK):
            return path
    return None


def _configuration() -> tuple[Any, ...] | None:
    """What configures the client now (its identity), or ``None`` when nothing does. Imports nothing."""
    env = os.environ
    if env.get("OPENLINEAGE_DISABLED", "").lower().strip() == "true":
        return None
    path = _config_file()
    dynamic = any(k.startswith("OPENLINEAGE__TRANSPORT") for k in env)
    if not (env.get("OPENLINEAGE_URL") or path or dynamic):
        return None
    try:
        stamp = os.stat(path).st_mtime_ns if path else None
    except OSError:
        stamp = None
    variables = tuple(sorted((k, v) for k, v in env.items() if k.startswith("OPENLINEAGE") or k == TIMEOUT_ENV))
    return variables, path, stamp


def configured() -> bool:
    """Whether OpenLineage is configured here (``OPENLINEAGE_URL``, a config file or variables, not disabled)."""
    return _configuration() is not None


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        return max(0.0, float(text))
    except ValueError:
        log.warning("flowkit: %s=%r is not a number of seconds; using %g", TIMEOUT_ENV, text, DEFAULT_TIMEOUT)
        return DEFAULT_TIMEOUT


_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def where(transport: Any) -> str:
    """Where a transport sends events, for messages: a URL without credentials, a file, a kind."""
    kind = getattr(transport, "kind", None)
    if kind == "http":
        from urllib.parse import urljoin, urlsplit

        parts = urlsplit(urljoin(transport.url, transport.endpoint))  # without user, password or query
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"
    if kind == "file":
        return f"the file {transport.config.log_file_path}"
    if kind == "composite":
        return ", ".join(where(t) for t in getattr(transport, "transports", ())) or "a composite transport"
    return f"the {kind or type(transport).__name__} transport"


def make_client() -> Any:
    """The ``openlineage.client.OpenLineageClient`` the environment configures, as the client builds it.

    The client copies ``OPENLINEAGE_URL`` into ``OPENLINEAGE__TRANSPORT__*`` variables of the
    process while it reads its configuration; they are taken back, so the environment stays
    what the user set (a later change of ``OPENLINEAGE_URL`` is seen, child processes inherit no copies).
    """
    import warnings

    from openlineage.client import OpenLineageClient

    before = dict(os.environ)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return OpenLineageClient()
    finally:
        for name in set(os.environ) - set(before):
            os.environ.pop(name, None)


# --- the sending thread -----------------------------------------------------------------------

class _RunHandle:
    """One run's events on their way to the sending thread; the run's end waits on ``done``."""

    __slots__ = ("store", "events", "live", "done")

    def __init__(self, store: Any) -> None:
        self.store = store
        self.events: collections.deque[Any] = collections.deque()  # appended by the run, taken by the thread
        self.live: Any = None  # a LiveRun, made in the sending thread (it imports the client)
        self.done = threading.Event()  # its RunFinished was handled


class _Flush:
    """A marker in a run's events: everything before it was handled."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Emitter:
    """The background thread that builds and sends the OpenLineage events of one configuration's runs.

    Each run hands its events to its own queue (:class:`_RunHandle`), without a lock; the
    thread takes them run by run, oldest run first. While a run goes and nobody waits for
    delivery, it holds back to :data:`RUN_SHARE` of the time, measured in its own CPU time
    (what it keeps the runs from, since they share the GIL).
    """

    def __init__(self, config: tuple[Any, ...], namespace: str, timeout: float) -> None:
        self.config = config
        self.namespace = namespace
        self.timeout = timeout
        self.runs: list[_RunHandle] = []  # runs whose events are not all handled, oldest first
        self.going = 0  # runs that have not ended: the thread holds back
        self.urgent = 0  # someone waits for delivery: the thread does not hold back
        self.wake = threading.Event()
        self.idle = False
        self.lock = threading.Lock()
        self.broken = False  # the client could not be made: nothing is sent
        self.client: Any = None  # made by the thread when it first has an event to send (see _setup)
        self._live: Any = None  # the LiveRun class, imported with the client
        self.retired = False  # the configuration changed: it ends once its runs are handled
        self.destination = "the OpenLineage backend"
        self.cost = 0.001  # seconds an event takes to handle (a moving average)
        self.sent = self.failed = self.rejected = self.folded = 0
        self.down_until = 0.0
        self._said: set[str] = set()
        self._allowance = 0.0
        self._last = time.perf_counter()
        self._free_until = 0.0
        self.thread = threading.Thread(target=self._work, name="flowkit-openlineage", daemon=True)
        self.thread.start()

    # the runs' side

    def begin(self, handle: _RunHandle) -> None:
        with self.lock:
            if not self.going:
                # Runs start with the thread's restraint spent, QUIET seconds in debt: a
                # run's first second passes without it, and a run shorter than that loses
                # nothing while it goes; its events are sent from its end.
                self._allowance, self._last = -RUN_SHARE * QUIET, time.perf_counter()
            self.going += 1
            self.runs.append(handle)

    def end(self, handle: _RunHandle, finished: Any, took: float) -> None:
        """Hand over a run's ``RunFinished``; wait for its events while that is likely to pay off."""
        with self.lock:
            self.going -= 1
        handle.events.append(finished)
        bound = min(self.timeout, END_SHARE * took)
        backlog = sum(len(h.events) for h in self.runs)
        if backlog * self.cost <= bound:
            self.wait(handle.done, bound)
        else:  # it would not be done in time: the rest is sent in the background
            self.wake.set()

    def wait(self, done: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` for ``done``, the thread sending as fast as it can meanwhile."""
        if self.broken or done.is_set() or timeout <= 0:
            return done.is_set() or self.broken
        with self.lock:
            self.urgent += 1
        self.wake.set()
        try:
            return done.wait(timeout)
        finally:
            with self.lock:
                self.urgent -= 1

    def flush(self, timeout: float) -> bool:
        markers = []
        with self.lock:
            for handle in self.runs:
                marker = _Flush()
                handle.events.append(marker)
                markers.append(marker)
        deadline = time.monotonic() + timeout
        return all(self.wait(m.done, max(0.0, deadline - time.monotonic())) for m in markers)

    def pending(self) -> int:
        return sum(len(h.events) for h in self.runs)

    # the thread's side

    def say(self, what: str, level: int, message: str, *args: Any) -> None:
        """Log a message once per kind of trouble (the next ones go to the debug log)."""
        if what in self._said:
            log.debug(message, *args)
        else:
            self._said.add(what)
            log.log(level, message, *args)

    def _next(self) -> _RunHandle | None:
        for handle in self.runs:
            if handle.events:
                return handle
        return None

    def _setup(self) -> None:
        """Import the client and the event builder and make the client (``broken`` when it cannot be made)."""
        try:
            self.client = make_client()
            self.destination = where(self.client.transport)
            from flowkit.export.openlineage_events import LiveRun
        except Exception as exc:  # noqa: BLE001 - a configuration the client refuses: said once, runs go on
            self.broken = True
            self.say("config", logging.ERROR, "flowkit: OpenLineage is configured but its client could not be set up "
                     "(%s); runs go on without sending lineage", _clean(error_line(exc)))
            return
        self._live = LiveRun

    def _setup_cost(self) -> float:
        """What :meth:`_setup` is likely to take, in CPU seconds: the thread holds back for it like for an event."""
        imported = "openlineage.client" in sys.modules and "flowkit.export.openlineage_events" in sys.modules
        return _SETUP_CLIENT if imported else _SETUP_IMPORT

    def _discard(self, handle: _RunHandle, event: Any) -> None:
        """What a broken emitter does with an event: nothing, but the runs and flushes waiting are let go."""
        if type(event) is _Flush:
            event.done.set()
        elif type(event) is RunFinished:
            self._finished(handle)

    def _work(self) -> None:
        # The client is set up when there is a first event to send, under the same restraint as
        # sending: importing it takes a CPU-bound run's interpreter for about 0.25 s.
        while True:
            handle = self._next()
            if handle is None:
                if self.retired and not self.runs:
                    with _LOCK:  # with _emitter(), which takes a retired emitter back if its configuration returns
                        if self.retired and not self.runs:
                            if _EMITTERS.get(self.config) is self:
                                del _EMITTERS[self.config]
                            return
                    continue
                self.idle = True
                if self._next() is None:
                    self.wake.wait()
                    self.wake.clear()
                self.idle = False
                continue
            if self.broken:
                self._discard(handle, handle.events.popleft())
                continue
            setup = self.client is None
            if self.going and not self.urgent:
                if self._hold_back(self._setup_cost() if setup else 0.0):
                    continue
            else:  # nothing to hold back for; a run that starts later gets the thread's restraint afresh
                self._allowance, self._last = 0.0, time.perf_counter()
            cpu, wall = time.thread_time(), time.perf_counter()
            if setup:
                self._setup()
                self._allowance -= time.thread_time() - cpu
                continue
            if type(handle.events[0]) is _Flush:
                handle.events.popleft().done.set()
                continue
            # Popped in the call, so that no local variable keeps the item while the thread waits: a
            # RunFinished holds its whole run (graph, records, output value), which stayed alive until
            # the next item replaced it, and was then freed on this thread, in the middle of the next run.
            self._handle(handle, handle.events.popleft(), self._live)
            self._allowance -= time.thread_time() - cpu
            self.cost += (time.perf_counter() - wall - self.cost) / 16

    def _handle(self, handle: _RunHandle, event: Any, live: type[Any]) -> None:
        try:
            if handle.live is None:
                handle.live = live(self.namespace, handle.store)
            events = handle.live.events(event)
        except Exception as exc:  # noqa: BLE001 - a bug of the builder must not stop the exports
            log.debug("flowkit: OpenLineage events could not be built", exc_info=True)
            self.say("build", logging.ERROR, "flowkit: an OpenLineage event could not be built (%s); it was "
                     "not sent", error_line(exc))
            events = []
        for ol_event in events:
            self._send(ol_event)
        if type(event) is RunFinished:
            self._finished(handle)

    def _finished(self, handle: _RunHandle) -> None:
        """A run's last event was handled: it leaves the thread's runs, and whoever waits for it is let go."""
        handle.live = None
        with self.lock:  # with flush(), which adds its markers to the runs it finds under the lock
            self.runs.remove(handle)
            while handle.events:  # only flush markers come after the end of a run
                handle.events.popleft().done.set()
        handle.done.set()

    def _hold_back(self, need: float = 0.0) -> bool:
        """While runs go, use at most RUN_SHARE of the time; ``True`` when it paused instead.

        ``need``: the CPU seconds the next step is known to take at once (the setup), which
        the thread waits to have earned; otherwise it goes on while it is not in debt, and
        pays what a step took afterwards. A pause lasts at most :data:`_LOOK` and also
        measures how busy the rest of the process was meanwhile: when the runs left the
        interpreter mostly free (their tasks wait on I/O, on a Dask cluster, in C code), there
        is nobody to hold back for, and the thread sends at full speed for the next
        :data:`_FREE_FOR` seconds before it looks again.
        """
        now = time.perf_counter()
        if now < self._free_until:
            return False
        self._allowance = min(max(_BURST, need), self._allowance + (now - self._last) * RUN_SHARE)
        self._last = now
        if self._allowance >= need:
            return False
        others = time.process_time() - time.thread_time()
        self.wake.wait(min(_LOOK, (need - self._allowance) / RUN_SHARE))
        self.wake.clear()
        paused = time.perf_counter() - now
        if paused > 0 and time.process_time() - time.thread_time() - others < _FREE_BELOW * paused:
            self._free_until = time.perf_counter() + _FREE_FOR
        return True

    def _send(self, event: Any) -> None:
        if self.down_until and time.monotonic() < self.down_until:
            self.failed += 1
            return
        try:
            self.client.emit(event)
        except Exception as exc:  # noqa: BLE001 - any transport's failure: said once, the run is not concerned
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status is not None and 400 <= status < 500:  # the backend refused this event: others may pass
                self.rejected += 1
                self.say("rejected", logging.ERROR, "flowkit: %s refused an OpenLineage event (%s); it was dropped",
                         self.destination, self._clean(error_line(exc)))
                return
            self.failed += 1
            self.down_until = time.monotonic() + COOLDOWN
            self.say("down", logging.ERROR, "flowkit: OpenLineage events could not be sent to %s (%s); runs go on, "
                     "their events are dropped for %gs, then sent again if it answers", self.destination,
                     self._clean(error_line(exc)), COOLDOWN)
            return
        self.sent += 1
        if self.down_until:
            self.down_until = 0.0
            self._said.discard("down")
            log.info("flowkit: OpenLineage events reach %s again (%d were dropped)", self.destination, self.failed)

    def _clean(self, text: str) -> str:
        return _clean(text, self.client.transport)


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _clean(text: str, transport: Any = None) -> str:
    """A message without credentials: URL user info and the configured API key are masked."""
    text = _CREDENTIALS.sub("***@", text)
    auth = getattr(getattr(transport, "config", None), "auth", None)
    for key in (os.environ.get("OPENLINEAGE_API_KEY"), getattr(auth, "api_key", None)):
        if key:
            text = text.replace(key, "***")
    return text


_EMITTERS: dict[tuple[Any, ...], _Emitter] = {}
_LOCK = threading.Lock()
_NO_CLIENT: set[tuple[Any, ...]] = set()  # configurations said to lack the client (once each)
_exit_hooked = False


def _client_installed() -> bool:
    try:
        return importlib.util.find_spec("openlineage.client") is not None
    except ModuleNotFoundError:  # no "openlineage" package at all
        return False


def _emitter(config: tuple[Any, ...]) -> _Emitter | None:
    with _LOCK:
        emitter = _EMITTERS.get(config)
        if emitter is not None and emitter.retired:  # its configuration is back before it ended
            emitter.retired = False
        if emitter is None:
            if config in _NO_CLIENT:
                return None
            if not _client_installed():
                _NO_CLIENT.add(config)
                log.error("flowkit: OpenLineage is configured (%s) but openlineage-python is not installed; runs go "
                          "on without sending lineage (pip install 'flowkit[openlineage]')",
                          "OPENLINEAGE_URL" if os.environ.get("OPENLINEAGE_URL") else "by a config file or "
                          "OPENLINEAGE__TRANSPORT variables")
                return None
            global _exit_hooked
            if not _exit_hooked:
                atexit.register(_at_exit)
                _exit_hooked = True
            for old in _EMITTERS.values():  # the configuration changed: the old ones finish what they hold
                old.retired = True
                old.wake.set()
            namespace = os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE
            emitter = _EMITTERS[config] = _Emitter(config, namespace, _timeout())
    return None if emitter.broken else emitter


def _live_emitters() -> list[_Emitter]:
    with _LOCK:
        return [e for e in _EMITTERS.values() if not e.broken]


def flush(timeout: float | None = None) -> bool:
    """Wait until the OpenLineage events of every run so far were handled (sent, or given up on).

    Args:
        timeout: seconds to wait at most (default ``FLOWKIT_OPENLINEAGE_TIMEOUT``, 10).

    Returns:
        ``False`` if the timeout passed first (the rest is still sent in the background).
    """
    deadline = time.monotonic() + (_timeout() if timeout is None else timeout)
    return all(e.flush(max(0.0, deadline - time.monotonic())) for e in _live_emitters())


def _at_exit() -> None:
    for emitter in _live_emitters():
        if emitter.pending() and not emitter.flush(emitter.timeout):
            log.warning("flowkit: %d OpenLineage event(s) were still waiting to be sent to %s when the process "
                        "exited, after waiting %gs (%s)", emitter.pending(), emitter.destination, emitter.timeout,
                        TIMEOUT_ENV)
        if emitter.failed:
            log.warning("flowkit: %d OpenLineage event(s) could not be sent to %s", emitter.failed,
                        emitter.destination)


# --- past runs --------------------------------------------------------------------------------

class LineageExportError(FlowkitError, ConnectionError):
    """OpenLineage events could not be sent: OpenLineage is not configured, or its backend failed."""


def run_events(run_id: str, *, store: Any = None, namespace: str | None = None) -> list[Any]:
    """The OpenLineage events of a recorded run, as its live export sent them.

    Built from the store's records by the same code as a live run's events
    (:mod:`flowkit.export.openlineage_events`), so the two agree: the same run ids, jobs,
    datasets and facets (the client adds facets of its own when it sends, such as ``tags``).

    Args:
        run_id: the run (a unique prefix of its id is enough).
        store: the store to read (default: ``$FLOWKIT_HOME``).
        namespace: the jobs' namespace (default ``$OPENLINEAGE_NAMESPACE``, else ``"flowkit"``).

    Raises:
        KeyError: no such run in the store.
    """
    from flowkit.export.openlineage_events import past_run_events
    from flowkit.store import Store

    return past_run_events(run_id, store if store is not None else Store.open(),
                           namespace or os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE)


def send(events: Iterable[Any]) -> int:
    """Send events through the configured OpenLineage client, now, in this thread; return how many.

    Raises:
        LineageExportError: OpenLineage is not configured, or an event could not be sent (the
            message names where to, without credentials, and how many went before).
    """
    if not configured():
        raise LineageExportError("OpenLineage is not configured: set OPENLINEAGE_URL (and OPENLINEAGE_API_KEY), "
                                 "or OPENLINEAGE_CONFIG to an openlineage.yml, or write ./openlineage.yml; "
                                 "OPENLINEAGE_DISABLED=true turns it off")
    try:
        client = make_client()
    except Exception as exc:  # noqa: BLE001 - whatever the client refuses in its configuration
        raise LineageExportError(f"the OpenLineage client could not be set up: {_clean(error_line(exc))}") from None
    count = 0
    try:
        for event in events:
            try:
                client.emit(event)
            except Exception as exc:  # noqa: BLE001 - any transport's failure, said with where it was going
                raise LineageExportError(f"OpenLineage events could not be sent to {where(client.transport)} after "
                                         f"{count} were: {_clean(error_line(exc), client.transport)}") from None
            count += 1
    finally:
        client.close(5.0)
    return count


# --- the listener -----------------------------------------------------------------------------

class OpenLineageListener:
    """The run listener that hands a run's events to the sending thread (see the module docstring).

    The runner adds one to every run while OpenLineage is configured (:func:`listener`).
    Handing an event over is an append or two to the run's own queue: the events are built and
    sent in the background.
    """

    __slots__ = ("emitter", "handle", "on_event")

    def __init__(self, emitter: _Emitter, store: Any) -> None:
        self.emitter = emitter
        self.handle = handle = _RunHandle(store)
        events = handle.events
        append, extend = events.append, events.extend
        described: set[str] = set()  # artifacts queued already

        def on_event(event: Any) -> None:
            kind = type(event)
            if kind is TaskFinished:
                if len(events) < QUEUE_SIZE:
                    # What waits in the queue until the run's end is kept alive, and each object more
                    # makes the cyclic collector run more often in a run of small tasks (a 5,000-task
                    # fan-out lost 4% to it): the facts go in without the event around them. The task
                    # run costs nothing (the run keeps it anyway); its artifact goes in only the first
                    # time the run stores it, its lineage rows one by one (the sending thread pairs
                    # them with the task run that follows).
                    info = event[1]
                    if info is not None and info[0] not in described:
                        described.add(info[0])
                        append(info)
                    if event[2]:
                        extend(event[2])
                    append(event[0])
                else:  # sent from its final record at the run's end, without its inputs
                    if not emitter.folded:
                        log.warning("flowkit: %d OpenLineage events of run %s wait to be sent; the next tasks' "
                                    "events are sent at the run's end, without their inputs", QUEUE_SIZE,
                                    event[0].run_id)
                    emitter.folded += 1
                if emitter.idle:
                    emitter.wake.set()
            elif kind is RunStarted:
                append(event)
                emitter.begin(handle)
                emitter.wake.set()
            elif kind is RunFinished:
                run = event.run
                emitter.end(handle, event, (run.ended or run.started) - run.started)

        self.on_event = on_event


def listener(store: Any) -> OpenLineageListener | None:
    """A run's OpenLineage listener while OpenLineage is configured, else ``None`` (importing nothing)."""
    config = _configuration()
    if config is None:
        return None
    emitter = _emitter(config)
    return OpenLineageListener(emitter, store) if emitter is not None else None
