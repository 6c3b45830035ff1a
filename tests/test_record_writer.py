"""The background record writer: a run's records committed beside it, whole, and waited for at its end."""

from __future__ import annotations

import json
import sqlite3
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import flowkit as fk
from flowkit.errors import StoreError
from flowkit.store import Store
from flowkit.store.protocols import Batch
from flowkit.store.sqlite import SQLiteMetadataStore
from flowkit.store.writer import BatchWriter

ROOT = Path(fk.__file__).parent.parent


@fk.task
def step(i: int) -> int:
    return i


@fk.flow
def many(n: int) -> list[int]:
    return [step(i) for i in range(n)]


@fk.task
def add(*values: int) -> int:
    return sum(values)


@fk.flow
def summed(n: int) -> int:
    """Rerun, the steps are hits nobody needs: only the sum is loaded."""
    return add(*[step(i) for i in range(n)])


def task_run_row(run_id: str, node: str, seq: int) -> tuple:
    return (run_id, node, seq, "t", "completed", 1, 1.0, 2.0, None, None, None, None, None, None, None, None)


def batch_of(run_id: str, nodes: range) -> Batch:
    batch = Batch()
    batch.task_runs.extend(task_run_row(run_id, f"n{i}", i) for i in nodes)
    return batch


def started(db: SQLiteMetadataStore, run_id: str) -> None:
    db.start_run({"id": run_id, "flow": "f", "status": "running", "started": 1.0})


def test_batches_submitted_are_committed_by_another_thread_and_drain_waits_for_them(tmp_path):
    db = SQLiteMetadataStore(tmp_path / "flowkit.db")
    started(db, "r")
    threads: list[str] = []
    flush = db.flush

    def spy(batch):
        threads.append(threading.current_thread().name)
        flush(batch)

    db.flush = spy  # type: ignore[method-assign]
    writer = BatchWriter(db)
    for start in range(0, 300, 100):
        writer.submit(batch_of("r", range(start, start + 100)))
    writer.drain()
    assert [row.seq for row in db.task_runs("r")] == list(range(300))
    assert threads and set(threads) == {"flowkit-recorder"}
    writer.close()
    assert writer.idle


def test_the_run_makes_way_for_the_writer_only_while_it_writes_or_has_a_batch_to_take(tmp_path, monkeypatch):
    from flowkit.store import writer as writer_module

    db = SQLiteMetadataStore(tmp_path / "flowkit.db")
    started(db, "r")
    writing, release = threading.Event(), threading.Event()
    flush = db.flush

    def held(batch):
        writing.set()
        release.wait()
        flush(batch)

    db.flush = held  # type: ignore[method-assign]
    sleeps: list[float] = []
    monkeypatch.setattr(writer_module, "time", type("Clock", (), {"sleep": staticmethod(sleeps.append)}))
    writer = BatchWriter(db)
    writer.make_way()
    assert sleeps == []  # nothing to write: nothing to wait for
    with writer._cond:  # the writer's thread cannot take the batch while this holds its lock (reentrant here)
        writer.submit(batch_of("r", range(10)))
        writer.make_way()
    assert sleeps == [0]  # handed over, not yet taken: the writer needs the GIL to wake and take it
    assert writing.wait(30)
    writer.make_way()
    assert sleeps == [0, 0]  # writing: the GIL given up, for no time
    release.set()
    writer.drain()
    writer.make_way()
    assert sleeps == [0, 0]
    writer.close()
    assert [row.seq for row in db.task_runs("r")] == list(range(10))


class FullAfter(SQLiteMetadataStore):
    """A store whose disk fills up after ``room`` batches."""

    room = 1

    def flush(self, batch):
        if self.room <= 0:
            raise StoreError("disk full at the test's store")
        self.room -= 1
        super().flush(batch)


def test_merged_batches_keep_every_kind_of_row_in_order_and_the_last_end():
    assert set(Batch.LISTS) == set(Batch.__slots__) - {"run_end", "heartbeat"}  # a new list is merged too
    first, second = Batch(), Batch()
    for i, name in enumerate(Batch.LISTS):
        getattr(first, name).append(("first", i))
        getattr(second, name).append(("second", i))
    second.run_end, second.heartbeat = ("completed", 2.0, None, "r"), (2.0, "r")
    first.extend(second)
    for i, name in enumerate(Batch.LISTS):
        assert getattr(first, name) == [("first", i), ("second", i)], name
    assert first.run_end == ("completed", 2.0, None, "r") and first.heartbeat == (2.0, "r")
    assert not first.empty() and Batch().empty()


def test_a_failed_write_is_raised_on_the_runs_thread_and_its_rows_are_kept(tmp_path):
    db = FullAfter(tmp_path / "flowkit.db")
    started(db, "r")
    writer = BatchWriter(db)
    writer.submit(batch_of("r", range(0, 10)))
    writer.drain()
    writer.submit(batch_of("r", range(10, 20)))
    with pytest.raises(StoreError, match="disk full"):
        writer.drain()
    error, failed = writer.take_failure()
    assert isinstance(error, StoreError)
    assert [row[2] for row in failed.task_runs] == list(range(10, 20))  # nothing of it written, all of it kept
    assert [row.seq for row in db.task_runs("r")] == list(range(10))
    writer.drain()  # taken: the writer goes on
    writer.close()


@pytest.mark.sqlite_only
def test_a_full_disk_under_the_writer_of_a_fast_run_ends_it_failed_and_says_what_was_lost(home, monkeypatch):
    real = SQLiteMetadataStore.flush
    writers: list[str] = []

    def flush(self, batch):  # the disk is full: no batch fits, whichever thread writes it
        writers.append(threading.current_thread().name)
        raise StoreError("disk full at the test's store")

    monkeypatch.setattr(SQLiteMetadataStore, "flush", flush)
    with pytest.raises(StoreError, match="disk full"):
        many.run(2000)
    assert writers[0] == "flowkit-recorder"  # the first batch went to the writer, which failed...
    monkeypatch.setattr(SQLiteMetadataStore, "flush", real)
    (run,) = fk.runs()  # ...and the run's end was still recorded, with what could not be written
    assert run.status == "failed" and "disk full" in run.error and "could not be written" in run.error
    assert not run.task_runs


SCRIPT = """
import json, os, sys
import flowkit as fk

@fk.task
def step(i):
    with open(os.environ["RAN"], "a") as f:
        f.write(f"{i}\\n")
    return i

@fk.flow
def many(n: int = 3000):
    return sum_of([step(i) for i in range(n)])

@fk.task
def sum_of(xs):
    return sum(xs)

run = many.run()
print(json.dumps({"run_id": run.id, "value": run.value}))
"""


@pytest.mark.sqlite_only
# The first batch is always the writer's (256 task runs); the kill comes at its commit or the next one.
@pytest.mark.parametrize("point, nth", [("db.before_commit", 2), ("db.after_commit", 1)])
def test_a_fast_run_killed_while_the_writer_commits_reruns_exactly_what_was_not_committed(tmp_path, point, nth):
    script = tmp_path / "many.py"
    script.write_text(SCRIPT)
    home = tmp_path / "home"

    def run(log: str, faults: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLOWKIT_HOME": str(home), "RAN": str(tmp_path / log),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("FLOWKIT_FAULTS", None)
        if faults:
            env["FLOWKIT_FAULTS"] = faults
        return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)

    killed = run("killed.log", f"{point}=SIGKILL@{nth}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = Store(home)
    (dead,) = store.runs()
    committed = {tr.node for tr in dead.task_runs if tr.status == "completed"}
    assert dead.status == "crashed" and 0 < len(committed) < 3001

    again = run("rerun.log")
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["value"] == sum(range(3000))
    rerun = store.run(out["run_id"])
    recomputed = {tr.node for tr in rerun.task_runs if tr.status == "completed"}
    assert recomputed.isdisjoint(committed) and len(recomputed) + len(committed) == 3001
    assert len((tmp_path / "rerun.log").read_text().split()) == len(recomputed) - 1  # the sum logs nothing


def test_the_writer_reports_its_rows_committed_before_its_last_checkpoint_which_it_makes_as_it_ends(tmp_path):
    db = SQLiteMetadataStore(tmp_path / "flowkit.db")
    started(db, "r")
    db.checkpoint()  # the schema and the run, in the database file
    checkpointing, release = threading.Event(), threading.Event()
    settings: list[int] = []
    flush, checkpoint = db.flush, db.checkpoint

    def spy(batch):
        settings.append(db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])  # the writer's connection
        flush(batch)

    def held():
        checkpointing.set()
        release.wait()
        checkpoint()

    db.flush, db.checkpoint = spy, held  # type: ignore[method-assign]
    writer = BatchWriter(db)
    writer.submit(batch_of("r", range(500)))
    writer.close()  # returns once the rows are committed, not after the checkpoint
    assert settings == [10_000]  # SQLite's own is 1,000 pages: fewer, larger checkpoints
    assert checkpointing.wait(30)
    reader = SQLiteMetadataStore(tmp_path / "flowkit.db")
    assert len(reader.task_runs("r")) == 500  # committed, in the log, while the checkpoint waits
    reader.close()

    def in_the_database_file() -> int:  # the database without its log: what was checkpointed
        copy = tmp_path / "copy.db"
        copy.write_bytes((tmp_path / "flowkit.db").read_bytes())
        conn = sqlite3.connect(copy)
        try:
            return conn.execute("SELECT count(*) FROM task_runs").fetchone()[0]
        finally:
            conn.close()

    assert in_the_database_file() == 0
    release.set()
    writer.join(30)
    assert in_the_database_file() == 500
    assert not writer.running and writer.idle


@pytest.mark.sqlite_only
def test_a_runs_last_rows_are_committed_by_the_writer_if_it_runs_else_by_the_runs_thread(home, monkeypatch):
    real = SQLiteMetadataStore.flush
    writers: list[tuple[str, bool]] = []

    def flush(self, batch):
        writers.append((threading.current_thread().name, batch.run_end is not None))
        real(self, batch)

    monkeypatch.setattr(SQLiteMetadataStore, "flush", flush)
    big = many.run(3000)
    assert big.status == "completed" and len(fk.runs()[0].task_runs) == 3000
    assert writers[-1] == ("flowkit-recorder", True)  # (a task slow by accident commits on the run's thread)
    writers.clear()
    small = many.run(3)
    assert small.status == "completed" and writers == [("MainThread", True)]  # no thread started for three rows


@pytest.mark.sqlite_only
def test_a_cached_reruns_rows_go_to_the_writer_a_thousand_at_a_time_while_the_rest_are_made(home, monkeypatch):
    summed.run(3000)
    real = BatchWriter.submit
    handed: list[tuple[int, bool]] = []  # (cached rows, the run's end) of each batch handed to the writer

    def submit(self, batch):
        handed.append((len(batch.cached), batch.run_end is not None))
        real(self, batch)

    monkeypatch.setattr(BatchWriter, "submit", submit)
    events: list[int] = []

    class Told:
        def on_event(self, event):
            if isinstance(event, fk.events.TasksCached):
                events.append(len(event.task_runs))

    rerun = fk.run_flow(summed, {"n": 3000}, listeners=[Told()])
    assert rerun.status == "completed" and events == [1024, 1024, 952]
    # The first thousand go to the idle writer while the rest are made (when it takes them is up to the GIL).
    assert handed[0] == (1024, False)
    assert sum(rows for rows, _ in handed) == 3000 and handed[-1][1]
    assert rerun.result() == sum(range(3000)) and fk.runs()[0].counts() == {"cached": 3001}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("at", ["a hand-over", "the end"])
def test_ctrl_c_just_after_a_batch_was_queued_neither_writes_it_twice_nor_loses_the_runs_end(home, monkeypatch, at):
    real = BatchWriter.submit

    def submit(self, batch):  # queued, then Ctrl-C before the run's thread knows it was
        last = batch.run_end is not None
        real(self, batch)
        if last == (at == "the end"):
            raise KeyboardInterrupt

    monkeypatch.setattr(BatchWriter, "submit", submit)
    with pytest.raises(KeyboardInterrupt):
        many.run(3000)
    (run,) = fk.runs()
    nodes = [tr.node for tr in run.task_runs]
    assert len(nodes) == len(set(nodes))  # the queued batch written once
    done = [tr for tr in run.task_runs if tr.status == "completed"]
    if at == "a hand-over":  # a batch while it ran: the end was recorded after it, in a batch of its own
        assert run.status == "cancelled" and len(done) >= 1024
    else:  # the run's last rows, with its end: they were queued, and are written
        assert run.status == "completed" and len(done) == 3000


def test_a_batch_queued_as_ctrl_c_came_is_the_writers_and_the_next_rows_go_in_a_batch_of_their_own(tmp_path,
                                                                                                      monkeypatch):
    from flowkit.clock import ManualClock
    from flowkit.recording import Recorder

    store = Store(tmp_path / "home")
    started(store.db, "r")
    writing, release = threading.Event(), threading.Event()
    flush = store.db.flush

    def held(batch):
        writing.set()
        release.wait()
        flush(batch)

    store.db.flush = held  # type: ignore[method-assign]
    recorder = Recorder(store, "r", ManualClock())
    real = BatchWriter.submit

    def submit(self, batch):  # queued, then Ctrl-C before the run's thread knows it was
        real(self, batch)
        raise KeyboardInterrupt

    recorder.batch = queued = batch_of("r", range(10))
    monkeypatch.setattr(BatchWriter, "submit", submit)
    with pytest.raises(KeyboardInterrupt):
        recorder.hand_over()
    assert writing.wait(30) and recorder.writer.holds(queued)
    assert recorder.batch is not queued and recorder.batch.empty()  # not the writer's, which it is writing
    recorder.batch.extend(batch_of("r", range(10, 20)))  # what the run records next (a cancelled task, say)
    monkeypatch.setattr(BatchWriter, "submit", real)
    release.set()
    recorder.finish("cancelled", 2.0, None)
    assert [row.seq for row in store.db.task_runs("r")] == list(range(20))
    assert store.db.get_run("r").status == "cancelled"
    assert not recorder.writer.holds(queued)


def test_a_log_grown_large_under_the_writer_is_cut_back_once_checkpointed_and_started_over(tmp_path):
    db = SQLiteMetadataStore(tmp_path / "flowkit.db")
    started(db, "r")
    writer = BatchWriter(db)
    for start in range(0, 120_000, 10_000):  # more log than SQLite's own checkpoints leave (1,000 pages)
        writer.submit(batch_of("r", range(start, start + 10_000)))
    writer.close()
    writer.join(30)
    log = tmp_path / "flowkit.db-wal"
    assert log.stat().st_size > 4 * 2**20
    started(db, "next")  # the next write starts the checkpointed log over
    assert log.stat().st_size <= 4 * 2**20
    assert len(db.task_runs("r")) == 120_000
