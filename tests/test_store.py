"""The store: artifacts and serializers, damage recovery, schema, concurrency, runs, gc, lineage."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import flowkit as fk
from conftest import CALLS, failing, linear
from flowkit.store.artifacts import ArtifactFiles
from flowkit.store.metadata import SCHEMA_VERSION, MetadataDB


def big_frame(rows: int = 50_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=rows), "k": rng.integers(0, 9, rows), "s": ["a", "b"] * (rows // 2)})


@fk.task
def frame(rows: int) -> pd.DataFrame:
    CALLS.append("frame")
    return big_frame(rows)


@fk.task(serializer="parquet")
def frame_parquet(rows: int) -> pd.DataFrame:
    return big_frame(rows)


@fk.task
def array(n: int) -> np.ndarray:
    return np.arange(n, dtype="float32").reshape(-1, 4)


@fk.task
def closure(k: int):
    return lambda x: x * k


@fk.task
def total_rows(df: pd.DataFrame) -> int:
    CALLS.append("total_rows")
    return len(df)


@fk.flow
def tables(rows: int = 50_000):
    return frame(rows), frame_parquet(rows), array(400), closure(3)


def test_values_are_stored_with_a_serializer_chosen_by_type_and_round_trip(home):
    run = tables.run()
    store = fk.Store.open()
    records = {tr.node: store.artifact(tr.artifact_id) for tr in run.task_runs}
    assert {n: r["serializer"] for n, r in records.items()} == {
        "frame": "feather", "frame_parquet": "parquet", "array": "npy", "closure": "cloudpickle"}
    assert records["frame"]["columns"] == ["x", "k", "s"] and records["frame"]["rows"] == 50_000
    assert records["frame"]["dtypes"] == [str(d) for d in big_frame(10).dtypes]
    assert records["frame"]["type"] == f"{pd.DataFrame.__module__}.DataFrame"
    assert records["closure"]["inline"] and not records["frame"]["inline"]
    # the artifact's path is derived from its digest alone
    frame_id = run.artifact_id("frame")
    assert records["frame"]["uri"] == str(home / "artifacts" / frame_id[:2] / frame_id)
    cached = tables.run()
    df, dfp, arr, fn = cached.result()
    assert {tr.status for tr in cached.task_runs} == {"cached"}
    pd.testing.assert_frame_equal(df, big_frame(50_000))
    pd.testing.assert_frame_equal(dfp, big_frame(50_000))
    assert arr.dtype == np.float32 and arr.shape == (100, 4)
    assert fn(2) == 6


def test_a_frame_arrow_cannot_store_falls_back_to_pickle():
    @fk.task
    def odd():
        return pd.DataFrame({"mixed": [1, "two", 3.0]})

    @fk.flow
    def f():
        return odd()

    run = f.run()
    assert fk.Store.open().artifact(run.artifact_id("odd"))["serializer"] == "pickle"
    assert f.run().result()["mixed"].tolist() == [1, "two", 3.0]


def test_identical_bytes_are_stored_once(home):
    @fk.task
    def again(rows: int, tag: str):
        return big_frame(rows)

    @fk.flow
    def f():
        return again(40_000, "a"), again(40_000, "b")

    run = f.run()
    ids = {tr.artifact_id for tr in run.task_runs}
    assert len(ids) == 1
    files = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 1


def test_damaged_artifact_file_is_reported_removed_and_recomputed(home, caplog):
    @fk.flow
    def f():
        return total_rows(frame(60_000))

    first = f.run()
    path = ArtifactFiles(home / "artifacts").path(first.artifact_id("frame"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        second = f.run(refresh=["total_rows"])  # total_rows must run, so frame's damaged value is needed
    assert second.result() == 60_000
    assert CALLS == ["frame", "total_rows"]
    message = caplog.text
    assert "task 'frame'" in message and "damaged" in message and str(path) in message
    assert second.task_run("frame").status == "completed"
    assert path.read_bytes() != bytes(data)  # rewritten whole
    CALLS.clear()
    assert f() == 60_000 and CALLS == []


def damage_inline_values() -> None:
    """Overwrite every value kept in the metadata store with one byte (on any backend)."""
    fk.Store.open().db.write(lambda c: c.execute("UPDATE artifacts SET data = ? WHERE data IS NOT NULL",
                                                       (b"\0",)))


def test_damaged_inline_artifact_is_recomputed_too(home):
    linear.run(1)
    damage_inline_values()
    CALLS.clear()
    assert linear(1) == 2  # the output is loaded, found damaged, and recomputed
    assert "inc" in CALLS


def test_load_of_a_damaged_artifact_by_id_raises_cache_corruption_error(home):
    run = linear.run(1)
    damage_inline_values()
    with pytest.raises(fk.CacheCorruptionError, match="is damaged"):
        fk.Store.open().load(run.artifact_id("inc"))


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    files = ArtifactFiles(tmp_path / "artifacts")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        files.write("ab" * 16, b"payload")
    assert [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == []


def test_schema_is_versioned_and_migrated(tmp_path):
    path = tmp_path / "flowkit.db"
    MetadataDB(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(fk.StoreError, match="newer than this flowkit knows"):
        MetadataDB(path)


def test_runs_are_recorded_newest_first_with_task_runs_read_back(home):
    linear.run(1)
    failing.run()
    runs = fk.runs()
    assert [r.flow for r in runs] == ["failing", "linear"]
    latest = fk.runs(limit=1)[0]
    assert (latest.status, latest.trigger, latest.params) == ("failed", "manual", {})
    assert "task 'boom'" in latest.error
    statuses = {tr.node: tr.status for tr in latest.task_runs}
    assert statuses["boom"] == "failed" and statuses["add"] == "skipped"
    boom = next(tr for tr in latest.task_runs if tr.node == "boom")
    assert boom.error == "ValueError: boom on 1" and "raise ValueError" in boom.traceback
    assert [r.flow for r in fk.runs(flow=linear)] == ["linear"]
    assert [r.flow for r in fk.runs(status="completed")] == ["linear"]
    assert latest.info["host"] and "user" in latest.info
    with pytest.raises(fk.FlowRunError, match="failing"):
        latest.result()


def test_lineage_leads_from_an_artifact_to_the_data_code_and_parameters_that_made_it():
    @fk.task
    def load(rows: int, seed: int = 0):
        return big_frame(rows, seed)

    @fk.task
    def fit(df, alpha: float):
        return {"alpha": alpha, "mean": float(df.x.mean())}

    @fk.flow
    def train(rows: int = 1000):
        return fit(load(rows), alpha=0.5)

    first = train.run()
    model_id = first.artifact_id("fit")
    g = fk.lineage(model_id)
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    kinds = {n: d["kind"] for n, d in g.nodes(data=True)}
    fit_run, load_run = f"{first.id}/fit", f"{first.id}/load"
    data_id = first.artifact_id("load")
    assert kinds[model_id] == "artifact" and kinds[fit_run] == "task_run" and kinds[data_id] == "artifact"
    assert set(g.predecessors(model_id)) == {fit_run}
    assert data_id in set(g.predecessors(fit_run))
    assert set(g.predecessors(data_id)) == {load_run}
    params = {g.nodes[p]["name"]: g.nodes[p]["repr"] for p in g.predecessors(fit_run) if kinds[p] == "param"}
    assert params == {"alpha": "0.5"}
    # seed was left out: the task ran with its default, and lineage says so
    assert {g.nodes[p]["name"]: g.nodes[p]["repr"] for p in g.predecessors(load_run)} == {"rows": "1000", "seed": "0"}
    assert g.nodes[fit_run]["task"] == "fit" and g.nodes[fit_run]["run_id"] == first.id
    assert g.nodes[data_id]["rows"] == 1000 and g.nodes[data_id]["type"].endswith("DataFrame")
    # a cached artifact leads back to the run that computed it
    second = train.run()
    assert second.artifact_id("fit") == model_id and second.task_run("fit").status == "cached"
    assert set(fk.lineage(model_id[:10]).predecessors(model_id)) == {fit_run}
    with pytest.raises(KeyError, match="not in the store"):
        fk.lineage("0" * 32)


def test_gc_removes_only_what_nothing_references(home):
    run = linear.run(1)
    store = fk.Store.open()
    kept = run.artifact_id("inc")
    store.db.write(lambda c: c.execute(
        "INSERT INTO artifacts (id, uri, serializer, type, size, created) VALUES ('dead', NULL, 'pickle', 'x', 5, 0)"))
    report = store.gc(dry_run=True)
    assert report.artifacts == ["dead"] and report.dry_run
    assert store.artifact("dead") is not None
    store.gc()
    # the record of what gc removed stays, saying so; what is needed is untouched
    assert store.artifact("dead")["removed_by"] == "gc" and store.artifact(kept)["removed"] is None
    # an artifact only a cache entry references survives even when its run is old
    later = run.started + 90 * 86400
    assert store.gc(now=later).artifacts == []
    store.db.write(lambda c: c.execute("DELETE FROM cache"))
    assert sorted(store.gc(now=later, keep_days=30).artifacts) == sorted({run.artifact_id("one"), kept})


def test_several_processes_share_one_store(tmp_path, home):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import sys
        import flowkit as fk

        @fk.task
        def step(i, who):
            return i * 2

        @fk.task
        def total(xs):
            return sum(xs)

        @fk.flow
        def f(who: str, n: int = 60):
            return total(step.map(list(range(n)), who=who))

        for _ in range(3):
            assert f(sys.argv[1]) == 2 * sum(range(60))
        print("ok")
    """))
    env = {**os.environ, "FLOWKIT_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, str(script), f"w{i}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == "ok" and "locked" not in err
    runs = fk.runs(flow="f")
    assert len(runs) == 12 and {r.status for r in runs} == {"completed"}


def test_the_artifact_root_can_be_an_fsspec_url(tmp_path, caplog):
    store = fk.Store(tmp_path / "meta", artifacts="memory://flowkit-test-artifacts")

    @fk.flow(store=store)
    def f():
        return total_rows(frame(50_000)), frame(10)

    first = f.run()
    assert first.result()[0] == 50_000
    record = store.artifact(first.artifact_id("frame"))
    assert record["uri"].startswith("memory://flowkit-test-artifacts/")
    CALLS.clear()
    assert f.run(refresh=["total_rows"]).result()[0] == 50_000 and CALLS == ["total_rows"]
    # damage it: reported, removed, recomputed, as on a local disk
    store.files.fs.pipe_file(store.files._key(first.artifact_id("frame")), b"garbage")
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        assert f.run(refresh=["total_rows"]).result()[0] == 50_000
    assert CALLS == ["frame", "total_rows"] and "damaged" in caplog.text


def test_a_cached_value_that_no_longer_loads_is_recomputed_not_fatal(tmp_path, home, caplog):
    lib = tmp_path / "site-packages"  # an installed library: not part of task fingerprints
    lib.mkdir()
    (lib / "vendorlib.py").write_text("class Model:\n    def __init__(self, w):\n        self.w = w\n")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import flowkit as fk
        import vendorlib

        @fk.task
        def fit(w):
            cls = getattr(vendorlib, "Model", None) or vendorlib.Model2
            return cls(w)

        @fk.flow
        def f():
            return fit(3)

        run = f.run()
        print(run.status, run.result().w, run.task_run("fit").status)
    """))
    env = {**os.environ, "FLOWKIT_HOME": str(home), "PYTHONPATH": str(lib)}

    def go():
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)

    assert go().stdout.split() == ["completed", "3", "completed"]
    (lib / "vendorlib.py").write_text("class Model2:\n    def __init__(self, w):\n        self.w = w\n")
    out = go()  # the library renamed its class: the cached pickle cannot load any more
    assert out.stdout.split() == ["completed", "3", "completed"], out.stderr
    assert "could not be loaded" in out.stderr and "AttributeError" in out.stderr
    assert go().stdout.split() == ["completed", "3", "cached"]


def test_a_damaged_inline_value_is_repaired_once(home, caplog):
    linear.run(1)
    damage_inline_values()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        assert linear(1) == 2
    assert "damaged" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        run = linear.run(1)
    assert {tr.status for tr in run.task_runs} == {"cached"} and "damaged" not in caplog.text


def test_array_and_frame_subclasses_keep_their_type():
    @fk.task
    def masked():
        return np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])

    @fk.flow
    def f():
        return masked()

    first = f()
    again = f.run()
    assert again.task_run("masked").status == "cached"
    value = again.result()
    assert type(value) is type(first) and value.mask.tolist() == [False, True, False]


def test_a_task_is_recorded_once_when_a_damaged_chain_is_recomputed(home):
    linear.run(2)
    damage_inline_values()
    run = linear.run(2)
    nodes = [tr.node for tr in run.task_runs]
    assert run.result() == 3 and sorted(nodes) == sorted(set(nodes)) == ["inc", "inc#2", "one"]


def test_a_long_constant_is_recorded_in_lineage_by_digest_not_copied():
    @fk.task
    def render(name: str, template: str = "Dear {name}, " + "x" * 5000) -> str:
        return template.format(name=name)

    @fk.flow
    def letters():
        return render("Ada")

    run = letters.run()
    g = fk.lineage(run.artifact_id("render"))
    params = {d["name"]: (n, d["repr"]) for n, d in g.nodes(data=True) if d["kind"] == "param"}
    node_id, shown = params["template"]
    assert len(node_id) < 100 and "xxh3:" in node_id  # a digest stands for the 5 KB text...
    assert shown.startswith("'Dear {name}, xxx") and len(shown) <= 200  # ...and a short repr shows it
    assert params["name"][0].endswith("'Ada'")  # short constants are kept as they are


@fk.task(serializer="npy")
def listed(n: int) -> list[int]:
    return list(range(n))


@fk.task(serializer="parquet")
def counted(xs: list[int]) -> dict[str, int]:
    return {"n": len(xs)}


@fk.task
def kinds(xs: Any, d: Any) -> tuple[str, str]:
    return type(xs).__name__, type(d).__name__


@fk.flow
def mismatched(n: int = 3):
    xs = listed(n)
    c = counted(xs)
    return xs, c, kinds(xs, c)


def test_a_result_its_serializer_does_not_take_is_pickled_with_a_warning_and_loads_back_as_it_was(home, caplog):
    with caplog.at_level("WARNING", logger="flowkit"):
        first = mismatched.run()
    assert first.result() == ([0, 1, 2], {"n": 3}, ("list", "dict"))
    store = fk.Store.open()
    assert {tr.node: store.artifact(tr.artifact_id)["serializer"] for tr in first.task_runs
            if tr.node != "kinds"} == {"listed": "pickle", "counted": "pickle"}
    said = caplog.text
    assert "not the serializer='npy' its task asks for: 'npy' takes only numpy arrays" in said
    assert "not the serializer='parquet' its task asks for: 'parquet' takes only pandas DataFrames" in said
    again = mismatched.run()  # served from the cache: the same types, not an array
    assert {tr.status for tr in again.task_runs} == {"cached"}
    assert again.result() == ([0, 1, 2], {"n": 3}, ("list", "dict"))
