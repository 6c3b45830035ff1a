"""Ctrl-C once and twice, sent to a real ``flowkit run`` and to a real Python process running a flow.

Once: the run is cancelled within a bounded time (no waiting for tasks still running, on threads
too), what had finished is kept (committed, its values whole), no lock is left on the database,
the run is recorded ``cancelled``, and the next run resumes, computing only the rest. ``flowkit
run`` says what became of the run and exits 130.

Twice: a task whose cleanup takes long holds the first Ctrl-C up; the second ends the process at
once. The run never reads ``running``, and the next run is fine and resumes.

The flow is ``slowflow.py``; the test waits (polling its log, with a deadline) until the run is
busy in a known task before it sends each signal.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from flowkit.store import Store

from tests.faults.harness import peak, spawn, tally, tiers, wait_for

pytestmark = pytest.mark.sqlite_only

SLOWFLOW = Path(__file__).with_name("slowflow.py")
#: How long a process may take to end after the Ctrl-C that ends it.
BOUND = 20.0


def start(tmp_path: Path, home: Path, n: int, how: str, workers: int, log: Path,
          block_at: int | None = None, cleanup: bool = False, salt: int = 0) -> subprocess.Popen[str]:
    extra = {"FAULT_LOG": str(log), "WORKERS": str(workers)}
    if block_at is not None:
        extra["BLOCK_AT"] = str(block_at)
    if cleanup:
        extra["SLOW_CLEANUP"] = "1"
    if how == "cli":
        args = ["-m", "flowkit", "run", f"{SLOWFLOW}:slow", "-p", f"n={n}", "-p", f"salt={salt}", "--json"]
        args += ["--workers", str(workers)] if workers else []
    else:
        args = [str(SLOWFLOW), str(n), str(salt)]
    return spawn(args, home, tmp_path, **extra)


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def busy_in(log: Path, k: int) -> bool:
    """Steps 0..k-1 have ended and step k has begun (and blocks)."""
    seen = set(lines(log))
    return f"start {k}" in seen and all(f"end {i}" in seen for i in range(k))


def lock_is_free(home: Path) -> bool:
    conn = sqlite3.connect(home / "flowkit.db", timeout=0)  # no waiting: a held lock fails at once
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("COMMIT")
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def check_stopped(home: Path, k: int, statuses: tuple[str, ...]) -> str:
    """What every stopped run must leave: its end read as one of ``statuses``, the k steps kept."""
    store = Store(home)
    (dead,) = store.runs()
    assert dead.status in statuses, dead.status
    kept = sorted(store.load(e["artifact_id"]) for e in store.cache_entries())
    assert kept == [i * i for i in range(k)]  # the finished steps, whole; nothing of the rest
    assert lock_is_free(home)
    assert not list((home / "artifacts").rglob(".tmp-*"))
    return dead.status


def check_resumes(tmp_path: Path, home: Path, n: int, k: int, how: str, workers: int) -> None:
    log = tmp_path / "rerun.log"
    rerun = start(tmp_path, home, n, how, workers, log)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    done = json.loads(out.strip().splitlines()[-1])
    assert done["status"] == "completed" and done["result"] == sum(i * i for i in range(n))
    assert sorted(x for x in lines(log) if x.startswith("start")) == sorted(
        [f"start {i}" for i in range(k, n)] + ["start sum"])  # only what the stopped run had not finished


def check_resumes_any(tmp_path: Path, home: Path, n: int) -> int:
    rerun = start(tmp_path, home, n, "script", 0, tmp_path / "final.log")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])["result"]


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str, float]:
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the process did not end within {BOUND:g}s of Ctrl-C")
    return out, err, time.monotonic() - began


@pytest.mark.parametrize("workers", [0, 2], ids=["sequential", "threads"])
@pytest.mark.parametrize("how", ["cli", "script"])
@pytest.mark.parametrize(("size", "seed"), tiers((4, 1), [(10, s) for s in range(2, 6)]))
def test_ctrl_c_once_cancels_promptly_keeps_what_finished_and_the_next_run_resumes(
        tmp_path, how, workers, size, seed):
    home = tmp_path / "store"
    k = random.Random(seed).randint(1, size - 1)
    log = tmp_path / "run.log"
    proc = start(tmp_path, home, size, how, workers, log, block_at=k)
    wait_for(lambda: proc.poll() is not None or busy_in(log, k), 60, f"step {k} to begin")
    assert proc.poll() is None, proc.communicate()
    out, err, took = interrupt(proc)

    assert f"was cancelled; {k} finished task(s) kept" in err, err
    if how == "cli":
        assert proc.returncode == 130 and "run the flow again to resume" in err and "Aborted" not in err
    else:
        assert proc.returncode != 0
    assert check_stopped(home, k, ("cancelled",)) == "cancelled"
    check_resumes(tmp_path, home, size, k, how, workers)
    tally("interrupts", ctrl_c_once=1, tasks_kept=k, resumed=1)
    peak("interrupts", slowest_exit_ms=int(took * 1000))


@pytest.mark.parametrize("how", ["cli", "script"])
@pytest.mark.parametrize(("size", "seed"), tiers((4, 1), [(10, s) for s in range(2, 6)]))
def test_ctrl_c_twice_ends_a_cleanup_that_holds_the_first_and_the_next_run_resumes(tmp_path, how, size, seed):
    home = tmp_path / "store"
    k = random.Random(seed).randint(1, size - 1)
    log = tmp_path / "run.log"
    proc = start(tmp_path, home, size, how, 0, log, block_at=k, cleanup=True)
    wait_for(lambda: proc.poll() is not None or busy_in(log, k), 60, f"step {k} to begin")
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: proc.poll() is not None or f"cleanup {k}" in lines(log), 60, "the first Ctrl-C to reach the task")
    assert proc.poll() is None, "the first Ctrl-C did not wait for the task's cleanup"
    out, err, took = interrupt(proc)

    assert proc.returncode != 0
    assert f"end {k}" not in lines(log)
    assert check_stopped(home, k, ("cancelled", "crashed")) in ("cancelled", "crashed")  # never "running"
    check_resumes(tmp_path, home, size, k, how, 0)
    tally("interrupts", ctrl_c_twice=1, tasks_kept=k, resumed=1)
    peak("interrupts", slowest_exit_ms=int(took * 1000))


@pytest.mark.parametrize(("size", "seed"), tiers((1, 1), [(30, 2)]))
def test_ctrl_c_once_or_twice_at_random_moments(tmp_path, size, seed):
    """``size`` rounds on one store, each with a random entry point, executor, task and way to stop:
    one Ctrl-C; two in quick succession, the second after a random number of polls (landing anywhere
    in the cancelling, or merged with the first by the system, as signals are); or two around a slow
    cleanup. Signals the system merges are why the slow cleanup waits for the first to be seen."""
    rng = random.Random(seed)
    home = tmp_path / "store"
    n = 6
    for r in range(size):
        folder = tmp_path / f"round-{r}"
        folder.mkdir()
        how, workers = rng.choice(["cli", "script"]), rng.choice([0, 2])
        way = rng.choice(["once", "twice-quick", "twice-cleanup"])
        workers = 0 if way == "twice-cleanup" else workers  # a thread's cleanup holds nothing up
        before = {e["key"] for e in Store(home).cache_entries()} if home.exists() else set()
        k = rng.randint(1, n - 1)
        salt = r if r == 0 or rng.random() < 0.6 else r - 1  # new keys, or resume the round before
        log = folder / "run.log"
        proc = start(folder, home, n, how, workers, log, block_at=k, cleanup=way == "twice-cleanup", salt=salt)
        # the first step from k on that is not cached yet begins, and blocks; or everything was cached
        wait_for(lambda: proc.poll() is not None or any(x.startswith("start ") and x != "start sum"
                                                        and int(x[6:]) >= k for x in lines(log)),
                 60, f"a step from {k} on to begin")
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.communicate()
            tally("interrupts", finished_before_any_signal=1)
            continue
        if way == "twice-cleanup":
            k = next(int(x[6:]) for x in lines(log) if x.startswith("start ") and x != "start sum" and int(x[6:]) >= k)
        if way != "once":
            proc.send_signal(signal.SIGINT)
            if way == "twice-cleanup":
                wait_for(lambda: proc.poll() is not None or f"cleanup {k}" in lines(log), 60, "the cleanup")
            for _ in range(rng.randint(0, 30)):
                lines(log)  # a poll: some time, never a sleep
        out, err, took = interrupt(proc)
        assert proc.returncode != 0, (out, err)
        store = Store(home)
        assert store.runs()[0].status in ("cancelled", "crashed")
        after = {e["key"] for e in store.cache_entries()}
        assert before <= after  # nothing committed is lost
        assert lock_is_free(home)
        tally("interrupts", random_rounds=1, signals_sent=1 if way == "once" else 2)
        peak("interrupts", slowest_exit_ms=int(took * 1000))
        if rng.random() < 0.3:  # sometimes let it finish before the next round
            rerun = start(folder, home, n, how, workers, folder / "rerun.log", salt=salt)
            out, err = rerun.communicate(timeout=120)
            assert rerun.returncode == 0, err
            assert json.loads(out.strip().splitlines()[-1])["result"] == sum(i * i for i in range(n))
            tally("interrupts", resumed=1)
    done = check_resumes_any(tmp_path, home, n)
    assert done == sum(i * i for i in range(n))
