"""The contract every metadata backend keeps: records round-trip, no write is lost among processes,
a batch is all or nothing, fires and the lease go to exactly one claimant, migrations apply once and
upgrade old stores, gc keeps what is referenced. Real stores in temporary folders, real processes."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import flowkit as fk
from backends import METADATA, V6_STEPS, metadata_backend, metadata_url, run_processes  # noqa: F401 - fixtures
from flowkit.hashing import digest
from flowkit.store import Store, open_store
from flowkit.store import migrations as registry
from flowkit.store.protocols import (ArtifactRow, Batch, CachedTaskRunRow, CacheRow, FileRecord, InputRow,
                                     MetadataStore, ScheduleRecord, TaskRunRow, inputs_column)


def run_row(run_id: str, flow: str = "f", started: float = 100.0, status: str = "running") -> dict:
    return {"id": run_id, "flow": flow, "status": status, "params": json.dumps({"n": 1}), "started": started,
            "trigger": "manual", "cache_salt": run_id}


def task_run(run_id: str, node: str, seq: int, artifact_id: str | None = None, started: float = 100.0,
             status: str = "completed", inputs: list[tuple[int, str]] | None = None) -> TaskRunRow:
    return TaskRunRow(run_id, node, seq, node.split("#")[0], status, 1, started, started + 1, f"key-{run_id}-{node}",
                      artifact_id, None, None, "main", None, None,
                      inputs_column(inputs) if inputs is not None else None)


def artifact(artifact_id: str, data: bytes | None = None, created: float = 100.0) -> ArtifactRow:
    uri = None if data is not None else f"/nowhere/{artifact_id}"
    return ArtifactRow(artifact_id, uri, "pickle", "builtins.int", 5, None, None, None, created, data)


def entry(key: str, artifact_id: str, run_id: str, created: float = 100.0, *, salted: bool = False,
          content: str | None = None) -> CacheRow:
    return CacheRow(key, artifact_id, "t", f"{run_id}/t", created, run_id, salted, None, content)


def test_the_sqlite_store_implements_the_protocol(metadata_url):
    db = open_store(metadata_url)
    assert isinstance(db, MetadataStore)
    assert db.url == metadata_url and open_store(db.url).url == db.url


def test_runs_task_runs_and_attempts_round_trip(metadata_url):
    db = open_store(metadata_url)
    db.start_run(run_row("r1", started=100.0))
    db.start_run(run_row("r2", flow="g", started=200.0))
    batch = Batch()
    batch.artifacts.append(artifact("a1"))
    batch.task_runs.append(task_run("r1", "load", 1, "a1"))
    batch.cached.append(CachedTaskRunRow("r1", "fit", 2, "fit", "k-fit", "a1", "r0/fit"))
    batch.attempts.extend([("r1", "load", 1, 100.0, 100.5, "ValueError: flaky"), ("r1", "load", 2, 100.5, 101.0, None)])
    batch.run_end = ("completed", 150.0, None, "r1")
    db.flush(batch)
    assert batch.empty()
    assert [r.id for r in db.runs()] == ["r2", "r1"]
    assert [r.id for r in db.runs(flow="f")] == ["r1"] and [r.id for r in db.runs(limit=1)] == ["r2"]
    assert [r.id for r in db.runs(status="completed")] == ["r1"]
    r1 = db.get_run("r1")
    assert (r1.status, r1.ended, r1.params, r1.cache_salt, r1.trigger) == ("completed", 150.0, {"n": 1}, "r1", "manual")
    assert db.get_run("r") is None and sorted(db.run_ids_like("r")) == ["r1", "r2"]
    assert db.run_ids_like("r2") == ["r2"] and db.run_ids_like("x") == []
    db.end_run("r2", "failed", 250.0, "task 'x' failed")
    assert db.get_run("r2").error == "task 'x' failed"
    assert [(t.node, t.status, t.source) for t in db.task_runs("r1")] == [("load", "completed", None),
                                                                           ("fit", "cached", "r0/fit")]
    assert [(a.node, a.number, a.error) for a in db.attempts("r1")] == [("load", 1, "ValueError: flaky"),
                                                                         ("load", 2, None)]
    assert db.has_other_runs("f", "r9") and not db.has_other_runs("f", "r1")
    with pytest.raises(ValueError, match="no field"):
        db.start_run({"id": "r3", "flow": "f", "status": "running", "colour": "red"})


def test_task_runs_are_found_by_tag_cached_ones_through_their_source(metadata_url):
    db = open_store(metadata_url)
    db.start_run(run_row("r1", started=100.0))
    db.start_run(run_row("r2", started=200.0))
    batch = Batch()
    batch.artifacts.append(artifact("a1"))
    batch.task_runs.extend([task_run("r1", "check", 1, "a1"), task_run("r1", "other", 2)])
    batch.cached.append(CachedTaskRunRow("r2", "check", 1, "check", "k", "a1", "r1/check"))
    batch.tracked.extend([("r1", "check", 0, "tag", "drift.name", None, None, json.dumps("features"), 100.0),
                          ("r1", "check", 1, "tag", "drift.name", None, None, json.dumps("features"), 100.0),
                          ("r1", "other", 0, "tag", "drift.name", None, None, json.dumps("labels"), 100.0),
                          ("r1", "check", 2, "metric", "drift.share", None, 0.5, None, 100.0)])
    db.flush(batch)
    found = db.tagged("drift.name", "features")
    assert [(t.run_id, t.node, t.status, t.started, t.artifact_id) for t in found] == [
        ("r1", "check", "completed", 100.0, "a1"), ("r2", "check", "cached", 200.0, "a1")]
    assert [t.node for t in db.tagged("drift.name", "labels")] == ["other"]
    assert db.tagged("drift.name", "nothing") == [] and db.tagged("drift.share", "0.5") == []


def test_a_prefix_is_matched_literally(metadata_url):
    db = open_store(metadata_url)
    db.start_run(run_row("ab_1"))
    db.start_run(run_row("abx1"))
    assert db.run_ids_like("ab_") == ["ab_1"]  # "_" is not a wildcard
    assert db.run_ids_like("%") == []


def test_concurrent_writer_processes_lose_no_records(metadata_url, tmp_path):
    processes, per_process, tasks = 8, 10, 5
    outs = run_processes(tmp_path, f"""
        from flowkit.store import open_store
        from flowkit.store.protocols import Batch, TaskRunRow
        db = open_store(sys.argv[1])
        for i in range({per_process}):
            run_id = f"{{sys.argv[2]}}-{{i}}"
            db.start_run({{"id": run_id, "flow": "f", "status": "running", "started": time.time()}})
            batch = Batch()
            for n in range({tasks}):
                batch.task_runs.append(TaskRunRow(run_id, f"n{{n}}", n, "t", "completed", 1, 0.0, 1.0, None, None,
                                                  None, None, None, None, None))
            batch.run_end = ("completed", time.time(), None, run_id)
            db.flush(batch)
        print("ok")
    """, [[metadata_url, f"p{i}"] for i in range(processes)])
    assert [o.strip() for o in outs] == ["ok"] * processes
    db = open_store(metadata_url)
    runs = db.runs()
    assert len(runs) == processes * per_process and {r.status for r in runs} == {"completed"}
    assert all(len(db.task_runs(r.id)) == tasks for r in runs)


def test_a_failed_batch_writes_nothing_and_is_kept(metadata_url):
    db = open_store(metadata_url)
    db.start_run(run_row("r1"))
    batch = Batch()
    batch.task_runs.append(task_run("r1", "a", 1, "good"))
    batch.artifacts.append(artifact("good"))
    batch.cache.append(entry("k1", "good", "r1"))
    batch.artifacts.append(ArtifactRow("bad", None, None, None, None, None, None, None, 100.0, b"x"))  # no serializer
    batch.run_end = ("completed", 200.0, None, "r1")
    with pytest.raises(Exception):
        db.flush(batch)
    assert db.task_runs("r1") == [] and db.artifact("good") is None and db.cache_lookup(["k1"]) == {}
    assert db.get_run("r1").status == "running"
    assert len(batch.task_runs) == 1 and batch.run_end is not None  # kept: the caller may retry it


def test_cache_lookups_serve_only_values_that_exist(metadata_url):
    db = open_store(metadata_url)
    db.start_run(run_row("r1"))
    batch = Batch()
    batch.artifacts.extend([artifact("a1"), artifact("a2", data=b"bytes"), artifact("a3")])
    batch.cache.extend([entry("k1", "a1", "r1", 100.0, content="c"), entry("k2", "a2", "r1", 200.0, content="c"),
                        entry("k3", "a3", "r1")])
    db.flush(batch)
    hits = db.cache_lookup(["k1", "k2", "missing"])
    assert set(hits) == {"k1", "k2"}
    assert (hits["k1"].artifact_id, hits["k1"].uri, hits["k1"].serializer) == ("a1", "/nowhere/a1", "pickle")
    assert hits["k2"].uri is None and hits["k2"].task_run_id == "r1/t"
    assert db.content_lookup(["c"])["c"].artifact_id == "a2"  # the newest entry with that content
    assert db.inline_many(["a1", "a2"]) == {"a2": b"bytes"} and db.inline_data("a2") == b"bytes"
    db.mark_removed(["a1"], 300.0, "damaged")
    assert "k1" not in db.cache_lookup(["k1"])
    entries = db.cache_entries()
    assert entries[0].key == "k2" and {e.key for e in entries} == {"k1", "k2", "k3"}  # newest first
    assert (entries[0].artifact_id, entries[0].size, entries[0].type) == ("a2", 5, "builtins.int")
    db.flush(_uncache("k3"))
    assert db.clear_cache(["t"], dry_run=True) == 2 and len(db.cache_entries()) == 2
    assert db.clear_cache(["other"]) == 0 and db.clear_cache() == 2 and db.cache_entries() == []


def test_cache_entries_are_bound_to_the_task_run_they_name_and_carry_their_signatures(metadata_url):
    db = open_store(metadata_url)
    db.start_run(run_row("r1"))
    batch = Batch()
    batch.artifacts.extend([artifact("a1"), artifact("a2")])
    batch.task_runs.extend([task_run("r1", "t", 1, "a1"), task_run("r1", "t#2", 2, "a2")])
    batch.cache.extend([entry("k1", "a1", "r1", content="c1"),
                        CacheRow("k2", "a1", "t", "r1/t#2", 100.0, "r1", False, None, "c2")])  # names t#2, which made a2
    batch.signed_artifacts.extend([("sig-a1", "a1"), ("sig-a2", "a2")])
    batch.signed_entries.append(("sig-k1", "k1"))
    db.flush(batch)
    hits = db.cache_lookup(["k1", "k2"])
    assert (hits["k1"].key, hits["k1"].content) == ("k1", "c1")
    assert (hits["k1"].signature, hits["k1"].artifact_signature) == ("sig-k1", "sig-a1")
    assert hits["k2"].signature is None and db.content_lookup(["c2"])["c2"].key == "k2"
    assert db.unbound_entries(["k1", "k2", "missing"]) == {"k2"} and db.unbound_entries([]) == set()
    batch.task_runs.append(task_run("r1", "t#2", 2, "a1"))  # now t#2 did make a1
    db.flush(batch)
    assert db.unbound_entries(["k1", "k2"]) == set()
    # A task run id is "<run id>/<node>": a node under a subflow has a "/", and so may a run id given by hand.
    db.start_run(run_row("team/nightly"))
    batch.task_runs.extend([task_run("r1", "sub/t", 3, "a1"), task_run("team/nightly", "sub/t", 1, "a1")])
    batch.cache.extend([CacheRow("k3", "a1", "sub/t", "r1/sub/t", 100.0, "r1", False, None, None),
                        CacheRow("k4", "a1", "sub/t", "team/nightly/sub/t", 100.0, "team/nightly", False, None, None),
                        CacheRow("k5", "a2", "sub/t", "team/nightly/sub/t", 100.0, "team/nightly", False, None, None)])
    db.flush(batch)
    assert db.unbound_entries(["k3", "k4", "k5"]) == {"k5"}  # k5 names a task run that made a1, not a2
    assert db.artifact("a2").signature == "sig-a2" and db.artifact("a1").versions is None
    batch.artifacts.append(ArtifactRow("a3", None, "pickle", "x.Y", 1, None, None, None, 100.0, b"z",
                                       json.dumps({"python": "3.12.1"})))
    db.flush(batch)
    assert db.artifact("a3").versions == {"python": "3.12.1"}


def _uncache(key: str) -> Batch:
    batch = Batch()
    batch.uncache.append(key)
    return batch


def test_artifact_records_keep_their_removal(metadata_url):
    db = open_store(metadata_url)
    batch = Batch()
    batch.artifacts.append(artifact("abc123", data=b"v"))
    db.flush(batch)
    record = db.artifact("abc123")
    assert record.inline and record.uri == "inline" and record["serializer"] == "pickle" and record.removed is None
    db.mark_removed(["abc123"], 500.0, "gc")
    record = db.artifact("abc123")
    assert (record.removed, record.removed_by, record.inline) == (500.0, "gc", False)
    assert db.artifact_ids_like("abc") == ["abc123"] and "abc123" not in db.stored_artifacts()
    batch.artifacts.append(artifact("abc123", data=b"v"))  # the same bytes again: the record comes back
    db.flush(batch)
    assert db.artifact("abc123").removed is None and db.stored_artifacts() == {"abc123": 5}


def test_lineage_queries(metadata_url):
    db = open_store(metadata_url)
    db.start_run(run_row("r1"))
    db.start_run(run_row("r2", started=300.0))
    batch = Batch()
    batch.task_runs.extend([task_run("r1", "load", 1, "d", started=100.0), task_run("r1", "fit", 2, "m"),
                            task_run("r2", "load", 1, "d", started=300.0)])
    batch.inputs.extend([InputRow("r1", "fit", 0, "artifact", "d", "load", None, None),
                         InputRow("r1", "fit", None, "param", None, "alpha", "tok", "0.5")])
    db.flush(batch)
    assert [p.id for p in db.producers("d")] == ["r2/load", "r1/load"]
    step = db.step("r1", "fit")
    assert (step.task, step.artifact_id, step.flow) == ("fit", "m", "f") and db.step("r1", "nope") is None
    assert [(i.kind, i.name) for i in db.consumed("r1", "fit")] == [("artifact", "load"), ("param", "alpha")]


def test_a_page_of_runs_its_counts_and_a_runs_edges(metadata_url):
    db = open_store(metadata_url)
    for i in range(7):
        row = run_row(f"p{i}", flow="a" if i % 2 else "b", started=100.0 + i, status="failed" if i == 3 else "completed")
        db.start_run({**row, "trigger": "schedule" if i >= 5 else "manual"})
    assert [r.id for r in db.run_page(limit=3)] == ["p6", "p5", "p4"]
    assert [r.id for r in db.run_page(limit=3, offset=3)] == ["p3", "p2", "p1"]
    assert [r.id for r in db.run_page(flow="a", status="completed")] == ["p5", "p1"]
    assert [r.id for r in db.run_page(trigger="schedule", offset=1)] == ["p5"]
    assert db.run_status_counts() == {"completed": 6, "failed": 1}
    assert db.run_status_counts(flow="a", trigger="manual") == {"completed": 1, "failed": 1}
    assert db.run_flows() == ["a", "b"]
    batch = Batch()
    batch.task_runs.extend([task_run("p0", "load", 1, "d"), task_run("p0", "fit", 2, "m"),
                            task_run("p0", "report", 3, status="skipped")])
    batch.inputs.extend([InputRow("p0", "fit", 0, "artifact", "d", "load", None, None),
                         InputRow("p0", "fit", None, "param", None, "alpha", "tok", "0.5")])
    batch.cached.extend([CachedTaskRunRow("p1", "load", 1, "load", "k1", "d", "p0/load"),
                         CachedTaskRunRow("p1", "fit", 2, "fit", "k2", "m", "p0/fit")])
    db.flush(batch)
    assert db.task_run_counts(["p0", "p1", "p2"]) == {"p0": {"completed": 2, "skipped": 1}, "p1": {"cached": 2}}
    assert db.run_edges("p0") == [("load", "fit")]
    assert db.run_edges("p1") == [("load", "fit")]  # a cached task run shows its source's edges
    assert db.run_edges("p2") == []
    assert db.artifact_consumers("d") == [("p0", "fit")]
    assert db.artifact_consumers("m") == []  # p1's cached fit consumed nothing


def test_inputs_kept_as_a_task_runs_column_read_as_rows(metadata_url):
    """Artifact inputs computed in the same run are the consumer's column; they read as if they were rows."""
    db = open_store(metadata_url)
    db.start_run(run_row("q0", started=100.0))
    db.start_run(run_row("q1", started=200.0))
    batch = Batch()
    batch.task_runs.extend([
        task_run("q0", "load", 1, "d"), task_run("q0", "part#0", 2, "p0"), task_run("q0", "part#1", 3, "p1"),
        task_run("q0", "none", 4, None),
        # position 0: `load`; position 1: a map's two items; position 2: a task that stored no value
        task_run("q0", "fit", 5, "m", inputs=[(0, "load"), (1, "part#0"), (1, "part#1"), (2, "none")]),
        task_run("q0", "again", 6, "m2", inputs=[(0, "load"), (1, "load")]),
    ])
    batch.inputs.append(InputRow("q0", "fit", None, "param", None, "alpha", "tok", "0.5"))
    # q1: `load` cached from q0 (its bytes computed elsewhere: a row), `fit` recomputed, `again` cached
    batch.cached.extend([CachedTaskRunRow("q1", "load", 1, "load", "k1", "d", "q0/load"),
                         CachedTaskRunRow("q1", "again", 3, "again", "k3", "m2", "q0/again")])
    batch.task_runs.append(task_run("q1", "fit", 2, "m3", started=200.0))
    batch.inputs.append(InputRow("q1", "fit", 0, "artifact", "d", "load", None, None))
    db.flush(batch)
    assert [(i.kind, i.artifact_id, i.name) for i in db.consumed("q0", "fit")] == [
        ("artifact", "d", "load"), ("artifact", "p0", "part#0"), ("artifact", "p1", "part#1"),
        ("param", None, "alpha")]
    assert [(i.artifact_id, i.name) for i in db.consumed("q0", "again")] == [("d", "load"), ("d", "load")]
    for run_id in ("q0", "q1"):  # the whole run at once reads the same
        assert db.run_inputs(run_id) == {tr.node: db.consumed(run_id, tr.node) for tr in db.task_runs(run_id)
                                         if db.consumed(run_id, tr.node)}
    assert set(db.run_inputs("q1")) == {"fit"}
    assert db.run_edges("q0") == [("load", "again"), ("load", "fit"), ("none", "fit"), ("part#0", "fit"),
                                  ("part#1", "fit")]
    assert db.run_edges("q1") == [("load", "again"), ("load", "fit")]  # `again` shows its source's edges
    assert db.artifact_consumers("d") == [("q0", "again"), ("q0", "fit"), ("q1", "fit")]
    assert db.artifact_consumers("p1") == [("q0", "fit")]
    assert db.artifact_consumers("m") == []
    assert [tr.inputs for tr in db.task_runs("q0")][-1] == inputs_column([(0, "load"), (1, "load")])


def test_file_records(metadata_url):
    db = open_store(metadata_url)
    assert db.file_record("/data/x.csv") is None
    db.record_file(FileRecord("/data/x.csv", 10, 123, "d1"))
    db.record_file(FileRecord("/data/x.csv", 11, 456, "d2"))
    assert db.file_record("/data/x.csv") == FileRecord("/data/x.csv", 11, 456, "d2")


def schedule(name: str = "s", checked: float = 100.0) -> ScheduleRecord:
    return ScheduleRecord(name, "pkg:flow", "flow", "* * * * *", "UTC", "none", "allow", None, "{}", b"", False,
                          100.0, checked)


def test_schedules_keep_paused_and_never_move_checked_back(metadata_url):
    db = open_store(metadata_url)
    db.put_schedule(schedule(checked=200.0))
    db.set_paused("s", True)
    db.put_schedule(schedule(checked=150.0))
    (s,) = db.schedules()
    assert s.paused and s.checked == 200.0
    db.set_paused("s", False, checked=300.0)
    assert not db.schedules()[0].paused and db.schedules()[0].checked == 300.0
    db.delete_schedule("s")
    assert db.schedules() == []


def test_fires_another_holder_left_without_a_run_are_abandoned(metadata_url):
    db = open_store(metadata_url)
    db.put_schedule(schedule())
    assert db.claim_fires("s", [1.0, 2.0, 3.0, 4.0], [], holder="dead", now=10.0) == [1.0, 2.0, 3.0, 4.0]
    db.start_run({"id": "began", "flow": "f", "status": "running", "started": 10.0})
    db.set_fire_status("s", [2.0, 3.0], "running", ["never-began", "began"])
    db.set_fire_status("s", [4.0], "completed")
    assert db.claim_fires("s", [5.0], [], holder="me", now=11.0) == [5.0]
    assert db.abandon_fires("me") == 2
    assert [(f.slot, f.status) for f in db.fires("s")] == [
        (1.0, "crashed"), (2.0, "crashed"), (3.0, "running"), (4.0, "completed"), (5.0, "pending")]
    assert db.abandon_fires("me") == 0


def test_each_fire_is_claimed_by_exactly_one_process(metadata_url, tmp_path):
    db = open_store(metadata_url)
    db.put_schedule(schedule())
    slots = [1000.0 + 60 * i for i in range(40)]
    outs = run_processes(tmp_path, f"""
        from flowkit.store import open_store
        db = open_store(sys.argv[1])
        got = []
        for slot in {slots!r}:
            got += db.claim_fires("s", [slot], [], holder=sys.argv[2], now=5000.0)
        print(" ".join(map(repr, got)))
    """, [[metadata_url, f"p{i}"] for i in range(4)])
    claims = [float(x) for out in outs for x in out.split()]
    assert sorted(claims) == slots  # every slot once, none twice
    fires = db.fires("s")
    assert len(fires) == 40 and {f.status for f in fires} == {"pending"}
    assert db.schedules()[0].checked == 5000.0


def test_claims_record_missed_and_skipped_slots(metadata_url):
    db = open_store(metadata_url)
    db.put_schedule(schedule())
    assert db.claim_fires("s", [60.0], [0.0], holder="a", now=61.0) == [60.0]
    assert db.claim_fires("s", [60.0], [0.0], holder="b", now=62.0) == []  # taken
    assert db.fire("s", 0.0).status == "missed" and db.fire("s", 60.0).holder == "a"
    assert db.take_lease("a", 61.0, 100.0)  # until 161
    # a's fire is still pending and a holds the lease: b skips the next slot when asked to
    assert db.claim_fires("s", [120.0], [], holder="b", now=121.0, skip_if_other_running=True) == []
    assert db.fire("s", 120.0).status == "skipped"
    assert db.claim_fires("s", [180.0], [], holder="a", now=181.0, skip_if_other_running=True) == [180.0]
    assert db.claim_fires("s", [240.0], [], holder="a", now=241.0, skip=True) == []
    db.set_fire_status("s", [60.0, 180.0], "running", ["run-1", "run-2"])
    db.set_fire_status("s", [60.0], "completed")
    assert [(f.slot, f.status, f.run_id) for f in db.fires("s")] == [
        (0.0, "missed", None), (60.0, "completed", "run-1"), (120.0, "skipped", None), (180.0, "running", "run-2"),
        (240.0, "skipped", None)]


def test_the_lease_has_one_holder_at_a_time(metadata_url, tmp_path):
    outs = run_processes(tmp_path, """
        from flowkit.store import open_store
        print(open_store(sys.argv[1]).take_lease(sys.argv[2], 100.0, 30.0))
    """, [[metadata_url, f"p{i}"] for i in range(4)])
    assert sorted(o.strip() for o in outs) == ["False", "False", "False", "True"]
    winner = f"p{[o.strip() for o in outs].index('True')}"
    db = open_store(metadata_url)
    assert not db.take_lease("other", 129.0, 30.0)
    assert db.take_lease(winner, 129.0, 30.0)  # renewed until 159
    db.release_lease("other")  # not its lease: nothing happens
    assert not db.take_lease("other", 158.0, 30.0) and db.take_lease("other", 160.0, 30.0)
    db.release_lease("other")
    assert db.take_lease(winner, 161.0, 30.0)


# --- migrations ---------------------------------------------------------------------------------

@pytest.fixture
def isolated_registry(monkeypatch):
    """Migration lists registered by a test vanish after it."""
    monkeypatch.setattr(registry, "_LISTS", dict(registry._LISTS))
    return registry


def test_a_fresh_store_has_the_core_schema(metadata_url):
    db = open_store(metadata_url)
    assert db.schema_version() == len(registry.migrations(registry.CORE, db.dialect)) >= V6_STEPS


def test_a_feature_migrates_once_even_when_registered_late(metadata_url, isolated_registry):
    db = open_store(metadata_url)
    ran = []
    steps = ["CREATE TABLE contract_notes (id INTEGER PRIMARY KEY, body TEXT)",
             "ALTER TABLE contract_notes ADD COLUMN extra TEXT", lambda conn: ran.append(conn is not None)]
    isolated_registry.register_migrations("contract_notes", steps, dialect=db.dialect)
    assert db.schema_version("contract_notes") == 0
    db.migrate("contract_notes")  # registered after the store opened
    db.migrate()
    assert db.schema_version("contract_notes") == 3 and ran == [True]
    again = open_store(metadata_url)  # a second CREATE TABLE would fail: applied steps never rerun
    assert again.schema_version("contract_notes") == 3 and ran == [True]
    with pytest.raises(ValueError, match="rewrite applied steps"):
        isolated_registry.register_migrations("contract_notes", steps[:1] + ["DROP TABLE contract_notes"],
                                              dialect=db.dialect)
    with pytest.raises(ValueError, match="no .* migrations are registered"):
        db.migrate("never_registered")


def test_a_store_newer_than_this_flowkit_is_refused(metadata_url, isolated_registry, monkeypatch):
    db = open_store(metadata_url)
    isolated_registry.register_migrations("contract_notes", ["CREATE TABLE contract_notes (id INTEGER)",
                                                             "ALTER TABLE contract_notes ADD COLUMN body TEXT"],
                                          dialect=db.dialect)
    db.migrate()
    isolated_registry._LISTS[(db.dialect, "contract_notes")] = isolated_registry._LISTS[
        (db.dialect, "contract_notes")][:1]
    with pytest.raises(fk.StoreError, match="newer than this flowkit knows"):
        open_store(metadata_url)
    core = isolated_registry.migrations(registry.CORE, db.dialect)  # PostgreSQL's: SQLite's steps, translated
    isolated_registry._LISTS[(db.dialect, registry.CORE)] = core[:-1]
    with pytest.raises(fk.StoreError, match="schema version .* newer than this flowkit knows"):
        open_store(metadata_url)


#: Backends with stores in the field made before named migration lists (PostgreSQL came after them).
LEGACY = pytest.mark.parametrize("metadata_backend", [b for b in METADATA if b.legacy is not None],
                                 ids=lambda b: b.name)


@LEGACY
def test_the_v6_steps_are_frozen(metadata_backend):
    steps = registry.migrations(registry.CORE, metadata_backend.name)[:V6_STEPS]
    assert hashlib.sha256("\0".join(steps).encode()).hexdigest() == _V6_SHA256[metadata_backend.name]


#: The digest of the core steps that made schema version 6: stores in the field were built by them,
#: so an edit to one of them would leave those stores with a schema nobody can migrate.
_V6_SHA256 = {"sqlite": "0a7187765433a31afc162e5a41442b4c03ce95b62b56b24dbdfa95cb14df5f1a"}


@LEGACY
def test_a_v6_store_upgrades_without_loss(metadata_backend, tmp_path, isolated_registry):
    core = registry.migrations(registry.CORE, metadata_backend.name)
    url = metadata_backend.legacy(tmp_path, list(core[:V6_STEPS]))
    legacy = open_store(url)  # opens as it is, and records survive
    legacy.start_run(run_row("r1"))
    batch = Batch()
    batch.artifacts.append(artifact("a1", data=b"x"))
    batch.task_runs.append(task_run("r1", "t", 1, "a1"))
    batch.cache.append(entry("k1", "a1", "r1"))
    legacy.flush(batch)
    legacy.put_schedule(schedule())
    legacy.close()
    # a later flowkit appends a core step: the v6 store upgrades in place
    isolated_registry.register_migrations(registry.CORE, [*core, "ALTER TABLE runs ADD COLUMN note TEXT"],
                                          dialect=metadata_backend.name)
    upgraded = open_store(url)
    assert upgraded.schema_version() == len(core) + 1
    assert upgraded.get_run("r1").flow == "f" and [t.node for t in upgraded.task_runs("r1")] == ["t"]
    assert upgraded.cache_lookup(["k1"])["k1"].artifact_id == "a1" and upgraded.inline_data("a1") == b"x"
    assert [s.name for s in upgraded.schedules()] == ["s"]


# --- gc and damaged values, through the Store -----------------------------------------------------

def test_gc_keeps_what_is_referenced_and_records_what_it_removed(metadata_url, tmp_path):
    store = Store(tmp_path / "home", db_url=metadata_url)
    now = 1_000_000_000.0
    old, recent = now - 90 * 86400, now - 86400
    values = {name: name.encode() * 100 for name in ("cached", "recent", "old", "salted", "stray")}
    ids = {name: digest(data) for name, data in values.items()}
    for name, data in values.items():
        path = store.files.write(ids[name], data)
        os.utime(path, (now - 7200, now - 7200))  # past the grace period
    store.db.start_run(run_row("old", started=old, status="completed"))
    store.db.start_run(run_row("new", started=recent, status="completed"))
    batch = Batch()
    batch.artifacts.extend(ArtifactRow(ids[n], str(store.files.path(ids[n])), "pickle", "bytes", 300, None, None,
                                       None, old, None) for n in ("cached", "recent", "old", "salted"))
    batch.task_runs.extend([task_run("old", "c", 1, ids["cached"], old), task_run("old", "o", 2, ids["old"], old),
                            task_run("old", "s", 3, ids["salted"], old),
                            task_run("new", "r", 1, ids["recent"], recent)])
    batch.cache.extend([entry("kc", ids["cached"], "old", old), entry("ks", ids["salted"], "old", old, salted=True)])
    store.db.flush(batch)
    dry = store.gc(now=now, dry_run=True)
    assert sorted(dry.artifacts) == sorted([ids["old"], ids["salted"], ids["stray"]]) and dry.bytes == 600
    assert all(store.files.exists(d) for d in ids.values())
    report = store.gc(now=now)
    assert sorted(report.artifacts) == sorted(dry.artifacts)
    for name in ("old", "salted"):
        record = store.artifact(ids[name])
        assert record.removed == now and record.removed_by == "gc"
    assert not store.files.exists(ids["stray"]) and store.artifact(ids["stray"]) is None
    for name in ("cached", "recent"):
        assert store.artifact(ids[name]).removed is None and store.files.verify(ids[name])
    assert set(store.db.cache_lookup(["kc", "ks"])) == {"kc"}  # the salted entry went with its value


def test_a_damaged_inline_value_is_detected_on_load(metadata_url, tmp_path):
    store = Store(tmp_path / "home", db_url=metadata_url)
    batch = Batch()
    batch.artifacts.append(ArtifactRow(digest(b"the real bytes"), None, "pickle", "bytes", 14, None, None, None,
                                       1.0, b"other bytes"))
    store.db.flush(batch)
    with pytest.raises(fk.CacheCorruptionError, match="is damaged"):
        store.load(digest(b"the real bytes"))
