"""What the store refuses to trust: re-pointed cache rows, artifacts not signed with the project's key,
tampered schedule parameters, and artifacts that no longer load under this process's library versions."""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import sqlite3
import textwrap

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main
from flowkit.errors import ArtifactSignatureError, IncompatibleArtifactError
from flowkit.hashing import digest
from flowkit.scheduler import Scheduler
from flowkit.store.serializers import library_versions

CALLS: list[str] = []
BIG = 40_000  # characters: past the inline limit, so the value lives in an artifact file


@fk.task
def word(text: str, size: int = 1) -> str:
    CALLS.append(text)
    return text * size


@fk.flow
def two_words(size: int = 1) -> tuple[str, str]:
    return word("apple", size), word("pear", size)


def _mark(path: str) -> str:
    """What the evil pickle below calls when it is unpickled: it leaves a file behind."""
    with open(path, "w") as f:
        f.write("unpickled")
    return "evil"


class Evil:
    """A pickle that runs code when it is loaded (here, harmlessly: it writes a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_mark, (self.marker,))


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()
    yield
    CALLS.clear()


def db(home) -> sqlite3.Connection:
    return sqlite3.connect(home / "flowkit.db", isolation_level=None)


def entry(home, text: str) -> tuple[str, str, str]:
    """(cache key, artifact id, task run id) of the entry of ``word(text)``."""
    rows = db(home).execute("SELECT key, artifact_id, task_run_id FROM cache").fetchall()
    reader = fk.Store(home, sign=False)  # the values a run stored: safe to load here
    (row,) = [r for r in rows if reader.load(r[1]).startswith(text)]
    return row


def store_at(home, sign: bool) -> fk.Store:
    return fk.Store(home, sign=sign)


# --- cache entries bound to their key ------------------------------------------------------------

@pytest.mark.parametrize("sign", [False, True])
def test_a_cache_row_re_pointed_to_another_valid_artifact_is_refused_and_recomputed(tmp_path, sign, caplog):
    home = tmp_path / "store"
    flow = two_words.with_options(store=store_at(home, sign))
    assert flow.run().result() == ("apple", "pear")
    con = db(home)
    apple_key, _, _ = entry(home, "apple")
    _, pear_artifact, _ = entry(home, "pear")
    con.execute("UPDATE cache SET artifact_id = ? WHERE key = ?", (pear_artifact, apple_key))
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        run = flow.run()
    assert run.result() == ("apple", "pear")  # not ("pear", "pear")
    assert CALLS == ["apple"]  # recomputed; the other entry is still served
    (warning,) = [r.getMessage() for r in caplog.records if "cache entry" in r.getMessage()]
    assert "task 'word'" in warning and apple_key in warning and pear_artifact in warning
    assert "did not record as its value" in warning and "nothing of that artifact was read" in warning
    CALLS.clear()
    assert flow.run().result() == ("apple", "pear") and CALLS == []  # the recomputed entry replaced it


def test_with_signing_a_row_re_pointed_with_its_task_run_too_is_refused(tmp_path, caplog):
    home = tmp_path / "store"
    flow = two_words.with_options(store=store_at(home, True))
    flow.run()
    con = db(home)
    apple_key, _, _ = entry(home, "apple")
    _, pear_artifact, pear_producer = entry(home, "pear")
    pear_signature = con.execute("SELECT signature FROM cache WHERE artifact_id = ?", (pear_artifact,)).fetchone()[0]
    # All a database writer can do: every column consistent with pear's, its signature copied.
    con.execute("UPDATE cache SET artifact_id = ?, task_run_id = ?, signature = ? WHERE key = ?",
                (pear_artifact, pear_producer, pear_signature, apple_key))
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        assert flow.run().result() == ("apple", "pear")
    assert CALLS == ["apple"]
    assert any("not signed with this store's key" in r.getMessage() for r in caplog.records)


@fk.task
def ints(rows: int) -> list[int]:
    return list(range(rows))


@fk.task
def triple(x: int) -> int:
    CALLS.append(f"triple({x})")
    return 3 * x


@fk.task
def sum_of(xs: list[int]) -> int:
    return sum(xs)


@fk.flow
def tripled(rows: int = 4) -> int:
    return sum_of(triple.map(ints(rows)))


@pytest.mark.parametrize("sign", [False, True])
def test_an_entry_found_by_content_is_refused_when_re_pointed_and_not_filed_under_a_new_key(tmp_path, sign, caplog):
    home = tmp_path / "store"
    flow = tripled.with_options(store=store_at(home, sign))
    first = flow.run(4)
    con = db(home)
    two, three = first.task_run("triple[2]"), first.task_run("triple[3]")
    columns = "artifact_id = ?, task_run_id = ?" + (", signature = (SELECT signature FROM cache WHERE key = ?)"
                                                     if sign else "")
    values = (three.artifact_id, three.id, three.cache_key) if sign else (three.artifact_id, two.id)
    con.execute(f"UPDATE cache SET {columns} WHERE key = ?", (*values, two.cache_key))
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        grown = flow.run(5)  # a longer list: its items are found by their elements' content
    assert grown.result() == 3 * (0 + 1 + 2 + 3 + 4)
    assert sorted(CALLS) == ["triple(2)", "triple(4)"]
    assert any("found by the content of its inputs is not used" in r.getMessage() for r in caplog.records)
    CALLS.clear()
    assert flow.run(5).result() == 30 and CALLS == []


# --- artifacts signed with the project's key -----------------------------------------------------

def _plant_evil(home, con: sqlite3.Connection, marker, *, in_place: bool) -> str:
    """Make the cache entry of word('apple') lead to a pickle that runs code; return its artifact id."""
    store = fk.Store(home)
    key, artifact_id, producer = entry(home, "apple")
    evil = pickle.dumps(Evil(str(marker)), protocol=5) + b"." * BIG  # a valid pickle: loading stops at its end
    if in_place:  # the file under the old digest overwritten
        path = store.files.path(artifact_id)
        path.chmod(0o644)
        path.write_bytes(evil)
        return artifact_id
    evil_id = digest(evil)  # a new, valid artifact: its file named by its digest, a record of its own
    path = store.files.write(evil_id, evil)
    signature = con.execute("SELECT signature FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()[0]
    con.execute("INSERT INTO artifacts (id, uri, serializer, type, size, created, signature) VALUES "
                "(?, ?, 'pickle', 'builtins.str', ?, 0, ?)", (evil_id, str(path), len(evil), signature))
    run_id, _, node = producer.partition("/")
    con.execute("UPDATE task_runs SET artifact_id = ? WHERE run_id = ? AND node = ?", (evil_id, run_id, node))
    con.execute("UPDATE cache SET artifact_id = ? WHERE key = ?", (evil_id, key))
    return evil_id


@pytest.mark.parametrize("in_place", [False, True], ids=["new-artifact", "file-overwritten"])
def test_with_signing_an_artifact_replaced_by_another_pickle_is_refused_before_unpickling(tmp_path, in_place):
    home, marker = tmp_path / "store", tmp_path / "unpickled.txt"
    flow = two_words.with_options(store=store_at(home, True))
    flow.run(BIG)
    evil_id = _plant_evil(home, db(home), marker, in_place=in_place)
    CALLS.clear()
    assert flow.run(BIG).result() == ("apple" * BIG, "pear" * BIG)
    assert CALLS == ["apple"]
    assert not marker.exists()  # nothing of it was unpickled
    if not in_place:
        with pytest.raises(ArtifactSignatureError, match=f"artifact {evil_id} .*task 'word'.*not signed"):
            store_at(home, True).load(evil_id)
        assert not marker.exists()


def test_without_signing_a_consistent_new_artifact_is_loaded_which_is_what_signing_is_for(tmp_path):
    home, marker = tmp_path / "store", tmp_path / "unpickled.txt"
    flow = two_words.with_options(store=store_at(home, False))
    flow.run(BIG)
    evil_id = _plant_evil(home, db(home), marker, in_place=False)
    assert store_at(home, False).load(evil_id) == "evil" and marker.exists()


def test_signing_off_and_on_round_trip(tmp_path, monkeypatch):
    home = tmp_path / "store"
    off, on = two_words.with_options(store=store_at(home, False)), two_words.with_options(store=store_at(home, True))
    assert off.run().result() == ("apple", "pear") and CALLS == ["apple", "pear"]
    CALLS.clear()
    assert off.run().result() == ("apple", "pear") and CALLS == []
    assert on.run().result() == ("apple", "pear") and CALLS == ["apple", "pear"]  # unsigned entries: recomputed
    CALLS.clear()
    run = on.run()
    assert run.result() == ("apple", "pear") and CALLS == []  # now signed: served
    assert {tr.status for tr in run.task_runs} == {"cached"}
    artifact_id = run.task_runs[0].artifact_id
    assert store_at(home, True).load(artifact_id) in ("apple", "pear")
    assert off.run().result() == ("apple", "pear") and CALLS == []  # signing off ignores the signatures
    key_file = home / "signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_bytes()) == 32
    # Another key (FLOWKIT_SIGNING_KEY on every host of a shared store) does not accept this one's signatures.
    monkeypatch.setenv("FLOWKIT_SIGNING_KEY", "k" * 40)
    with pytest.raises(ArtifactSignatureError, match="FLOWKIT_SIGNING_KEY"):
        fk.Store(home, sign=True).load(artifact_id)
    monkeypatch.setenv("FLOWKIT_SIGN_ARTIFACTS", "1")
    CALLS.clear()
    assert two_words.with_options(store=fk.Store(home)).run().result() == ("apple", "pear")
    assert CALLS == ["apple", "pear"]


def test_a_bad_signing_setting_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWKIT_SIGN_ARTIFACTS", "maybe")
    with pytest.raises(fk.StoreError, match="FLOWKIT_SIGN_ARTIFACTS='maybe'"):
        fk.Store(tmp_path / "a")
    monkeypatch.setenv("FLOWKIT_SIGN_ARTIFACTS", "1")
    monkeypatch.setenv("FLOWKIT_SIGNING_KEY", "short")
    with pytest.raises(fk.StoreError, match="FLOWKIT_SIGNING_KEY is 5 characters long"):
        two_words.with_options(store=fk.Store(tmp_path / "b")).run().result()


# --- the scheduler's stored parameters -----------------------------------------------------------

FLOWS = textwrap.dedent('''
    import flowkit as fk

    CALLS = []

    @fk.task
    def work(tag):
        CALLS.append(tag)
        return tag

    @fk.flow
    def job(tag: str = "default"):
        return work(tag)

    @fk.flow
    def other(tag: str = "other"):
        return work("other:" + tag)

    @fk.flow(schedule=fk.Cron("0 3 * * *"))
    def nightly():
        return work("nightly")
''')


@pytest.fixture
def flows(tmp_path):
    path = tmp_path / "safety_flows.py"
    path.write_text(FLOWS)
    from flowkit.flowref import load_module

    return load_module(str(path))


def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize("tamper", ["evil-pickle", "blob-of-another-schedule", "flow-re-pointed"])
def test_a_tampered_schedule_is_refused_and_the_others_still_fire(flows, tmp_path, tamper, caplog):
    clock = fk.ManualClock(start=_at("2026-06-01T02:59:00+00:00"))
    scheduler = Scheduler(clock=clock)
    scheduler.add(flows.job, "0 3 * * *", params={"tag": "a"}, name="a")
    scheduler.add(flows.job, "0 3 * * *", params={"tag": "b"}, name="b")
    marker = tmp_path / "unpickled.txt"
    con = sqlite3.connect(scheduler.store.home / "flowkit.db", isolation_level=None)
    if tamper == "evil-pickle":
        con.execute("UPDATE schedules SET params_pickle = ? WHERE name = 'a'", (pickle.dumps(Evil(str(marker))),))
    elif tamper == "blob-of-another-schedule":
        con.execute("UPDATE schedules SET params_pickle = (SELECT params_pickle FROM schedules WHERE name = 'b') "
                    "WHERE name = 'a'")
    else:
        con.execute("UPDATE schedules SET flow_ref = replace(flow_ref, ':job', ':other') WHERE name = 'a'")
    (refused,) = [s for s in scheduler.schedules() if s.name == "a"]
    assert refused.params == {} and "schedule 'a'" in refused.refused and "not signed" in refused.refused
    clock.advance(61)
    with caplog.at_level(logging.ERROR, logger="flowkit"):
        fired = {f.schedule: f.status for f in scheduler.tick()}
    assert fired == {"a": "failed", "b": "completed"}
    assert flows.CALLS == ["b"]  # nothing of 'a' ran: not its flow, nor 'other'
    assert not marker.exists()
    assert any("schedule 'a'" in r.getMessage() and "not signed" in r.getMessage() for r in caplog.records)
    listed = {s["name"]: s for s in json.loads(CliRunner().invoke(main, ["schedule", "ls", "--json"]).output)}
    assert "not signed" in listed["a"]["refused"] and listed["b"]["refused"] is None
    assert "refused" in CliRunner().invoke(main, ["schedule", "ls"]).output
    scheduler.add(flows.job, "0 3 * * *", params={"tag": "a"}, name="a")  # adding it again trusts it again
    assert scheduler.get("a").refused is None and scheduler.get("a").params == {"tag": "a"}


def test_a_declared_schedule_that_was_refused_is_stored_again_from_its_code(flows):
    scheduler = Scheduler(clock=fk.ManualClock(start=_at("2026-06-01T02:59:00+00:00")))
    scheduler.ensure(flows.nightly)
    sqlite3.connect(scheduler.store.home / "flowkit.db", isolation_level=None).execute(
        "UPDATE schedules SET params_pickle = ? WHERE name = 'nightly'", (pickle.dumps({"x": 1}),))
    assert scheduler.get("nightly").refused is not None
    scheduler.ensure(flows.nightly)  # what `flowkit scheduler flows.py` does at start
    assert scheduler.get("nightly").refused is None and scheduler.get("nightly").params == {}


def test_schedule_parameters_keep_their_types_through_the_signature(flows):
    scheduler = Scheduler(clock=fk.ManualClock(start=_at("2026-06-01T02:59:00+00:00")))
    day = dt.date(2026, 6, 1)
    scheduler.add(flows.job, "0 3 * * *", params={"tag": day})
    assert scheduler.get("job").params == {"tag": day}


# --- incompatible artifacts ----------------------------------------------------------------------

@fk.task
def frame(n: int):
    import pandas as pd

    CALLS.append("frame")
    return pd.DataFrame({"x": list(range(n))})


@fk.task
def obj(n: int):
    CALLS.append("obj")
    return {"n": n, "when": dt.date(2026, 1, n)}


@fk.flow
def tables(n: int = 3):
    return frame(n), obj(n)


def test_artifacts_record_the_versions_of_the_libraries_that_wrote_them(tmp_path):
    import pandas as pd
    import pyarrow as pa

    run = tables.with_options(store=fk.Store(tmp_path / "s")).run()
    store = fk.Store(tmp_path / "s")
    by_task = {tr.name: store.artifact(tr.artifact_id) for tr in run.task_runs}
    versions = by_task["frame"].versions
    assert versions["pandas"] == pd.__version__ and versions["pyarrow"] == pa.__version__
    assert versions["python"] == library_versions()["python"]
    assert by_task["obj"].versions["python"] == versions["python"]


def test_an_artifact_that_fails_to_load_under_other_versions_says_so(tmp_path, caplog):
    import pandas as pd

    home = tmp_path / "s"
    flow = tables.with_options(store=fk.Store(home))
    run = flow.run()
    artifact_id = {tr.name: tr.artifact_id for tr in run.task_runs}["obj"]
    # As if written elsewhere: by pandas 1.5.3 under Python 3.9, bytes naming a module pandas no longer has.
    broken = b"\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x15pandas.core.old_stuff\x94\x8c\x05Thing\x94\x93\x94."
    con = db(home)
    con.execute("UPDATE artifacts SET data = ?, id = ?, versions = ? WHERE id = ?",
                (broken, digest(broken), json.dumps({"python": "3.9.18", "pandas": "1.5.3"}), artifact_id))
    con.execute("UPDATE cache SET artifact_id = ? WHERE artifact_id = ?", (digest(broken), artifact_id))
    con.execute("UPDATE task_runs SET artifact_id = ? WHERE artifact_id = ?", (digest(broken), artifact_id))
    with pytest.raises(IncompatibleArtifactError) as info:
        fk.Store(home).load(digest(broken))
    text = str(info.value)
    assert f"artifact {digest(broken)} was written by pandas 1.5.3 / python 3.9.18" in text
    assert f"this process has pandas {pd.__version__} / python {library_versions()['python']}" in text
    assert "ModuleNotFoundError" in text and isinstance(info.value.__cause__, ModuleNotFoundError)
    assert info.value.recorded == {"python": "3.9.18", "pandas": "1.5.3"}
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        assert flow.run().result()[1] == {"n": 3, "when": dt.date(2026, 1, 3)}
    assert CALLS == ["obj"]  # the cache's way with a value that does not load: recompute it
    assert any("was written by pandas 1.5.3" in r.getMessage() and "'obj'" in r.getMessage()
               for r in caplog.records)


def test_a_load_failure_under_the_same_versions_is_the_original_error(tmp_path):
    home = tmp_path / "s"
    run = tables.with_options(store=fk.Store(home)).run()
    artifact_id = {tr.name: tr.artifact_id for tr in run.task_runs}["obj"]
    broken = b"\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x0fno_such_module_\x94\x8c\x01T\x94\x93\x94."
    db(home).execute("UPDATE artifacts SET data = ?, id = ? WHERE id = ?", (broken, digest(broken), artifact_id))
    with pytest.raises(ModuleNotFoundError):
        fk.Store(home).load(digest(broken))


# --- models --------------------------------------------------------------------------------------

def test_with_signing_models_registered_with_the_key_load_and_others_are_refused(tmp_path):
    from flowkit.ml import registry

    home = tmp_path / "store"
    unsigned = fk.registry.register("old", {"weights": [1, 2]}, store=fk.Store(home, sign=False))
    signed_store = fk.Store(home, sign=True)
    fk.registry.register("new", {"weights": [3, 4]}, store=signed_store)
    registry._MEMO.clear()  # loaded models are memoized per process: read them from the store
    assert fk.registry.load("new", store=signed_store) == {"weights": [3, 4]}
    with pytest.raises(ArtifactSignatureError, match=f"artifact {unsigned.artifact_id} .*not signed"):
        fk.registry.load("old", store=signed_store)
    assert fk.registry.load("old", store=fk.Store(home, sign=False)) == {"weights": [1, 2]}


def test_the_web_view_never_unpickles_a_table_to_preview_it(tmp_path):
    from flowkit.ui.app import artifact_data

    home, marker = tmp_path / "store", tmp_path / "unpickled.txt"
    evil = pickle.dumps(Evil(str(marker)))
    db_ = fk.Store(home).db
    db(home).execute("INSERT INTO artifacts (id, uri, serializer, type, size, created, data) VALUES "
                     "(?, NULL, 'pickle', 'pandas.core.frame.DataFrame', ?, 0, ?)", (digest(evil), len(evil), evil))
    assert db_.artifact(digest(evil)) is not None
    shown = artifact_data(fk.Store(home), digest(evil))
    assert shown["preview"] is None and "stored as pickle" in shown["preview_note"] and not marker.exists()
