"""Cron schedules and the scheduler: DST golden tables, no double fires, catch-up, overlap, leases.
Everything runs on an injected clock, except one test of the real `flowkit scheduler` process."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowkit as fk
from flowkit.schedule import Cron
from flowkit.scheduler import Scheduler

UTC = dt.timezone.utc


def local_day(cron: Cron, day: dt.date) -> list[str]:
    """The fires on one calendar day of the schedule's zone, as local 'HH:MM+offset' strings."""
    zone = ZoneInfo(cron.tz)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    fires = cron.fires_between(start - dt.timedelta(microseconds=1), end - dt.timedelta(microseconds=1))
    return [f.strftime("%H:%M%z") for f in fires]


# (zone, spring-forward day, fall-back day)
ZONES = [
    ("America/New_York", dt.date(2026, 3, 8), dt.date(2026, 11, 1)),
    ("Europe/Paris", dt.date(2026, 3, 29), dt.date(2026, 10, 25)),
    ("Australia/Lord_Howe", dt.date(2026, 10, 4), dt.date(2026, 4, 5)),
    ("UTC", dt.date(2026, 3, 8), dt.date(2026, 11, 1)),
]

GOLDEN_DAILY_0230 = {  # "30 2 * * *": once a day; in a gap, at the gap's end; in a repeat, the first one
    "America/New_York": (["03:00-0400"], ["02:30-0500"]),
    "Europe/Paris": (["03:00+0200"], ["02:30+0200"]),
    "Australia/Lord_Howe": (["02:30+1100"], ["02:30+1030"]),
    "UTC": (["02:30+0000"], ["02:30+0000"]),
}
GOLDEN_DAILY_0130 = {  # "30 1 * * *": 01:30 repeats in New York on fall-back day: fires once, the first
    "America/New_York": (["01:30-0500"], ["01:30-0400"]),
    "Europe/Paris": (["01:30+0100"], ["01:30+0200"]),  # Paris repeats 02:00-03:00, not 01:30
    "Australia/Lord_Howe": (["01:30+1030"], ["01:30+1100"]),
    "UTC": (["01:30+0000"], ["01:30+0000"]),
}
GOLDEN_HOURLY_COUNT = {  # "0 * * * *": once per elapsed hour
    "America/New_York": (23, 25),
    "Europe/Paris": (23, 25),
    "Australia/Lord_Howe": (24, 24),  # a 30-minute shift: 23.5 and 24.5 hours, 24 o'clocks each
    "UTC": (24, 24),
}


@pytest.mark.parametrize(("zone", "spring", "fall"), ZONES)
def test_dst_golden_tables(zone, spring, fall):
    assert (local_day(Cron("30 2 * * *", tz=zone), spring), local_day(Cron("30 2 * * *", tz=zone), fall)) == \
        GOLDEN_DAILY_0230[zone]
    assert (local_day(Cron("30 1 * * *", tz=zone), spring), local_day(Cron("30 1 * * *", tz=zone), fall)) == \
        GOLDEN_DAILY_0130[zone]
    hourly = Cron("0 * * * *", tz=zone)
    assert (len(local_day(hourly, spring)), len(local_day(hourly, fall))) == GOLDEN_HOURLY_COUNT[zone]


def test_hourly_fires_in_both_occurrences_of_a_repeated_hour():
    fires = local_day(Cron("0 * * * *", tz="America/New_York"), dt.date(2026, 11, 1))
    assert fires[:4] == ["00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500"]
    lord_howe = local_day(Cron("*/30 * * * *", tz="Australia/Lord_Howe"), dt.date(2026, 4, 5))
    assert lord_howe[2:5] == ["01:00+1100", "01:30+1100", "01:30+1030"]
    spring = local_day(Cron("*/30 * * * *", tz="Australia/Lord_Howe"), dt.date(2026, 10, 4))
    assert spring[2:6] == ["01:00+1030", "01:30+1030", "02:30+1100", "03:00+1100"]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([z for z, _, _ in ZONES]), st.integers(0, 23), st.integers(0, 59),
       st.dates(dt.date(2026, 1, 1), dt.date(2027, 12, 31)))
def test_a_daily_job_fires_exactly_once_on_every_calendar_day(zone, hour, minute, day):
    cron = Cron(f"{minute} {hour} * * *", tz=zone)
    fires = local_day(cron, day)
    assert len(fires) == 1


def test_next_after_and_fires_between_return_aware_datetimes_in_the_zone():
    cron = Cron("0 3 * * *", tz="Europe/Paris")
    nxt = cron.next_after(dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert nxt == dt.datetime(2026, 6, 2, 3, 0, tzinfo=ZoneInfo("Europe/Paris")) and nxt.tzinfo is not None
    assert cron.next_after(nxt) == dt.datetime(2026, 6, 3, 3, 0, tzinfo=ZoneInfo("Europe/Paris"))
    week = cron.fires_between(dt.datetime(2026, 6, 1, tzinfo=UTC), dt.datetime(2026, 6, 8, tzinfo=UTC))
    assert len(week) == 7
    assert Cron("@daily").next_after(dt.datetime(2026, 6, 1, 12, tzinfo=UTC)) == dt.datetime(2026, 6, 2, tzinfo=UTC)
    assert Cron("*/10 * * * * *").next_after(dt.datetime(2026, 6, 1, 0, 0, 1, tzinfo=UTC)).second == 10
    with pytest.raises(fk.ScheduleError, match="no time zone"):
        cron.next_after(dt.datetime(2026, 6, 1))


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"expr": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
    ({"expr": "every day"}, "invalid cron expression 'every day'"),
    ({"expr": ""}, "non-empty"),
    ({"expr": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"expr": "0 3 * * *", "catchup": "some"}, "catchup='some'"),
    ({"expr": "0 3 * * *", "overlap": "maybe"}, "overlap='maybe'"),
    ({"expr": "0 3 * * *", "max_catchup": 0}, "max_catchup"),
    ({"expr": "0 3 * * *", "max_catchup": 2}, "with catchup='latest' it would be ignored"),
    ({"expr": "0 3 * * *", "catchup": "none", "max_catchup": 2}, "with catchup='none' it would be ignored"),
])
def test_bad_schedules_fail_at_definition_quoting_the_culprit(kwargs, words):
    with pytest.raises(fk.ScheduleError) as info:
        Cron(**kwargs)
    assert words in str(info.value) and isinstance(info.value, ValueError)


# --- the scheduler, on a manual clock --------------------------------------------------------------

FLOWS = textwrap.dedent('''
    import threading
    import flowkit as fk

    CALLS = []
    GATE = threading.Event()
    GATE.set()

    @fk.task(cache=False)
    def work(tag: str):
        GATE.wait(30)
        CALLS.append(tag)
        return tag

    @fk.flow
    def job(tag: str = "x"):
        return work(tag)

    @fk.flow
    def broken():
        raise RuntimeError("the flow body fails")

    @fk.flow(schedule=fk.Cron("*/1 * * * * *"))
    def every_second():
        return work("tick")
''')


@pytest.fixture
def flows(tmp_path):
    path = tmp_path / "scheduled_flows.py"
    path.write_text(FLOWS)
    from flowkit.flowref import load_module

    return load_module(str(path))


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


@pytest.fixture
def clock():
    return fk.ManualClock(start=at("2026-06-01T02:59:00+00:00"))


def test_a_due_slot_fires_once_with_schedule_trigger_even_after_a_restart(flows, clock):
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 3 * * *", params={"tag": "nightly"})
    assert scheduler.tick() == []  # 02:59: nothing due yet
    clock.advance(61)
    (fire,) = scheduler.tick()
    assert (fire.schedule, fire.slot, fire.status) == ("job", dt.datetime(2026, 6, 1, 3, tzinfo=UTC), "completed")
    assert flows.CALLS == ["nightly"]
    run = fk.runs(limit=1)[0]
    assert run.id == fire.run_id and run.trigger == "schedule" and run.info["scheduled"] == at("2026-06-01T03:00+00:00")
    assert scheduler.tick() == []
    restarted = Scheduler(clock=clock)
    clock.advance(10)
    assert restarted.tick() == [] and flows.CALLS == ["nightly"]
    clock.advance(86400)
    assert [f.status for f in restarted.tick()] == ["completed"] and flows.CALLS == ["nightly", "nightly"]


def test_a_schedule_never_fires_for_slots_before_it_was_added(flows, clock):
    clock.advance(3600)  # 03:59, after today's 03:00
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 3 * * *")
    assert scheduler.tick() == [] and flows.CALLS == []


@pytest.mark.parametrize(("catchup", "max_catchup", "ran", "missed"), [
    ("none", None, [], ["01:00", "02:00", "03:00"]),
    ("latest", None, ["03:00"], ["01:00", "02:00"]),
    ("all", None, ["01:00", "02:00", "03:00"], []),
    ("all", 2, ["02:00", "03:00"], ["01:00"]),
])
def test_missed_slots_follow_the_catchup_policy(flows, catchup, max_catchup, ran, missed):
    clock = fk.ManualClock(start=at("2026-06-01T00:30:00+00:00"))
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, Cron("0 * * * *", catchup=catchup, max_catchup=max_catchup))
    clock.advance(3 * 3600)  # the scheduler was down from 00:30 to 03:30
    fires = scheduler.tick()
    assert sorted(f.slot.strftime("%H:%M") for f in fires if f.status == "completed") == ran
    assert sorted(f.slot.strftime("%H:%M") for f in fires if f.status == "missed") == missed
    assert len(flows.CALLS) == len(ran)
    recorded = {f.slot.strftime("%H:%M"): f.status for f in scheduler.fires("job")}
    assert recorded == {**{m: "missed" for m in missed}, **{r: "completed" for r in ran}}


def test_an_on_time_slot_fires_with_catchup_none(flows):
    clock = fk.ManualClock(start=at("2026-06-01T00:30:00+00:00"))
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, Cron("0 * * * *", catchup="none"))
    clock.advance(30 * 60 + 5)  # 01:00:05, within the grace period
    assert [f.status for f in scheduler.tick()] == ["completed"]


def test_two_schedulers_on_one_store_fire_each_slot_once_and_a_standby_takes_over(flows, clock):
    active = Scheduler(clock=clock, lease_seconds=30, name="active")
    standby = Scheduler(clock=clock, lease_seconds=30, name="standby")
    active.add(flows.job, "*/5 * * * *")
    clock.advance(61)  # 03:00:01
    assert [f.status for f in active.tick()] == ["completed"]  # takes the lease and fires 03:00
    assert standby.tick() == []  # the lease is held: standby
    clock.advance(10)
    assert active.tick() == [] and standby.tick() == []  # nothing new is due; 03:00 is not fired again
    clock.advance(300)  # 03:05:11: the active one went silent for longer than its lease
    assert [(f.slot.strftime("%H:%M"), f.status) for f in standby.tick()] == [("03:05", "completed")]
    assert active.tick() == []  # it comes back to find the lease taken
    assert len(flows.CALLS) == 2


def test_a_slot_already_claimed_is_never_fired_again(flows, clock):
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 3 * * *")
    scheduler.store.db.write(lambda c: c.execute(
        "INSERT INTO fires (schedule, slot, status, holder) VALUES ('job', ?, 'completed', 'elsewhere')",
        (at("2026-06-01T03:00:00+00:00"),)))
    clock.advance(61)
    assert scheduler.tick() == [] and flows.CALLS == []


def test_overlap_skip_and_allow(flows, clock):
    flows.GATE.clear()  # runs block until the gate opens
    try:
        scheduler = Scheduler(clock=clock, background=True)
        scheduler.add(flows.job, Cron("* * * * *", overlap="skip"), name="skipper")
        scheduler.add(flows.job, Cron("* * * * *", overlap="allow"), name="allower")
        clock.advance(61)  # 03:00:01
        assert sorted(f.status for f in scheduler.tick()) == ["running", "running"]
        clock.advance(60)  # 03:01:01, both first runs still blocked
        statuses = {f.schedule: f.status for f in scheduler.tick()}
        assert statuses == {"skipper": "skipped", "allower": "running"}
    finally:
        flows.GATE.set()
        scheduler._pool.shutdown(wait=True)
    assert {f.status for f in scheduler.fires("allower")} == {"completed"}
    assert [f.status for f in scheduler.fires("skipper")] == ["completed", "skipped"]


def test_pause_resume_remove_and_a_broken_flow_does_not_stop_the_scheduler(flows, clock):
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 * * * *")
    scheduler.add(flows.broken, "0 * * * *")
    scheduler.pause("job")
    clock.advance(61)
    assert [(f.schedule, f.status) for f in scheduler.tick()] == [("broken", "failed")]
    scheduler.resume("job")
    clock.advance(3600)
    assert sorted((f.schedule, f.status) for f in scheduler.tick()) == [("broken", "failed"), ("job", "completed")]
    scheduler.remove("broken")
    with pytest.raises(KeyError, match="no schedule 'broken'; the schedules are: job"):
        scheduler.remove("broken")
    assert [s.name for s in scheduler.schedules()] == ["job"]


def test_flow_declared_schedule_and_run_forever_stop(flows, clock):
    scheduler = Scheduler(clock=clock, lease_seconds=3)
    added = scheduler.ensure(flows.every_second)
    assert added.cron.expr == "*/1 * * * * *" and scheduler.ensure(flows.every_second) == added
    ticks = []
    original = scheduler.tick

    def tick():
        fired = original()
        ticks.append(fired)
        if len(ticks) == 5:
            scheduler.stop()
        return fired

    scheduler.tick = tick
    scheduler.run_forever(handle_signals=False)
    assert sum(len(t) for t in ticks) >= 3 and flows.CALLS.count("tick") >= 3
    assert clock.sleeps and all(s <= 1.0 for s in clock.sleeps)


def test_the_real_scheduler_process_fires_every_second_and_stops_on_sigterm(tmp_path, home):
    (tmp_path / "secs.py").write_text(textwrap.dedent('''
        import flowkit as fk

        @fk.task(cache=False)
        def beat():
            return 1

        @fk.flow(schedule=fk.Cron("*/1 * * * * *"))
        def heartbeat():
            return beat()
    '''))
    env = {**os.environ, "FLOWKIT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "flowkit", "scheduler", "secs.py"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(fk.runs(flow="heartbeat", home=home)) < 3:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "scheduler stopped" in out
    runs = fk.runs(flow="heartbeat", home=home)
    assert len(runs) >= 3 and {r.trigger for r in runs} == {"schedule"}
    scheduled = sorted(r.info["scheduled"] for r in runs)
    assert len(set(scheduled)) == len(scheduled)  # no slot twice


def test_scheduled_runs_get_parameters_of_the_types_given(tmp_path):
    (tmp_path / "typed_flows.py").write_text(textwrap.dedent('''
        import datetime
        import pathlib
        import flowkit as fk

        SEEN = []

        @fk.task(cache=False)
        def look(day, where, pair):
            SEEN.append((type(day).__name__, type(where).__name__, type(pair).__name__))

        @fk.flow
        def typed(day: datetime.date = datetime.date(2026, 1, 1), where: pathlib.Path = pathlib.Path("/tmp"),
                  pair: tuple = (1, 2)):
            return look(day, where, pair)
    '''))
    from flowkit.flowref import load_module

    module = load_module(str(tmp_path / "typed_flows.py"))
    clock = fk.ManualClock(start=at("2026-06-01T02:59:00+00:00"))
    scheduler = Scheduler(clock=clock)
    scheduler.add(module.typed, "0 3 * * *", params={"day": dt.date(2026, 5, 1)})
    clock.advance(61)
    assert [f.status for f in scheduler.tick()] == ["completed"]
    assert module.SEEN == [("date", "PosixPath", "tuple")]


def test_a_time_in_a_gap_fires_exactly_at_the_end_of_the_gap():
    (fire,) = Cron("10 2 * * *", tz="Europe/Paris").fires_between(
        dt.datetime(2026, 3, 29, 0, tzinfo=UTC), dt.datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert fire == dt.datetime(2026, 3, 29, 3, 0, tzinfo=ZoneInfo("Europe/Paris")) and fire.microsecond == 0


def test_re_adding_a_paused_schedule_keeps_it_paused(flows, clock):
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 3 * * *")
    scheduler.pause("job")
    scheduler.add(flows.job, "0 4 * * *")
    assert scheduler.get("job").paused and scheduler.get("job").cron.expr == "0 4 * * *"


def test_each_fire_logs_its_outcome_with_the_run_id_and_duration(flows, clock, caplog):
    import logging

    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 3 * * *", name="good")
    clock.advance(61)
    with caplog.at_level(logging.INFO, logger="flowkit"):
        (fire,) = scheduler.tick()
    [line] = [r.getMessage() for r in caplog.records if "schedule 'good'" in r.getMessage()]
    assert line.startswith(f"flowkit: schedule 'good' slot 2026-06-01T03:00:00+00:00: run {fire.run_id} completed in ")
    assert line.endswith("s")


def test_a_failed_fire_logs_failed_with_the_reason(tmp_path, caplog):
    import logging

    (tmp_path / "failing_flows.py").write_text(textwrap.dedent('''
        import flowkit as fk

        @fk.task(cache=False)
        def explode():
            raise ValueError("no data today")

        @fk.flow
        def nightly():
            return explode()
    '''))
    from flowkit.flowref import load_module

    module = load_module(str(tmp_path / "failing_flows.py"))
    clock = fk.ManualClock(start=at("2026-06-01T02:59:00+00:00"))
    scheduler = Scheduler(clock=clock)
    scheduler.add(module.nightly, "0 3 * * *")
    clock.advance(61)
    with caplog.at_level(logging.INFO, logger="flowkit"):
        (fire,) = scheduler.tick()
    [record] = [r for r in caplog.records if "schedule 'nightly'" in r.getMessage()]
    assert record.levelno == logging.WARNING and fire.status == "failed"
    assert f"run {fire.run_id} failed in " in record.getMessage()
    assert "task 'explode' (node 'explode') raised ValueError: no data today" in record.getMessage()


def test_a_scheduled_run_records_the_flows_defaults_like_a_cli_run(flows, clock):
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 3 * * *")
    clock.advance(61)
    (fire,) = scheduler.tick()
    assert fk.runs(limit=1)[0].params == {"tag": "x"}


def test_a_clock_given_where_the_home_folder_goes_is_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match=r"give the clock as Scheduler\(clock=\.\.\.\)"):
        Scheduler(fk.ManualClock())
