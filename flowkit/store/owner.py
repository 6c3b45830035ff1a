"""Who runs a run, and whether it still does: the owner's host, process id and process start time.

A run is recorded ``running`` when it starts and gets its final status when it
ends. A process killed in between (``SIGKILL``, the OOM killer, a lost machine)
never writes that end, so a run row also names its owner (:func:`current`) and
its last sign of life (the heartbeat its recorder writes with each batch).
:func:`status` is how a reader sees a ``running`` row:

- owned by a process of this host: ``running`` while that process exists with the
  same start time, else ``crashed`` (a pid the system gave to another process is
  not mistaken for the owner);
- owned elsewhere (or by a flowkit that did not record owners): ``running`` until
  its heartbeat (else its start) is older than ``stale_after`` seconds, then
  ``crashed``. A single task longer than that, with nothing else finishing, reads
  as ``crashed`` from other hosts until the run records again.

The process start time comes from ``/proc`` on Linux; elsewhere only whether the
pid exists is known.
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple

__all__ = ["STALE_AFTER", "Owner", "alive", "current", "process_start", "status"]

#: Seconds without a sign of life after which a run owned by another host reads as crashed.
STALE_AFTER = 3600.0


class Owner(NamedTuple):
    """The process that runs a run: host name, process id, start time (``None`` when unknown)."""

    host: str
    pid: int
    start: str | None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as text that differs for a later process with the same pid.

    ``None`` if there is no such process (or it is a zombie: dead, not yet reaped), or on a
    system without ``/proc``, where ``""`` means "it exists, start time unknown".
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _exists(pid)
    fields = stat[stat.rindex(b")") + 2:].split()  # the name in parentheses may hold spaces
    if fields[0] in (b"Z", b"X"):  # a zombie or dead process: it will never record anything again
        return None
    return fields[19].decode()  # starttime, clock ticks since boot: field 22 of proc(5), the 20th after the name


def _exists(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # someone else's process: it exists
    return ""


_current: Owner | None = None


def current() -> Owner:
    """This process (computed once per process; a forked child computes its own)."""
    global _current
    pid = os.getpid()
    if _current is None or _current.pid != pid:
        _current = Owner(socket.gethostname(), pid, process_start(pid) or None)
    return _current


def alive(host: str | None, pid: int | None, start: str | None) -> bool | None:
    """Whether the owner still runs: ``None`` when this host cannot tell (another host, no owner)."""
    if pid is None or host is None or host != current().host:
        return None
    now = process_start(pid)
    if now is None:
        return False
    return not (start and now and now != start)


def status(recorded: str, host: str | None, pid: int | None, start: str | None, heartbeat: float | None,
           started: float | None, now: float, stale_after: float = STALE_AFTER) -> str:
    """How a reader sees a run recorded as ``recorded``: ``"crashed"`` for a ``running`` one whose owner is gone."""
    if recorded != "running":
        return recorded
    lives = alive(host, pid, start)
    if lives is None:
        last = heartbeat if heartbeat is not None else started
        lives = last is None or now - last <= stale_after
    return "running" if lives else "crashed"
