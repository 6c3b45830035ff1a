"""Kills at random: crash points, hits and signals drawn from the seed, one to three kills in a row on one
store before it may finish; nothing committed is ever lost and the store always resumes.

The matrix of ``test_crash_points.py`` kills once at a fixed hit of every point; this draws them (as
``soak.py`` does, here as a test with a size, the number of stores, and a seed).
"""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from flowkit.faults import RUN_POINTS as POINTS
from flowkit.store import Store

from tests.faults.harness import tally, tiers
from tests.faults.pipeline import TASKS
from tests.faults.test_crash_points import run_pipeline

pytestmark = pytest.mark.sqlite_only

#: How often each point is reached in a clean run of the pipeline (its hits are drawn up to this).
MAXHIT = {"task.before_start": 19, "cache.after_temp_write": 9, "cache.after_fsync": 9, "cache.after_rename": 9,
          "db.before_commit": 19, "db.after_commit": 19}
VALUE = sum(float(sum(range(8000))) * i for i in range(9))


def test_every_point_has_a_bound():
    assert set(MAXHIT) == set(POINTS)


@pytest.mark.parametrize(("size", "seed"), tiers((1, 1), [(8, 2), (8, 3)]))
def test_random_kills_in_a_row_lose_nothing_committed(tmp_path, size, seed):
    rng = random.Random(seed)
    for r in range(size):
        home = tmp_path / f"store-{r}"
        committed: set[str] = set()
        for k in range(rng.randint(1, 3)):
            point, sig = rng.choice(POINTS), rng.choice(["SIGKILL", "SIGTERM", "SIGINT"])
            fault = f"{point}={sig}@{rng.randint(1, MAXHIT[point])}"
            killed = run_pipeline(home, tmp_path / f"r{r}-{k}.log", fault)
            if killed.returncode == 0:  # the point was not reached that often: the cache served those tasks
                tally("kills", not_reached=1)
                break
            store = Store(home)
            latest = store.runs()[0]
            if sig == "SIGKILL":
                assert latest.status == "crashed", (fault, latest.status)
            elif latest.status == "completed":  # the signal came as the finished run recorded its end
                assert "had finished (completed)" in killed.stderr, (fault, killed.stderr[-2000:])
                tally("kills", held_until_recorded=1)
            else:
                assert latest.status == "cancelled", (fault, latest.status, killed.stderr[-2000:])
            now = {e["key"] for e in store.cache_entries()}
            assert committed <= now, f"a kill at {point} by {sig} lost committed results"
            committed = now
            tally("kills", kills_survived=1, **{sig: 1})
        rerun = run_pipeline(home, tmp_path / f"r{r}-rerun.log")
        assert rerun.returncode == 0, rerun.stderr
        out = json.loads(rerun.stdout)
        assert out["status"] == "completed" and out["value"] == VALUE
        store = Store(home)
        again = store.run(out["run_id"])
        assert sum(tr.status in ("completed", "cached") for tr in again.task_runs) == TASKS
        assert committed <= {e["key"] for e in store.cache_entries()}
        for entry in store.cache_entries():
            assert store.artifact(entry["artifact_id"]).inline or store.files.verify(entry["artifact_id"])
        old = time.time() - 7200
        for t in (home / "artifacts").rglob(".tmp-*"):
            os.utime(t, (old, old))
        removed = store.gc().temporaries
        assert not list((home / "artifacts").rglob(".tmp-*"))
        tally("kills", stores_resumed=1, lost=0, temporaries_removed=len(removed))


_SIGNAL_AT_THE_END = """
import os, signal, sys
import flowkit as fk

@fk.task
def one():
    return 1

@fk.flow
def short():
    return one()

class SignalAtTheEnd:
    def on_event(self, event):
        if isinstance(event, fk.events.RunFinished):  # the store's recorder is writing the end right now
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))

fk.run_flow(short, {}, listeners=[SignalAtTheEnd()])
print("not interrupted")
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_while_a_finished_run_records_its_end_waits_for_the_record(tmp_path, sig):
    import subprocess
    import sys

    from tests.faults.harness import env

    home = tmp_path / "store"
    done = subprocess.run([sys.executable, "-c", _SIGNAL_AT_THE_END, sig], env=env(home), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "not interrupted" not in done.stdout  # the process still stops as asked...
    assert f"had finished (completed) when {'SIGTERM' if sig == 'SIGTERM' else 'Ctrl-C'} came" in done.stderr
    (run,) = Store(home).runs()
    assert run.status == "completed"  # ...and the run reads as it ended, not crashed
