"""Processes racing on one store: the same cache keys written at once, readers polling while writers write,
eight processes running flows on one SQLite file.

Each scenario starts real processes (``racer.py``) that wait behind a gate the test opens once all of them
are ready, so they really start together. What must hold:

- several writers of the same keys leave exactly one cache entry per key, each whole and correct;
- a reader polling meanwhile sees every value whole and correct, or not yet there: never torn, never partial;
- eight processes running small flows at once surface no "database is locked", record exactly the runs,
  task runs and cache entries they made, and leave a database ``PRAGMA integrity_check`` calls ok.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from flowkit.store import Store

from tests.faults import racer
from tests.faults.harness import spawn, tally, tiers, wait_for

pytestmark = pytest.mark.sqlite_only

RACER = str(Path(__file__).with_name("racer.py"))


def race(tmp_path: Path, home: Path, procs: list[tuple[str, str]], size: int, seed: int,
         timeout: float = 240) -> dict[str, dict]:
    """Start ``(mode, name)`` processes on ``home``, open the gate when all are ready; their JSON by name.

    Readers (mode ``reader``) are told to stop once every other process has finished.
    """
    gate = tmp_path / "gate"
    started = {name: spawn([RACER, mode, name, str(size), str(seed)], home, tmp_path, RACE_GATE=str(gate))
               for mode, name in procs}
    try:
        wait_for(lambda: all(Path(f"{gate}.ready-{n}").exists() or p.poll() is not None
                             for n, p in started.items()), 120, "every racer to be ready")
        gate.touch()
        outputs: dict[str, tuple[str, str]] = {}
        for mode, name in procs:
            if mode != "reader":
                outputs[name] = started[name].communicate(timeout=timeout)
        Path(f"{gate}.done").touch()
        for mode, name in procs:
            if mode == "reader":
                outputs[name] = started[name].communicate(timeout=timeout)
    finally:
        for p in started.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    results = {}
    for name, (out, err) in outputs.items():
        assert started[name].returncode == 0, f"{name} failed:\n{err}"
        assert "database is locked" not in err and "database is busy" not in err, err
        results[name] = json.loads(out.strip().splitlines()[-1])
        results[name]["stderr"] = err
    return results


def crowd(size: int) -> tuple[int, int]:
    """(writers, readers): two and one in the fast tier, four and two in the soak tier."""
    return (2, 1) if size < 10 else (4, 2)


def integrity(home: Path) -> str:
    conn = sqlite3.connect(home / "flowkit.db")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def check_readers(results: dict[str, dict]) -> dict[str, int]:
    seen = {"reads": 0, "whole": 0, "absent": 0, "torn": 0, "file_reads": 0}
    for name, r in results.items():
        if name.startswith("reader"):
            assert r["torn"] == 0, r["problems"]
            assert r["reads"] + r["file_reads"] > 0, "the reader never saw anything to read"
            for k in seen:
                seen[k] += r[k]
    return seen


@pytest.mark.parametrize(("size", "seed"), tiers((2, 1), [(12, 2), (24, 3)]))
def test_writers_of_the_same_keys_leave_one_whole_entry_each_and_readers_never_see_a_torn_one(
        tmp_path, size, seed):
    home = tmp_path / "store"
    writers, readers = crowd(size)
    procs = [("flows", f"w{i}") for i in range(writers)] + [("reader", f"reader{i}") for i in range(readers)]
    results = race(tmp_path, home, procs, size, seed)

    want = [racer.checksum.fn(racer.expected("array", i, seed), racer.expected("pickled", i, seed),
                              racer.expected("small", i, seed)) for i in range(size)]
    for i in range(writers):
        r = results[f"w{i}"]
        assert [status for _, status in r["runs"]] == ["completed", "completed"]
        assert r["values"] == [want, want]

    store = Store(home)
    entries = store.cache_entries()
    assert len(entries) == 4 * size  # array, pickled, small and checksum for each i: one entry per key
    assert len({e["key"] for e in entries}) == 4 * size
    for e in entries:  # every entry whole, and the value it was written for
        record = store.artifact(e["artifact_id"])
        assert record.inline or store.files.verify(e["artifact_id"])
        value = store.load(e["artifact_id"])
        who = racer.identify(value)
        if e["task"] != "checksum":
            assert who is not None and who[0] == e["task"] and racer.same(value, racer.expected(*who, seed))
    assert not list((home / "artifacts").rglob(".tmp-*"))
    assert integrity(home) == "ok"
    seen = check_readers(results)
    assert len(store.runs()) == 2 * writers
    tally("races", same_key_races=writers * 2 * size * 4, processes=len(procs), torn=seen["torn"],
          reads=seen["reads"] + seen["file_reads"], whole_reads=seen["whole"], absent_reads=seen["absent"])


@pytest.mark.parametrize(("size", "seed"), tiers((6, 1), [(60, 2), (120, 3)]))
def test_artifact_files_written_by_several_processes_at_once_are_whole_for_every_reader(tmp_path, size, seed):
    home = tmp_path / "store"
    writers, readers = crowd(size)
    procs = [("files", f"f{i}") for i in range(writers)] + [("reader", f"reader{i}") for i in range(readers)]
    results = race(tmp_path, home, procs, size, seed)
    digests = results["f0"]["digests"]
    assert all(results[f"f{i}"]["digests"] == digests for i in range(writers))
    files = Store(home).files
    assert all(files.verify(d) for d in digests)
    assert sorted(d for d, _ in files.digests()) == sorted(set(digests))  # one file per digest, no strays
    assert not list(files.temporaries())
    seen = check_readers(results)
    tally("races", same_key_races=writers * size, processes=len(procs), torn=seen["torn"],
          reads=seen["reads"] + seen["file_reads"], whole_reads=seen["file_reads"] - seen["absent"],
          absent_reads=seen["absent"])


@pytest.mark.parametrize(("size", "seed"), tiers((3, 1), [(25, 2), (50, 3)]))
def test_eight_processes_running_flows_on_one_sqlite_store(tmp_path, size, seed):
    home = tmp_path / "store"
    procs = [("small", f"p{i}") for i in range(8)]
    results = race(tmp_path, home, procs, size, seed)
    for i in range(8):
        r = results[f"p{i}"]
        assert [status for _, status in r["runs"]] == ["completed"] * size
        assert r["values"] == [f"p{i}-{k}:{k}" for k in range(size)]

    store = Store(home)
    runs = store.runs()
    assert len(runs) == 8 * size and all(run.status == "completed" for run in runs)
    task_runs = store.db.query("SELECT COUNT(*) FROM task_runs")[0][0]
    assert task_runs == 8 * size * 3  # small, own and joined in every run
    assert all(len(run.task_runs) == 3 for run in runs)
    entries = store.cache_entries()
    # small(k) is shared by all eight; own(p, k) and joined(...) are each process's own
    assert len(entries) == size + 8 * size + 8 * size
    assert len({e["key"] for e in entries}) == len(entries)
    computed = sum(1 for run in runs for tr in run.task_runs if tr.status == "completed")
    assert len(entries) <= computed <= len(entries) + 7 * size  # a shared step may be computed by several at once
    assert integrity(home) == "ok"
    tally("concurrent_flows", processes=8, runs=len(runs), task_runs=task_runs, cache_entries=len(entries),
          locked_errors=sum("database is locked" in r["stderr"] for r in results.values()))
