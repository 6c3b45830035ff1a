"""The reliability findings, one regression test (or a few) each.

1. a run whose process died reads ``crashed`` and pins nothing for gc; SIGTERM cancels a run;
2. gc removes the temporary files a killed write left behind;
3. a full disk under the metadata database raises a clear StoreError and the run still ends;
4. a full disk under the artifact store names the task, key, path and free space, and writes once.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main
from flowkit.store import Store, artifacts, owner

ROOT = Path(fk.__file__).parent.parent


@fk.task
def part(i: int) -> np.ndarray:
    return np.full(6000, float(i))  # 48 KB: a file of its own


@fk.task
def add_up(parts: list[np.ndarray]) -> float:
    return float(sum(p.sum() for p in parts))


@fk.flow
def parts(n: int = 3) -> float:
    return add_up([part(i) for i in range(n)])


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid names no process now
    return child.pid


def _pretend_running(store: Store, run_id: str, pid: int, start: str | None, started: float) -> None:
    store.db.write(lambda c: c.execute(
        "UPDATE runs SET status = 'running', ended = NULL, error = NULL, started = ?, owner_pid = ?, "
        "owner_start = ? WHERE id = ?", (started, pid, start, run_id)))


# --- 1. crashed runs ------------------------------------------------------------------------------

def test_a_run_records_its_owner_and_heartbeat(home):
    run = parts.run()
    row = Store.open().db.get_run(run.id)
    me = owner.current()
    assert (row.host, row.owner_pid, row.owner_start) == (me.host, os.getpid(), me.start)
    assert row.heartbeat is not None and row.started <= row.heartbeat  # its last batch: the end


def test_a_run_whose_process_died_reads_crashed_and_gc_frees_what_it_pinned(home):
    store = Store.open()
    old = fk.clock.SystemClock().time() - 40 * 86400  # older than gc's keep_days
    dead, alive, reused = (parts.run(n=n) for n in (2, 3, 4))
    store.clear_cache()  # only the runs pin their artifacts now
    _pretend_running(store, dead.id, _dead_pid(), None, old)
    _pretend_running(store, alive.id, os.getpid(), owner.current().start, old)
    _pretend_running(store, reused.id, os.getpid(), "1", old)  # this pid, but another process's start time

    assert {r.id: r.status for r in fk.runs()} == {dead.id: "crashed", alive.id: "running", reused.id: "crashed"}
    assert [r.id for r in fk.runs(status="running")] == [alive.id]
    assert {r.id for r in fk.runs(status="crashed")} == {dead.id, reused.id}
    assert "stopped without recording" in fk.runs(status="crashed")[0].error

    pinned_by_dead = {tr.artifact_id for tr in store.run(dead.id).task_runs if tr.artifact_id}
    pinned_by_alive = {tr.artifact_id for tr in store.run(alive.id).task_runs if tr.artifact_id}
    report = store.gc(grace_seconds=0)
    assert sorted(report.crashed) == sorted([dead.id, reused.id])
    assert store.db.get_run(dead.id).status == "crashed"  # recorded now, for every reader
    removed = set(report.artifacts)
    assert pinned_by_dead - pinned_by_alive and (pinned_by_dead - pinned_by_alive) <= removed
    assert not removed & pinned_by_alive  # a live run keeps what it uses


def test_a_run_on_another_host_is_crashed_only_once_its_heartbeat_is_stale():
    status = owner.status
    assert status("running", "elsewhere", 123, "99", heartbeat=1000.0, started=10.0, now=1000.0 + 60) == "running"
    assert status("running", "elsewhere", 123, "99", 1000.0, 10.0, now=1000.0 + 3601) == "crashed"
    assert status("running", "elsewhere", 123, "99", 1000.0, 10.0, now=1000.0 + 3601, stale_after=7200) == "running"
    assert status("running", None, None, None, None, started=10.0, now=5000.0) == "crashed"  # a row from before owners
    assert status("completed", "elsewhere", 1, None, None, 0.0, now=1e12) == "completed"


def test_flowkit_runs_and_show_say_crashed(home):
    run = parts.run()
    _pretend_running(Store.open(), run.id, _dead_pid(), None, run.started)
    cli = CliRunner()
    listed = cli.invoke(main, ["runs", "--json"], catch_exceptions=False)
    assert [r["status"] for r in json.loads(listed.output)] == ["crashed"]
    assert "crashed" in cli.invoke(main, ["runs"], catch_exceptions=False).output
    assert run.id[:12] in cli.invoke(main, ["runs", "--status", "crashed"], catch_exceptions=False).output
    shown = cli.invoke(main, ["show", run.id[:10]], catch_exceptions=False).output
    assert "crashed" in shown


@fk.task(cache=False)
def sigterm_handler_now() -> str:
    return repr(signal.getsignal(signal.SIGTERM))


@fk.flow
def handler_probe() -> str:
    return sigterm_handler_now()


def test_the_sigterm_handler_is_there_only_during_a_run_in_the_main_thread(home):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert "interrupt" in handler_probe()  # the run's own, which turns SIGTERM into a KeyboardInterrupt
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    seen: list[str] = []
    worker = threading.Thread(target=lambda: seen.append(handler_probe()))
    worker.start()
    worker.join()
    assert seen == [repr(signal.SIG_DFL)]  # no signal reaches a thread: nothing installed there

    def mine(signum, frame):  # a program's own handler decides for itself
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert handler_probe() == repr(mine)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flowkit(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "flowkit", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def test_flowkit_run_stopped_by_sigterm_ends_cancelled_and_resumes(home, tmp_path):
    (tmp_path / "flows.py").write_text(textwrap.dedent("""
        import flowkit as fk

        @fk.task
        def step(i):
            return i * i

        @fk.flow
        def squares(n: int = 6):
            return sum_of([step(i) for i in range(n)])

        @fk.task
        def sum_of(xs):
            return sum(xs)
    """))
    stopped = _flowkit("run", "flows.py:squares", cwd=tmp_path, FLOWKIT_HOME=str(home),
                       FLOWKIT_FAULTS="task.before_start=SIGTERM@4")
    assert stopped.returncode != 0
    (run,) = fk.runs()
    assert run.status == "cancelled"
    assert "cancelled" in _flowkit("runs", cwd=tmp_path, FLOWKIT_HOME=str(home)).stdout
    again = _flowkit("run", "flows.py:squares", "--json", cwd=tmp_path, FLOWKIT_HOME=str(home))
    assert json.loads(again.stdout)["result"] == sum(i * i for i in range(6))


# --- 2. temporary files ---------------------------------------------------------------------------

def test_gc_removes_temporary_files_older_than_its_bound(home):
    parts.run()
    store = Store.open()
    root = store.files.root
    now = 1_000_000_000.0
    old_top, old_nested, fresh = root / ".tmp-old", next(p for p in root.iterdir() if p.is_dir()) / ".tmp-x", root / ".tmp-new"
    for path, mtime in ((old_top, now - 3601), (old_nested, now - 7200), (fresh, now - 10)):
        path.write_bytes(b"half a value")
        os.utime(path, (mtime, mtime))
    files_before = {p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")}

    seen = store.gc(now=now, dry_run=True, keep_days=1e6)
    assert sorted(seen.temporaries) == sorted(str(p.relative_to(root)) for p in (old_top, old_nested))
    assert old_top.exists()  # a dry run removes nothing
    report = store.gc(now=now, keep_days=1e6)
    assert not old_top.exists() and not old_nested.exists() and fresh.exists()  # a write may still own it
    assert report.artifacts == []
    assert {p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")} == files_before


# --- 3. a full disk under the metadata database ---------------------------------------------------

@fk.task
def blob(i: int) -> bytes:
    if i == int(os.environ.get("FILL_AT", "-1")):  # the disk fills up: the database may not grow past the pages it has now
        db = Store.open().db
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count = {pages}")
    return os.urandom(20_000) + bytes([i])  # kept inline: 20 KB rows in the database


@fk.task(name="slow_blob")
def slow_blob(i: int) -> bytes:
    import time

    time.sleep(0.06)  # slow: each result is committed as it finishes
    return blob.fn(i)


@fk.flow
def blobs(n: int = 8) -> int:
    return count([slow_blob(i) for i in range(n)])


@fk.task
def count(xs: list[bytes]) -> int:
    return len(xs)


@pytest.mark.sqlite_only
def test_a_full_disk_under_the_database_raises_store_error_and_the_run_still_ends(home, monkeypatch):
    monkeypatch.setenv("FILL_AT", "3")
    with pytest.raises(fk.StoreError, match="disk full at .*flowkit.db") as caught:
        blobs.run()
    assert "cannot rollback" not in str(caught.value)
    db = Store.open().db
    (run,) = fk.runs()
    assert run.status == "failed" and "disk full" in run.error  # ended, not left running
    committed = {tr.node for tr in run.task_runs if tr.status == "completed"}
    assert len(committed) == 3  # what was committed before the disk filled is kept

    db.conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    monkeypatch.delenv("FILL_AT")
    again = blobs.run()
    assert again.status == "completed" and again.value == 8
    assert {tr.node for tr in again.task_runs if tr.status == "cached"} == committed


def test_a_write_sqlite_rolled_back_itself_raises_the_real_error(tmp_path):
    from flowkit.store.sqlite import SQLiteMetadataStore

    db = SQLiteMetadataStore(tmp_path / "flowkit.db")
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(fk.StoreError, match="disk full at"):
        db.write(lambda c: c.execute("CREATE TABLE big (x BLOB)") and c.execute("INSERT INTO big VALUES (?)",
                                                                                (b"x" * 100_000,)))
    assert not db.conn.in_transaction
    db.conn.execute("PRAGMA max_page_count = 1073741823")
    db.write(lambda c: c.execute("CREATE TABLE ok (x)"))  # the connection is usable again


# --- 4. a full disk under the artifact store ------------------------------------------------------

@fk.task
def array_result() -> np.ndarray:
    return np.arange(10_000, dtype=np.float64)  # streamed to its file


@fk.task
def pickled_result() -> list[str]:
    return [f"item {i}" for i in range(10_000)]  # pickled, then written


@fk.flow
def results() -> int:
    return count([array_result(), pickled_result()])


def test_a_full_disk_under_the_artifacts_names_the_task_key_path_and_space_and_writes_once(home, monkeypatch):
    opened: list[Path] = []
    real_open = open

    class FullDisk:
        """A file on a disk that fills up after a few bytes."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(memoryview(data)[:100]))
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and Path(path).name.startswith(".tmp-"):
            opened.append(Path(path))
            return FullDisk(real_open(path, mode, *args, **kwargs))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(artifacts, "open", full_open, raising=False)
    run = results.run()
    assert run.status == "failed"
    failed = {tr.name: tr for tr in run.failed}
    assert set(failed) == {"array_result", "pickled_result"}
    for tr in failed.values():
        assert "storing the result of task" in tr.error and tr.node in tr.error
        assert tr.cache_key in tr.error
        assert str(home / "artifacts") in tr.error
        assert "No space left on device" in tr.error and "free there" in tr.error
    assert len(opened) == 2  # one write per result: no second, in-memory attempt
    assert all(not p.exists() for p in opened)
    assert list((home / "artifacts").rglob(".tmp-*")) == []  # nothing half-written stays

    monkeypatch.undo()
    assert results.run().value == 2  # space again: the rerun stores them


def test_the_fire_of_a_scheduled_run_whose_process_died_reads_crashed_after_the_next_tick(home):
    store = Store.open()
    run = parts.run(n=2)
    _pretend_running(store, run.id, _dead_pid(), None, run.started)
    store.db.write(lambda c: c.execute(
        "INSERT INTO fires (schedule, slot, status, run_id, holder, fired) VALUES ('nightly', 1.0, 'running', ?, "
        "'gone', 1.0)", (run.id,)))
    scheduler = fk.Scheduler(store.home, clock=fk.ManualClock(2_000_000_000.0))
    scheduler.tick()
    assert store.db.fire("nightly", 1.0).status == "crashed"
    assert store.db.get_run(run.id).status == "crashed"
