"""The scheduler: fires due runs of scheduled flows, never twice, never silently missing one.

Schedules live in the store (``schedules``), so any process can add one and a
restarted scheduler picks them up; a schedule names its flow by an importable
reference (``package.module:flow`` or ``/path/file.py:flow``).

Each :meth:`Scheduler.tick`:

1. takes or renews the *lease* (one row): only its holder fires; another
   scheduler on the same store is a standby and takes over once the lease
   expires;
2. for each active schedule, lists the slots due since it was last checked
   (never before the schedule was added), applies the catch-up policy, and
   claims each slot by inserting ``(schedule, slot)`` into ``fires``, whose
   primary key makes a second claim fail: a restart or a second scheduler
   cannot fire a slot twice;
3. launches the claimed runs (in-process by default, finished when ``tick``
   returns) with ``trigger="schedule"`` and the slot as their scheduled time.

Missed slots are those older than ``misfire_grace`` seconds. Their fate is the
schedule's ``catchup``: ``"none"`` skips them, ``"latest"`` runs the most
recent one, ``"all"`` runs each (at most ``max_catchup``, the most recent).
Skipped slots are recorded too (status ``missed``), so nothing vanishes
without a trace. ``overlap="skip"`` records a slot as ``skipped`` while the
schedule's previous run is still going.

A schedule's parameters are pickled (a date stays a date), and signed with the
store's key (:mod:`flowkit.store.signing`) together with the schedule's name and
flow reference. A row whose signature does not match (changed in the database,
or stored with another key) is *refused*: its parameters are not unpickled, its
flow is not imported, its due slots are recorded ``failed`` with the reason,
and the other schedules fire as usual.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import pickle
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flowkit.clock import Clock, SystemClock
from flowkit.errors import ScheduleError
from flowkit.faults import FAULTS, fault
from flowkit.flow import Flow
from flowkit.flowref import flow_reference, load_flow
from flowkit.runner import run_flow
from flowkit.schedule import Cron
from flowkit.store import Store
from flowkit.store.protocols import ScheduleRecord

__all__ = ["Fire", "Schedule", "Scheduler"]

log = logging.getLogger("flowkit")
_UTC = dt.timezone.utc


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A stored schedule: which flow, with which parameters, on which cron."""

    name: str
    flow_ref: str
    flow: str
    cron: Cron
    params: dict[str, Any]
    paused: bool
    created: float
    checked: float
    refused: str | None = None  # why its stored parameters were not trusted (then ``params`` is empty)

    def next_fire(self, after: float) -> dt.datetime:
        """The next slot after ``after`` (epoch seconds), or after the schedule was last checked."""
        start = max(after, self.checked)
        return self.cron.next_after(dt.datetime.fromtimestamp(start, _UTC))


@dataclasses.dataclass(frozen=True)
class Fire:
    """One slot the scheduler handled: ``status`` is ``completed``, ``failed``, ``running``
    (launched in the background), ``missed`` or ``skipped``."""

    schedule: str
    slot: dt.datetime
    status: str
    run_id: str | None = None


def _ts(when: dt.datetime) -> float:
    return when.timestamp()


def _signed_as(name: str, flow_ref: str) -> str:
    """What a schedule's parameters are signed together with: its name and its flow's reference."""
    return f"schedule\x00{name}\x00{flow_ref}"


class Scheduler:
    """Fires the store's schedules when they are due.

    Args:
        home: the store folder (default ``$FLOWKIT_HOME``, else ``./.flowkit``).
        clock: where time comes from (inject an ``fk.ManualClock`` in tests).
        lease_seconds: how long a tick's lease lasts; a standby takes over after it.
        misfire_grace: a slot older than this many seconds at its tick counts as missed.
        background: launch runs on threads instead of waiting for them in ``tick``
            (``run_forever`` uses this so a long run does not delay other schedules).
        name: this scheduler's name in the lease and the fires it records (default
            ``host:pid:random``): a standby that takes over shows under its own.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, clock: Clock | None = None, *,
                 lease_seconds: float = 30.0, misfire_grace: float = 60.0, background: bool = False,
                 name: str | None = None) -> None:
        if isinstance(home, Clock):
            raise TypeError(f"Scheduler({home!r}): the first argument is the store's home folder; give the clock "
                            f"as Scheduler(clock=...)")
        self.store = Store.open(home)
        self.clock = clock or SystemClock()
        self.lease_seconds = lease_seconds
        self.misfire_grace = misfire_grace
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="flowkit-scheduler") if background else None
        self._running: dict[str, Future[Any]] = {}
        self._stop = threading.Event()

    # --- schedules -----------------------------------------------------------------------------

    def add(self, flow: Flow[..., Any] | str, cron: Cron | str | None = None, params: dict[str, Any] | None = None,
            name: str | None = None, *, tz: str | None = None) -> Schedule:
        """Store a schedule (replacing one of the same name); it never fires for slots before now.

        ``flow`` is a Flow or a reference (``"pkg.module:flow"``, ``"file.py:flow"``);
        ``cron`` a :class:`Cron` or an expression (default: the flow's own ``schedule``).
        """
        target = load_flow(flow) if isinstance(flow, str) else flow
        ref = flow if isinstance(flow, str) else flow_reference(flow)
        if cron is None:
            cron = target.options.schedule
            if cron is None:
                raise ScheduleError(f"flow {target.name!r} has no schedule; pass cron=, e.g. cron='0 3 * * *'")
        if isinstance(cron, str):
            cron = Cron(cron, tz=tz)
        params = dict(params or {})
        target.bind(**params)  # a wrong parameter fails now, not at 3 in the morning
        name = name or target.name
        now = self.clock.time()
        # Only the parameters given are kept (the flow's defaults apply at each run), pickled so a
        # date stays a date; the JSON copy is for people.
        self.store.db.put_schedule(ScheduleRecord(
            name, ref, target.name, cron.expr, cron.tz, cron.catchup, cron.overlap, cron.max_catchup,
            json.dumps(params, default=str), self.store.signing().seal(_signed_as(name, ref), pickle.dumps(params)),
            False, now, now))  # a paused one stays paused
        return self.get(name)

    def ensure(self, flow: Flow[..., Any]) -> Schedule:
        """Store the schedule a flow declares (``@fk.flow(schedule=...)``) unless it is stored already."""
        existing = {s.name: s for s in self.schedules()}.get(flow.name)
        cron = flow.options.schedule
        if existing is not None and existing.cron == cron and existing.flow_ref == flow_reference(flow) and \
                existing.refused is None:
            return existing
        return self.add(flow, cron)

    def schedules(self) -> list[Schedule]:
        """Every stored schedule, by name (one whose parameters are refused has ``refused`` set, see above)."""
        out = []
        for r in self.store.db.schedules():
            # A row stored before Cron refused max_catchup without catchup="all" may have both.
            cron = Cron(r.expr, tz=r.tz, catchup=r.catchup, overlap=r.overlap,
                        max_catchup=r.max_catchup if r.catchup == "all" else None)
            params, refused = self._params(r)
            out.append(Schedule(r.name, r.flow_ref, r.flow, cron, params, r.paused, r.created, r.checked, refused))
        return out

    def _params(self, r: ScheduleRecord) -> tuple[dict[str, Any], str | None]:
        """A stored schedule's parameters, unpickled only if their signature is this store's."""
        signer = self.store.signing()
        data = signer.unseal(_signed_as(r.name, r.flow_ref), r.params_pickle) if r.params_pickle else None
        if data is None:
            return {}, (f"schedule {r.name!r}: its stored parameters are not signed with this store's key "
                        f"({signer.source}): they were stored by an older flowkit or with another key, or changed "
                        f"outside flowkit (its flow reference included), so they were not unpickled and its flow "
                        f"{r.flow_ref} was not imported. Add the schedule again (Scheduler.add, flowkit schedule "
                        f"add) to store it signed")
        return pickle.loads(data), None

    def get(self, name: str) -> Schedule:
        for schedule in self.schedules():
            if schedule.name == name:
                return schedule
        names = ", ".join(s.name for s in self.schedules()) or "none"
        raise KeyError(f"no schedule {name!r}; the schedules are: {names}")

    def remove(self, name: str) -> None:
        self.get(name)
        self.store.db.delete_schedule(name)

    def pause(self, name: str) -> None:
        self.get(name)
        self.store.db.set_paused(name, True)

    def resume(self, name: str) -> None:
        """Resume a paused schedule; slots that passed while it was paused are not fired."""
        self.get(name)
        now = self.clock.time()
        self.store.db.set_paused(name, False, checked=now)

    def fires(self, name: str | None = None) -> list[Fire]:
        """Recorded fires, oldest first."""
        return [Fire(r.schedule, dt.datetime.fromtimestamp(r.slot, _UTC), r.status, r.run_id)
                for r in self.store.db.fires(name or None)]

    # --- the lease -----------------------------------------------------------------------------

    def _take_lease(self, now: float) -> bool:
        return self.store.db.take_lease(self.id, now, self.lease_seconds)

    def release(self) -> None:
        """Give up the lease (a standby can take over at once)."""
        self.store.db.release_lease(self.id)

    # --- firing --------------------------------------------------------------------------------

    def _due(self, schedule: Schedule, now: float) -> tuple[list[dt.datetime], list[dt.datetime]]:
        """(slots to run, slots to record as missed) since the schedule was last checked."""
        start = dt.datetime.fromtimestamp(schedule.checked, _UTC)
        slots = schedule.cron.fires_between(start, dt.datetime.fromtimestamp(now, _UTC))
        on_time = [s for s in slots if now - _ts(s) <= self.misfire_grace]
        late = [s for s in slots if now - _ts(s) > self.misfire_grace]
        cron = schedule.cron
        if not late:
            return slots, []
        if cron.catchup == "none":
            return on_time, late
        if cron.catchup == "latest":
            return slots[-1:], slots[:-1]
        keep = slots if cron.max_catchup is None else slots[-cron.max_catchup:]
        return keep, slots[: len(slots) - len(keep)]

    def _claim(self, schedule: Schedule, run: list[dt.datetime], missed: list[dt.datetime], now: float) -> list[
            tuple[dt.datetime, str]]:
        """Record the slots under their unique key; return the ones this scheduler got, with their status."""
        skip = schedule.cron.overlap == "skip"
        future = self._running.get(schedule.name)
        slots = {_ts(slot): slot for slot in run}
        got = self.store.db.claim_fires(schedule.name, list(slots), [_ts(slot) for slot in missed], holder=self.id,
                                        now=now, skip=skip and future is not None and not future.done(),
                                        skip_if_other_running=skip)
        return [(slots[t], "pending") for t in got]

    def _launch(self, schedule: Schedule, slots: list[dt.datetime]) -> list[Fire]:
        """Run the claimed slots of one schedule, one after the other (in the background if asked)."""
        run_ids = [uuid.uuid4().hex for _ in slots]
        if FAULTS:
            fault("scheduler.after_claim")
        self.store.db.set_fire_status(schedule.name, [_ts(slot) for slot in slots], "running", run_ids)
        if FAULTS:
            fault("scheduler.after_launch")

        def go(slot: dt.datetime, run_id: str) -> str:
            try:
                if schedule.refused is not None:
                    raise ScheduleError(schedule.refused)
                flow = load_flow(schedule.flow_ref)
                # A flow without a store of its own records where its schedule lives.
                run = run_flow(flow, dict(schedule.params), trigger="schedule", run_id=run_id, scheduled=_ts(slot),
                               store=self.store if flow.options.store is None else None)
                status = run.status
                took = f" in {run.duration:.2f}s" if run.duration is not None else ""
                if status == "completed":
                    log.info("flowkit: schedule %r slot %s: run %s completed%s", schedule.name, slot.isoformat(),
                             run.id, took)
                else:
                    log.warning("flowkit: schedule %r slot %s: run %s %s%s: %s", schedule.name, slot.isoformat(),
                                run.id, status, took, run.error)
            except Exception as exc:  # noqa: BLE001 - a broken schedule must not stop the scheduler
                log.error("flowkit: schedule %r could not run its flow %s: %s: %s", schedule.name,
                          schedule.flow_ref, type(exc).__name__, exc)
                status = "failed"
            self.store.db.set_fire_status(schedule.name, [_ts(slot)], status)
            return status

        if self._pool is None:
            return [Fire(schedule.name, slot, go(slot, run_id), run_id) for slot, run_id in zip(slots, run_ids)]
        self._running[schedule.name] = self._pool.submit(lambda: [go(s, r) for s, r in zip(slots, run_ids)])
        return [Fire(schedule.name, slot, "running", run_id) for slot, run_id in zip(slots, run_ids)]

    def tick(self) -> list[Fire]:
        """Fire every due slot now; return what was done (nothing while another scheduler holds the lease)."""
        now = self.clock.time()
        if not self._take_lease(now):
            return []
        self.store.reconcile()  # runs (and their fires) whose process died read as crashed, not running
        self.store.db.abandon_fires(self.id)  # and fires whose scheduler died before their run began
        fired: list[Fire] = []
        for schedule in self.schedules():
            if schedule.paused:
                continue
            run, missed = self._due(schedule, now)
            if not run and not missed:
                continue
            claimed = self._claim(schedule, run, missed, now)
            fired.extend(Fire(schedule.name, slot, "missed") for slot in missed)
            claimed_slots = {slot for slot, _ in claimed}
            fired.extend(Fire(schedule.name, slot, "skipped") for slot in run if slot not in claimed_slots
                         and self._was(schedule.name, slot, "skipped"))
            if claimed:
                fired.extend(self._launch(schedule, [slot for slot, _ in claimed]))
        return fired

    def _was(self, name: str, slot: dt.datetime, status: str) -> bool:
        fire = self.store.db.fire(name, _ts(slot))
        return fire is not None and fire.status == status and fire.holder == self.id

    def next_due(self) -> float | None:
        """When the next slot of any active schedule comes (epoch seconds)."""
        now = self.clock.time()
        times = [_ts(s.next_fire(now)) for s in self.schedules() if not s.paused]
        return min(times) if times else None

    def stop(self) -> None:
        """Make ``run_forever`` return after its current tick."""
        self._stop.set()

    def run_forever(self, *, poll: float | None = None, handle_signals: bool = True) -> None:
        """Tick whenever a slot is due (and often enough to keep the lease) until stopped.

        SIGTERM and SIGINT stop it cleanly: the current tick finishes, runs launched in the
        background are waited for, and the lease is released.
        """
        poll = poll or max(0.2, self.lease_seconds / 3)
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: self._stop.set())
        try:
            while not self._stop.is_set():
                for fire in self.tick():
                    log.info("flowkit: schedule %r slot %s: %s", fire.schedule, fire.slot.isoformat(), fire.status)
                due = self.next_due()
                wait = poll if due is None else min(poll, max(0.0, due - self.clock.time()))
                self._sleep(wait)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self.release()

    def _sleep(self, seconds: float) -> None:
        if isinstance(self.clock, SystemClock):
            self._stop.wait(seconds)  # wakes at once on stop()
        else:
            self.clock.sleep(seconds)


def load_scheduled_flows(paths: list[str], scheduler: Scheduler,
                         on_flow: Callable[[Flow[..., Any]], None] | None = None) -> list[Schedule]:
    """Register the schedules that the flows in these files declare (``@fk.flow(schedule=...)``)."""
    from flowkit.flowref import flows_in, load_module

    found = []
    for path in paths:
        for flow in flows_in(load_module(path)).values():
            if flow.options.schedule is not None:
                found.append(scheduler.ensure(flow))
                if on_flow is not None:
                    on_flow(flow)
    return found
