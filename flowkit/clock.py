"""Time, injected: the engine, retries and the scheduler read it from a clock.

A clock has ``time()`` (epoch seconds), ``monotonic()`` and ``sleep(seconds)``.
:class:`SystemClock` is the real one; :class:`ManualClock` is for tests: its
time only moves when ``sleep`` or ``advance`` is called, so a test can check an
exact delay schedule without waiting.
"""

from __future__ import annotations

import threading
import time as _time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What flowkit needs of time."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic``, ``time.sleep``."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)
    sleep = staticmethod(_time.sleep)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; ``sleep`` advances it at once.

    Attributes:
        sleeps: every duration passed to ``sleep``, in order.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep."""
        with self._lock:
            self._now += seconds

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
