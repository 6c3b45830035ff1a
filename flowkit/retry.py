"""Retry policy as pure functions: which failures are retried, and after how long.

With ``retries=N`` a task gets up to ``N + 1`` attempts. The delay before retry
``k`` (``k = 0`` for the first retry) is

- ``retry_delay[k]`` when ``retry_delay`` is a list (its last value repeats),
- else ``retry_delay * backoff ** k``,

then up to ``jitter`` times that is added at random, and the result is capped
at ``max_retry_delay``. For example ``retry_delay=1, backoff=2, jitter=0``
waits 1, 2, 4, 8... seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit.errors import CheckFailedError

if TYPE_CHECKING:
    from flowkit.task import TaskOptions

__all__ = ["retry_delay", "should_retry"]


def retry_delay(options: TaskOptions, k: int, rand: float = 0.0) -> float:
    """Seconds to wait before retry ``k`` (0-based); ``rand`` in [0, 1) draws the jitter."""
    spec = options.retry_delay
    if isinstance(spec, tuple):
        base = spec[min(k, len(spec) - 1)] if spec else 0.0
    else:
        base = spec * options.backoff**k
    delay = base + base * options.jitter * rand
    if options.max_retry_delay is not None:
        delay = min(delay, options.max_retry_delay)
    return delay


def should_retry(options: TaskOptions, exc: BaseException, attempts: int) -> bool:
    """Whether a task that failed with ``exc`` after ``attempts`` attempts gets another."""
    if attempts > options.retries:
        return False
    if not isinstance(exc, Exception):  # SystemExit and friends are never retried
        return False
    if isinstance(exc, CheckFailedError):  # the same output would fail the same check again
        return False
    retry_on = options.retry_on
    if isinstance(retry_on, tuple):
        return isinstance(exc, retry_on)
    try:
        return bool(retry_on(exc))
    except Exception:  # noqa: BLE001 - a broken predicate must not hide the task's own error
        return False
