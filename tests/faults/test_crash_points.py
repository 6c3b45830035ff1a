"""Kill a run at every crash point with every signal, then run it again: nothing committed is lost.

Each scenario runs ``pipeline.py`` in a subprocess with ``FLOWKIT_FAULTS`` set, so
the process signals itself at that point, then reruns it in a second subprocess
on the same store, and checks what a user would notice: the rerun's value equals
a clean run's, it recomputes exactly the tasks the dead run had not committed, the
dead run reads ``crashed`` (SIGKILL) or ``cancelled`` (SIGTERM, SIGINT) and never
``running``, every committed artifact is whole, and after gc no temporary file is
left. ``docs/reliability.md`` describes the points and these promises.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.faults import RUN_POINTS as POINTS, SCHEDULER_POINTS
from flowkit.store import Store

from tests.faults.pipeline import TASKS

PIPELINE = Path(__file__).with_name("pipeline.py")
ROOT = Path(fk.__file__).parent.parent

#: The hit of each point the process dies at: partway through the run, with some results committed.
NTH = {"task.before_start": 8, "cache.after_temp_write": 4, "cache.after_fsync": 4, "cache.after_rename": 4,
       "db.before_commit": 5, "db.after_commit": 5}
SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT")


def run_pipeline(home: Path, log: Path, faults: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWKIT_HOME": str(home), "FAULT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("FLOWKIT_FAULTS", None)
    if faults:
        env["FLOWKIT_FAULTS"] = faults
    return subprocess.run([sys.executable, str(PIPELINE)], env=env, cwd=home.parent, capture_output=True,
                          text=True, timeout=120)


def ran(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A run nothing interrupts: its value, and how many task bodies it ran."""
    folder = tmp_path_factory.mktemp("clean")
    done = run_pipeline(folder / "home", folder / "ran.log")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["value"], len(ran(folder / "ran.log"))


def test_the_points_are_all_exercised():
    assert set(NTH) == set(POINTS)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_at_a_crash_point_resumes_losing_nothing(tmp_path, clean, point, sig):
    home = tmp_path / "home"
    killed = run_pipeline(home, tmp_path / "killed.log", f"{point}={sig}@{NTH[point]}")
    assert killed.returncode != 0, f"the fault at {point} did not stop the run:\n{killed.stdout}{killed.stderr}"
    if sig == "SIGKILL":
        assert killed.returncode == -signal.SIGKILL
    else:  # the run was cancelled, and said so
        assert "was cancelled" in killed.stderr, killed.stderr

    store = Store(home)
    (dead,) = store.runs()
    assert dead.status == ("crashed" if sig == "SIGKILL" else "cancelled"), dead.error
    committed = {tr.node for tr in dead.task_runs if tr.status == "completed"}
    assert ran(tmp_path / "killed.log"), "nothing ran before the fault"

    rerun = run_pipeline(home, tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.stderr
    out = json.loads(rerun.stdout)
    value, clean_count = clean
    assert out["status"] == "completed" and out["value"] == value
    again = store.run(out["run_id"])
    recomputed = {tr.node for tr in again.task_runs if tr.status == "completed"}
    assert recomputed.isdisjoint(committed)  # nothing committed is computed again...
    assert len(recomputed) + len(committed) == TASKS == clean_count  # ...and all the rest is
    assert len(ran(tmp_path / "rerun.log")) == len(recomputed)

    # Every committed result is whole: each cache entry's bytes are there and match their digest.
    for entry in store.cache_entries():
        record = store.artifact(entry["artifact_id"])
        assert record.inline or store.files.verify(entry["artifact_id"]), entry

    # gc records the dead run's end and removes what its kill left half-written (older than its bound).
    temporaries = [p for p in (home / "artifacts").rglob(".tmp-*")]
    if sig == "SIGKILL" and point in ("cache.after_temp_write", "cache.after_fsync"):
        assert len(temporaries) == 1  # the write the kill cut short
    else:
        assert temporaries == []  # a signal Python sees removes the temporary file on the way out
    old = time.time() - 2 * 3600
    for path in temporaries:
        os.utime(path, (old, old))
    report = store.gc()
    assert sorted(report.temporaries) == sorted(str(p.relative_to(home / "artifacts")) for p in temporaries)
    assert list((home / "artifacts").rglob(".tmp-*")) == []
    assert store.db.get_run(dead.id).status == ("crashed" if sig == "SIGKILL" else "cancelled")


SCHEDULER_SCRIPT = '''
import sys
import flowkit as fk

@fk.task(cache=False)
def beat(slot):
    return slot

@fk.flow
def nightly(slot: int = 0):
    return beat(slot)

if __name__ == "__main__":  # the scheduler imports this file again for the flow
    scheduler = fk.Scheduler(clock=fk.ManualClock(float(sys.argv[1])))
    if not scheduler.schedules():
        scheduler.add(nightly, fk.Cron("0 3 * * *"), name="nightly")
    print([f.status for f in scheduler.tick()])
'''


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", SCHEDULER_POINTS)
def test_a_scheduler_killed_between_claim_and_run_leaves_a_crashed_fire_and_the_next_slot_fires_once(
        tmp_path, point, sig):
    import datetime as dt

    script = tmp_path / "sched.py"
    script.write_text(SCHEDULER_SCRIPT)
    home = tmp_path / "home"
    day = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

    def tick(at: dt.datetime, faults: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLOWKIT_HOME": str(home),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(tmp_path), os.environ.get("PYTHONPATH")]))}
        env.pop("FLOWKIT_FAULTS", None)
        if faults:
            env["FLOWKIT_FAULTS"] = faults
        return subprocess.run([sys.executable, str(script), str(at.timestamp())], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    assert tick(day.replace(hour=1)).returncode == 0  # the schedule is added, nothing due yet
    killed = tick(day.replace(hour=3, minute=1), f"{point}={sig}")
    assert killed.returncode != 0, killed.stdout + killed.stderr
    store = Store(home)
    slot = day.replace(hour=3).timestamp()
    assert store.db.fire("nightly", slot).status in ("pending", "running")  # as the dead scheduler left it
    assert not store.runs()  # its run never began

    # The next scheduler (its lease expired long ago) ends that fire and fires the next slot, once.
    later = tick(day.replace(day=2, hour=3, minute=1))
    assert later.returncode == 0, later.stderr
    assert store.db.fire("nightly", slot).status == "crashed"
    assert later.stdout.strip() == "['completed']"
    assert [r.status for r in store.runs()] == ["completed"]
    assert [f.status for f in store.db.fires("nightly")] == ["crashed", "completed"]
