"""What flowkit keeps per Dask client: the lost-attempt subscription, and the user code it has shipped.

One :class:`_ClientState` per ``distributed.Client``, shared by every run on it
(:func:`client_state`); the sessions of :mod:`flowkit.executors.dask` register
the Dask keys they submit in it, so the lost attempts the scheduler plugin
reports reach the run they belong to.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

from distributed import Client

from flowkit.executors._dask_deaths import LOST_TOPIC, LostAttempts
from flowkit.hashing import user_modules

__all__ = ["CLIENTS", "client_state", "forget_topic", "leave_topics"]

log = logging.getLogger("flowkit")


class _ClientState:
    """What flowkit keeps per client: the lost-attempt subscription and which code it has shipped.

    Held in a ``WeakKeyDictionary`` keyed by the client, so it goes with the
    client, and a new client (a new cluster) subscribes and ships afresh.
    """

    def __init__(self, client: Client) -> None:
        self.sessions: dict[str, Any] = {}  # dask key -> the session that submitted it
        self.modules: set[str] = set()  # user modules registered to pickle by value
        self.fns: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()  # task code already looked at
        self.left: collections.deque[str] = collections.deque()  # topics of finished runs, oldest first
        client.register_plugin(LostAttempts(), name=LostAttempts.name)
        client.subscribe_topic(LOST_TOPIC, self._on_event)

    def _on_event(self, event: tuple[float, Any]) -> None:
        key, worker, *blamed = event[1]
        session = self.sessions.get(key)
        if session is not None:
            session._queue.put(("lost", key, worker, bool(blamed[0]) if blamed else True))

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


CLIENTS: weakref.WeakKeyDictionary[Client, _ClientState] = weakref.WeakKeyDictionary()


def client_state(client: Client) -> _ClientState:
    state = CLIENTS.get(client)
    if state is None:
        state = CLIENTS[client] = _ClientState(client)
    return state


def forget_topic(*topics: str, dask_scheduler: Any = None) -> None:
    """Runs on the scheduler: drop the events of a finished run's topics.

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
    for topic in topics:
        broker.truncate(topic)
        getattr(broker, "_topics", {}).pop(topic, None)
    plugin = getattr(dask_scheduler, "plugins", {}).get(LostAttempts.name)
    if plugin is not None:  # a late event would make the topic again: the plugin drops it then
        plugin.forgotten(topics)


#: Finished runs' topics whose late events the client still takes, and ignores (see :func:`leave_topics`).
KEEP_LEFT = 1000


def _ignore(event: Any) -> None:
    """The handler of a finished run's topic: a late event (a task still running when the run ended) is dropped."""


def leave_topics(client: Client, *topics: str) -> None:
    """Stop taking a finished run's topics and have the scheduler drop them (see :func:`forget_topic`).

    ``Client.unsubscribe_topic`` leaves the client's handler in place (and with it the run's
    session), and its message to the scheduler, on the batched stream, may arrive after the
    call that drops the topic, which its handling then makes anew, empty. So the run's
    handlers are replaced by one that ignores what comes (a task still running when the run
    ended reports later; without a handler the client logs an error for it, and unsubscribes)
    and are dropped :data:`KEEP_LEFT` runs later; dropping a topic on the scheduler drops its
    subscribers with it.
    """
    handlers = getattr(client, "_event_handlers", None)
    if isinstance(handlers, dict):
        left = client_state(client).left
        for topic in topics:
            if topic in handlers:
                handlers[topic] = _ignore
                left.append(topic)
        while len(left) > KEEP_LEFT:
            handlers.pop(left.popleft(), None)
    else:  # another version of distributed: the public call, late message and all
        for topic in topics:
            with contextlib.suppress(ValueError):
                client.unsubscribe_topic(topic)
    client.run_on_scheduler(forget_topic, *topics)
