"""``Cron``: when a flow runs, in a time zone, with a written DST policy.

Expressions are parsed and iterated by croniter in *local wall-clock time* of
the schedule's zone; each wall-clock time is then turned into one instant:

- a time that does not exist (in a spring-forward gap) fires at the first
  valid instant after it, the end of the gap (02:30 on a night that jumps from
  02:00 to 03:00 fires at 03:00);
- a time that exists twice (in a fall-back repeat) fires once, at its first
  occurrence, unless the expression runs every hour (its hour field is ``*``):
  then it fires in both occurrences, once per elapsed hour;
- two wall-clock times that become the same instant fire once.

So a daily job fires exactly once on every calendar day, and an hourly job
once per hour that really elapses (23 times on a spring-forward day, 25 on a
fall-back day). ``next_after`` and ``fires_between`` are pure functions of
their arguments; they return time-zone-aware datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from flowkit.errors import ScheduleError

__all__ = ["CATCHUP", "Cron", "OVERLAP"]

#: What to do with slots missed while no scheduler ran: skip them, run the most recent, run each.
CATCHUP = ("none", "latest", "all")
#: What to do when a slot comes while the previous run of the schedule still runs.
OVERLAP = ("skip", "allow")

_UTC = dt.timezone.utc


class Cron:
    """A cron schedule: ``fk.Cron("0 3 * * *", tz="Europe/Paris")``.

    Args:
        expr: five fields (minute hour day month weekday), an alias such as
            ``@daily`` or ``@hourly``, or six fields with seconds first
            (``"*/10 * * * * *"``: every ten seconds).
        tz: an IANA time zone name (default UTC).
        catchup: missed slots: ``"none"``, ``"latest"`` (the default) or ``"all"``.
        overlap: ``"skip"`` (the default) a slot while the previous run goes on, or ``"allow"``.
        max_catchup: with ``catchup="all"``, run at most this many of the most recent missed slots.

    Raises:
        ScheduleError: a bad expression, time zone or policy, quoting it.
    """

    __slots__ = ("expr", "tz", "catchup", "overlap", "max_catchup", "_zone", "_seconds", "_hourly")

    def __init__(self, expr: str, tz: str | None = None, catchup: str = "latest", overlap: str = "skip",
                 max_catchup: int | None = None) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ScheduleError(f"cron expression must be a non-empty string, got {expr!r}")
        self.expr = " ".join(expr.split())
        fields = self.expr.split(" ")
        self._seconds = len(fields) == 6
        if self.expr.startswith("@"):
            valid = croniter.is_valid(self.expr)
        elif len(fields) in (5, 6):
            valid = croniter.is_valid(self.expr, second_at_beginning=self._seconds)
        else:
            valid = False
        if not valid:
            raise ScheduleError(f"invalid cron expression {expr!r}: use 5 fields (minute hour day month "
                                f"weekday, e.g. '0 3 * * *'), 6 with seconds first, or an alias like '@daily'")
        self.tz = tz or "UTC"
        try:
            self._zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ScheduleError(f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Paris' or "
                                f"'America/New_York'") from None
        if catchup not in CATCHUP:
            raise ScheduleError(f"catchup={catchup!r} is not one of {', '.join(CATCHUP)}")
        if overlap not in OVERLAP:
            raise ScheduleError(f"overlap={overlap!r} is not one of {', '.join(OVERLAP)}")
        if max_catchup is not None and (isinstance(max_catchup, bool) or not isinstance(max_catchup, int)
                                        or max_catchup < 1):
            raise ScheduleError(f"max_catchup must be an int >= 1 or None, got {max_catchup!r}")
        if max_catchup is not None and catchup != "all":
            raise ScheduleError(f"max_catchup={max_catchup} limits the missed slots that catchup='all' runs; with "
                                f"catchup={catchup!r} it would be ignored: give catchup='all', or leave it out")
        self.catchup = catchup
        self.overlap = overlap
        self.max_catchup = max_catchup
        hour_field = {"@hourly": "*"}.get(self.expr, fields[2 if self._seconds else 1] if len(fields) > 1 else "")
        self._hourly = hour_field in ("*", "*/1")

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k, default in
                        (("catchup", "latest"), ("overlap", "skip"), ("max_catchup", None))
                        if getattr(self, k) != default)
        return f"Cron({self.expr!r}, tz={self.tz!r}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cron) and (self.expr, self.tz, self.catchup, self.overlap, self.max_catchup) == (
            other.expr, other.tz, other.catchup, other.overlap, other.max_catchup)

    def __hash__(self) -> int:
        return hash((self.expr, self.tz))

    def _aware(self, when: dt.datetime) -> dt.datetime:
        if when.tzinfo is None:
            raise ScheduleError(f"{when!r} has no time zone; pass an aware datetime (e.g. with tzinfo=UTC)")
        return when

    def _instants(self, wall: dt.datetime) -> list[dt.datetime]:
        """The instant(s) a local wall-clock time stands for, under the DST policy."""
        zone = self._zone
        first = wall.replace(tzinfo=zone, fold=0)
        second = wall.replace(tzinfo=zone, fold=1)
        utc_first, utc_second = first.astimezone(_UTC), second.astimezone(_UTC)
        if utc_first == utc_second:
            return [first]
        if utc_first.astimezone(zone).replace(tzinfo=None) != wall:
            # In a gap: zoneinfo maps fold=0 past the gap and fold=1 before it; the gap ends in between.
            # Transitions fall on whole seconds: search the first second whose local time >= wall.
            low = int(min(utc_first, utc_second).timestamp())
            high = int(max(utc_first, utc_second).timestamp())
            while high - low > 1:
                mid = (low + high) // 2
                if dt.datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
                    high = mid
                else:
                    low = mid
            return [dt.datetime.fromtimestamp(high, zone)]
        return [first, second] if self._hourly else [first]

    def _walk(self, after: dt.datetime) -> Iterator[dt.datetime]:
        """Instants in order, starting a little before ``after`` (callers filter)."""
        start = after.astimezone(self._zone).replace(tzinfo=None) - dt.timedelta(hours=3)
        it = croniter(self.expr, start, second_at_beginning=self._seconds) if not self.expr.startswith("@") \
            else croniter(self.expr, start)
        last: dt.datetime | None = None
        while True:
            for instant in self._instants(it.get_next(dt.datetime)):
                # Compare in UTC: datetimes sharing a tzinfo compare by wall time, ignoring fold.
                utc = instant.astimezone(_UTC)
                if last is None or utc > last:
                    last = utc
                    yield instant

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first fire strictly after ``after`` (an aware datetime), in the schedule's zone."""
        after = self._aware(after).astimezone(_UTC)
        for instant in self._walk(after):
            if instant.astimezone(_UTC) > after:
                return instant
        raise AssertionError("unreachable")  # pragma: no cover

    def fires_between(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Every fire in ``(start, end]``, in order."""
        start, end = self._aware(start).astimezone(_UTC), self._aware(end).astimezone(_UTC)
        out = []
        for instant in self._walk(start):
            utc = instant.astimezone(_UTC)
            if utc > end:
                return out
            if utc > start:
                out.append(instant)
        return out  # pragma: no cover
