"""SQLite's ``executemany`` of an ``INSERT`` as one statement (flowkit.store.sqlite_bulk).

Each test writes the same rows twice into one real SQLite file, through the bulk form and
row by row through :meth:`sqlite3.Connection.executemany`, and compares what the two tables
hold, types included.
"""

from __future__ import annotations

import enum
import math
import sqlite3
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowkit as fk
from flowkit.store import sql as store_sql
from flowkit.store.sqlite import SQLiteMetadataStore
from flowkit.store.sqlite_bulk import BulkConnection, bulk_statements, keyed_statement

pytestmark = pytest.mark.skipif(sqlite3.sqlite_version_info < (3, 38), reason="bulk writes need SQLite 3.38")

_TABLE = "(k INTEGER PRIMARY KEY, t TEXT, i INTEGER, r REAL, b BLOB, n)"


def _insert(table: str, tail: str = "") -> str:
    return f"INSERT INTO {table} (k, t, i, r, b, n) VALUES (?, ?, ?, ?, ?, ?){tail}"


@pytest.fixture(autouse=True)
def beside_a_busy_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """As beside a run's thread: another thread wants the GIL, so rows go in one statement.

    With no other thread (flowkit.store.parked.alone) they go row by row; that choice is
    tested in a process of its own, where no other test's threads are alive.
    """
    from flowkit.store import sqlite_bulk

    monkeypatch.setattr(sqlite_bulk, "alone", lambda: False)


@pytest.fixture
def conn(tmp_path: Path) -> BulkConnection:
    c = sqlite3.connect(tmp_path / "bulk.db", isolation_level=None, factory=BulkConnection)
    for name in ("bulk", "rows"):
        c.execute(f"CREATE TABLE {name} {_TABLE}")
    return c


def _both(conn: BulkConnection, rows: list[tuple], tail: str = "") -> tuple[list, list]:
    """What the bulk form and row-by-row writes of ``rows`` left, each row with the SQL type of each value."""
    conn.executemany(_insert("bulk", tail), rows)
    sqlite3.Connection.executemany(conn, _insert("rows", tail), rows)
    read = ("SELECT k, t, typeof(t), i, typeof(i), r, typeof(r), b, typeof(b), n, typeof(n) FROM {} ORDER BY k")
    return conn.execute(read.format("bulk")).fetchall(), conn.execute(read.format("rows")).fetchall()


def _statements(conn: BulkConnection) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    return seen


def _in_bulk(seen: list[str]) -> list[str]:
    return [s for s in seen if "WITH _rows(_at, _row) AS MATERIALIZED" in s]


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), _text, st.binary(max_size=64))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_text, _scalar, _scalar, st.one_of(st.none(), st.binary(max_size=64)), _scalar),
                min_size=1, max_size=30))
def test_rows_read_back_as_row_by_row_writes_leave_them(tmp_path_factory: pytest.TempPathFactory,
                                                        values: list[tuple]) -> None:
    path = tmp_path_factory.mktemp("bulk") / "bulk.db"
    c = sqlite3.connect(path, isolation_level=None, factory=BulkConnection)
    for name in ("bulk", "rows"):
        c.execute(f"CREATE TABLE {name} {_TABLE}")
    rows = [(k, *v) for k, v in enumerate(values)]
    seen = _statements(c)
    bulk, one_by_one = _both(c, rows)
    assert bulk == one_by_one
    assert len(_in_bulk(seen)) == 1  # written as one statement, not fallen back to rows


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), _scalar, _scalar), min_size=1, max_size=30))
def test_an_upsert_of_repeated_keys_ends_as_row_by_row_writes_end(tmp_path_factory: pytest.TempPathFactory,
                                                                  values: list[tuple]) -> None:
    c = sqlite3.connect(tmp_path_factory.mktemp("bulk") / "bulk.db", isolation_level=None, factory=BulkConnection)
    for name in ("bulk", "rows"):
        c.execute(f"CREATE TABLE {name} {_TABLE}")
    upsert = " ON CONFLICT (k) DO UPDATE SET t = excluded.t, i = coalesce({0}.i, 0) + coalesce(excluded.i, 0)"
    rows = [(k, t, i, None, None, None) for k, t, i in values]
    seen = _statements(c)
    cursor = c.executemany(_insert("bulk", upsert.format("bulk")), rows)
    expected = sqlite3.Connection.executemany(c, _insert("rows", upsert.format("rows")), rows)
    assert len(_in_bulk(seen)) == 1
    assert cursor.rowcount == expected.rowcount == len(rows)
    read = "SELECT k, t, typeof(t), i, typeof(i) FROM {} ORDER BY k"
    assert c.execute(read.format("bulk")).fetchall() == c.execute(read.format("rows")).fetchall()


def test_many_rows_are_one_statement(conn: BulkConnection) -> None:
    rows = [(k, f"t{k}", k, k / 3, bytes([k % 256]) * (k % 5), None) for k in range(500)]
    seen = _statements(conn)
    cursor = conn.executemany(_insert("bulk"), rows)
    assert len(seen) == 1 and _in_bulk(seen) == seen and cursor.rowcount == 500
    assert conn.execute("SELECT COUNT(*), SUM(length(b)), SUM(b IS NULL) FROM bulk").fetchone() == (
        500, sum(k % 5 for k in range(500)), 0)


def test_empty_bytes_stay_empty_bytes_and_none_stays_null(conn: BulkConnection) -> None:
    bulk, one_by_one = _both(conn, [(1, "a", 1, 1.0, b"", None), (2, "b", 2, 2.0, None, b""), (3, "", 0, 0.0, b"x", "")])
    assert bulk == one_by_one
    assert [r[7:9] for r in bulk] == [(b"", "blob"), (None, "null"), (b"x", "blob")]


def test_a_later_row_of_the_same_key_updates_the_earlier_one(conn: BulkConnection) -> None:
    upsert = " ON CONFLICT (k) DO UPDATE SET t = excluded.t, i = bulk.i + excluded.i"
    rows = [(1, "first", 1, None, None, None), (2, "other", 5, None, None, None), (1, "second", 10, None, None, None)]
    conn.executemany(_insert("bulk", upsert), rows)
    assert conn.execute("SELECT k, t, i FROM bulk ORDER BY k").fetchall() == [(1, "second", 11), (2, "other", 5)]


class Label(str):
    """A subclass of a plain type, which an adapter may bind as it likes."""


@pytest.mark.parametrize("odd", [math.nan, math.inf, "a\x00b", Label("x")], ids=["nan", "infinity", "nul", "subclass"])
def test_what_json_cannot_say_goes_row_by_row(conn: BulkConnection, odd: object) -> None:
    seen = _statements(conn)
    bulk, one_by_one = _both(conn, [(1, "a", 1, 1.0, None, None), (2, "b", 2, 2.0, None, odd)])
    assert bulk == one_by_one
    assert not _in_bulk(seen)


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(("column", "odd"), [(3, -math.inf), (1, math.inf), (5, math.inf), (3, np.float64(1.5)),
                                             (2, Level.HIGH), (4, bytearray(b"x")), (1, Label("x"))],
                         ids=["-infinity", "infinity-among-texts", "infinity-in-an-untyped-column", "numpy-float",
                              "int-enum", "bytearray", "text-subclass"])
def test_a_column_with_a_value_json_cannot_say_or_of_a_subclass_goes_row_by_row(conn: BulkConnection, column: int,
                                                                                 odd: object) -> None:
    rows = [[1, "a", 1, 1e308, b"y", "x"], [2, "b", 2, 2.0, None, b"z"]]
    rows[1][column] = odd
    seen = _statements(conn)
    bulk, one_by_one = _both(conn, [tuple(row) for row in rows])
    assert bulk == one_by_one
    assert not _in_bulk(seen)


class Row(NamedTuple):
    k: int
    t: str
    i: int
    r: float
    b: bytes | None
    n: object


def test_rows_of_a_named_tuple_or_lists_are_one_statement_as_tuples_are(conn: BulkConnection) -> None:
    seen = _statements(conn)
    bulk, one_by_one = _both(conn, [Row(1, "a", 1, 1.5, b"x", None), [2, "b", 2, 2.5, None, "n"]])
    assert bulk == one_by_one
    assert len(_in_bulk(seen)) == 1


@pytest.mark.parametrize("huge", [2**64, 2**1100], ids=["past-64-bits", "past-the-largest-float"])
def test_an_integer_sqlite_cannot_hold_beside_floats_fails_as_row_by_row(conn: BulkConnection, huge: int) -> None:
    with pytest.raises(OverflowError):
        conn.executemany(_insert("bulk"), [(0, "ok", 0, 0.5, None, None), (1, "a", 1, huge, None, None)])
    assert conn.execute("SELECT COUNT(*) FROM bulk").fetchone() == (1,)  # what came before it, as row by row


def test_finite_floats_whose_sum_is_past_the_largest_float_are_still_one_statement(conn: BulkConnection) -> None:
    seen = _statements(conn)
    bulk, one_by_one = _both(conn, [(1, "a", 1, 1e308, None, 1e308), (2, "b", 2, 1e308, None, "x")])
    assert bulk == one_by_one
    assert len(_in_bulk(seen)) == 1


@pytest.mark.parametrize("row", [(1, "a", 1, 1.0, None, object()), (1, "a", 1, 1.0, b"x", [1, 2]),
                                 (1, "a", 1, 1.0, None, {"a": 1}), (1, "a", 1, 1.0, None), (1, "a", 1, 1.0, None, 2, 3)],
                         ids=["object", "list-beside-bytes", "dict", "too-short", "too-long"])
def test_what_sqlite_cannot_bind_fails_as_row_by_row(conn: BulkConnection, row: tuple) -> None:
    with pytest.raises(sqlite3.ProgrammingError):
        conn.executemany(_insert("bulk"), [(0, "ok", 0, 0.0, b"y", None), row])
    assert conn.execute("SELECT COUNT(*) FROM bulk").fetchone() == (1,)  # what came before it, as row by row


def test_more_rows_than_a_statement_takes_go_in_order(conn: BulkConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowkit.store import sqlite_bulk

    monkeypatch.setattr(sqlite_bulk, "CHUNK", 7)
    upsert = " ON CONFLICT (k) DO UPDATE SET t = excluded.t"
    rows = [(k % 10, f"v{k}", k, None, bytes([k]), None) for k in range(50)]
    seen = _statements(conn)
    conn.executemany(_insert("bulk", upsert), rows)
    assert len(_in_bulk(seen)) == 8  # 50 rows, 7 a statement
    assert conn.execute("SELECT k, t FROM bulk ORDER BY k").fetchall() == [(k, f"v{40 + k}") for k in range(10)]


def test_the_stores_own_inserts_are_one_statement_each() -> None:
    from flowkit.store.sqlite_predictions import _INSERT as predictions
    from flowkit.store.sqlite_schedules import _FIRE_COLUMNS
    from flowkit.store.sqlite_tracking import INSERT_CHECKS, INSERT_TRACKED

    for sql in (store_sql._PUT_TASK_RUNS, store_sql._PUT_CACHED, store_sql._PUT_ATTEMPTS, store_sql._PUT_CACHE,
                INSERT_TRACKED, INSERT_CHECKS, predictions, store_sql._PUT_ARTIFACTS,
                f"INSERT INTO fires ({_FIRE_COLUMNS}) VALUES (?, ?, 'missed', NULL, ?, ?) ON CONFLICT DO NOTHING"):
        assert bulk_statements(sql) is not None, sql


@pytest.mark.parametrize("sql", [
    "INSERT INTO bulk (k, t) SELECT ?, ?",
    "INSERT INTO bulk (k, t) VALUES (?, lower(?))",
    "INSERT INTO bulk (k, t) VALUES (?, ?) RETURNING k",
    "INSERT INTO bulk (k, t) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET t = ?",
    "UPDATE bulk SET t = t || ? WHERE k = ?",  # depends on the row: rows of one key cannot be one
    "UPDATE bulk SET t = ? WHERE k = ? AND i = 1",
    "UPDATE bulk SET t = ? WHERE k > ?",
    "DELETE FROM bulk WHERE k = ? AND i = 1",
    "DELETE FROM bulk WHERE k IN (?)",
])
def test_statements_of_other_shapes_are_not_rewritten(sql: str) -> None:
    assert bulk_statements(sql) is None and keyed_statement(sql) is None


def test_an_insert_without_a_column_list_is_one_statement_too(conn: BulkConnection) -> None:
    seen = _statements(conn)
    conn.executemany("INSERT INTO bulk VALUES (?, ?, ?, ?, ?, ?)", [(1, "a", 1, 1.5, b"x", None), (2, "b", 2, 2.5, None, 3)])
    assert len(seen) == 1
    assert conn.execute("SELECT * FROM bulk ORDER BY k").fetchall() == [(1, "a", 1, 1.5, b"x", None), (2, "b", 2, 2.5, None, 3)]


def test_literals_among_the_marks_are_kept() -> None:
    plain, _, marks = bulk_statements(store_sql._PUT_CACHED)  # status 'cached' and attempts 0 are literals
    assert "'cached'" in plain and ", 0 FROM _rows" in plain and marks == 7


def test_a_run_recorded_in_bulk_reads_back(tmp_path: Path) -> None:
    @fk.task
    def make(i: int) -> bytes:
        return bytes([i]) * i

    @fk.task
    def size(b: bytes) -> int:
        return len(b)

    @fk.flow
    def sizes(n: int) -> list[int]:
        return [size(make(i)) for i in range(n)]

    flow = sizes.with_options(store=tmp_path)
    assert flow.run(40).result() == list(range(40))
    assert flow.run(40).result() == list(range(40))  # every value found again, from the inline bytes
    db = SQLiteMetadataStore(tmp_path / "flowkit.db")
    assert isinstance(db.conn, BulkConnection)
    run = db.runs(limit=1)[0]
    rows = db.task_runs(run.id)
    assert len(rows) == 80 and {r.status for r in rows} == {"cached"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                                                   st.floats(allow_nan=False, allow_infinity=False), _text)),
                max_size=30),
       st.lists(st.integers(0, 8), max_size=12))
def test_updates_and_deletes_by_key_end_as_row_by_row_ones_end(tmp_path_factory: pytest.TempPathFactory,
                                                               updates: list[tuple], deletes: list[int]) -> None:
    c = sqlite3.connect(tmp_path_factory.mktemp("bulk") / "bulk.db", isolation_level=None, factory=BulkConnection)
    for name in ("bulk", "rows"):
        c.execute(f"CREATE TABLE {name} {_TABLE}")
        c.executemany(f"INSERT INTO {name} (k, t) VALUES (?, ?)", [(k, f"t{k}") for k in range(6)])  # no key 6
    seen = _statements(c)
    for name, many in (("bulk", c.executemany), ("rows", lambda sql, rows: sqlite3.Connection.executemany(c, sql, rows))):
        many(f"UPDATE {name} SET n = ?, t = 'updated', i = NULL WHERE k = ?", [(v, k) for k, v in updates])
        many(f"DELETE FROM {name} WHERE k = ?", [(k,) for k in deletes])
    read = "SELECT k, t, i, n, typeof(n) FROM {} ORDER BY k"
    assert c.execute(read.format("bulk")).fetchall() == c.execute(read.format("rows")).fetchall()
    bulk = [s for s in seen if "json_each" in s]
    assert len(bulk) == (1 if updates else 0) + (1 if deletes else 0)


def test_an_update_by_key_counts_the_rows_it_changed(conn: BulkConnection) -> None:
    conn.executemany(_insert("bulk"), [(k, "a", k, None, None, None) for k in range(5)])
    cursor = conn.executemany("UPDATE bulk SET t = ? WHERE k = ?", [("x", 1), ("y", 1), ("z", 3), ("w", 9)])
    assert cursor.rowcount == 2  # keys 1 and 3 (one row each; 9 is not there)
    assert conn.execute("SELECT k, t FROM bulk WHERE t != 'a' ORDER BY k").fetchall() == [(1, "y"), (3, "z")]


def test_the_stores_own_updates_and_deletes_by_key_are_one_statement_each() -> None:
    import inspect

    source = inspect.getsource(store_sql.SQLMetadataStore)
    for sql in ("UPDATE artifacts SET removed = ?, removed_by = 'damaged', data = NULL WHERE id = ?",
                "DELETE FROM cache WHERE key = ?", "UPDATE artifacts SET signature = ? WHERE id = ?",
                "UPDATE cache SET signature = ? WHERE key = ?",
                "UPDATE artifacts SET removed = ?, removed_by = ?, data = NULL WHERE id = ?"):
        assert f'"{sql}"' in source, sql  # the statement as the store says it
        assert keyed_statement(sql) is not None, sql


_ALONE = r"""
import json, sqlite3, sys, tempfile, threading
from pathlib import Path
from flowkit.store import sqlite_bulk, writer as writer_module
from flowkit.store.parked import alone, parked
from flowkit.store.protocols import Batch
from flowkit.store.sqlite import SQLiteMetadataStore
from flowkit.store.writer import BatchWriter

folder = Path(tempfile.mkdtemp())
conn = sqlite3.connect(folder / "t.db", isolation_level=None, factory=sqlite_bulk.BulkConnection)
conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
seen = []
conn.set_trace_callback(seen.append)
out = {}

def bulk_statements(label, start):
    seen.clear()
    conn.executemany("INSERT INTO t (k, v) VALUES (?, ?)", [(start + i, "v") for i in range(5)])
    out[label] = sum("json_each" in s for s in seen), len(seen)  # (in one statement, statements)

bulk_statements("one thread", 0)
stop = threading.Event()
busy = threading.Thread(target=stop.wait)  # not parked: may want the GIL at any time
busy.start()
bulk_statements("beside a thread", 10)
stop.set(); busy.join()
go, stop = threading.Event(), threading.Event()
def waits_on_the_writer():
    with parked():
        go.set()
        stop.wait()
quiet = threading.Thread(target=waits_on_the_writer)
quiet.start(); go.wait()
bulk_statements("beside a parked thread", 20)
stop.set(); quiet.join()

# The writer's thread, while the run's thread waits for it in drain().
db = SQLiteMetadataStore(folder / "flowkit.db")
db.start_run({"id": "r", "flow": "f", "status": "running", "started": 1.0})
release, writing = threading.Event(), threading.Event()
flush, real = db.flush, writer_module.parked
seen_by_writer = []
def held(batch):
    writing.set()
    release.wait()
    seen_by_writer.append(alone())
    flush(batch)
db.flush = held
class Announced:
    def __enter__(self):
        self.inner = real(); self.inner.__enter__()
        release.set()  # parked now: the writer may look
    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)
writer_module.parked = Announced
writer = BatchWriter(db)
batch = Batch()
batch.task_runs.append(("r", "n", 1, "t", "completed", 1, 1.0, 2.0, None, None, None, None, None, None, None, None))
while_running = []
writer.submit(batch)
writing.wait()
while_running.append(alone())  # this thread runs, the writer's is busy
writer.drain()
idle = threading.Event()
class Idle(Announced):
    def __enter__(self):
        super().__enter__()
        if threading.current_thread().name == "flowkit-recorder":
            idle.set()  # the writer's thread, waiting for work
writer_module.parked = Idle
db.flush = flush
writer.submit(Batch())  # the writer wakes, writes nothing, and waits again: parked
idle.wait()
out["run, writer idle"] = alone()
writer.close()
out["writer, run waiting"] = seen_by_writer
out["run, writer busy"] = while_running
out["rows"] = [r.node for r in db.task_runs("r")]
print(json.dumps(out))
"""


def test_rows_go_one_by_one_only_when_no_other_thread_wants_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _ALONE], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["one thread"] == [0, 5]  # row by row (a statement each): no other thread
    assert out["beside a thread"] == [1, 1]  # one statement: the other thread may want the GIL
    assert out["beside a parked thread"] == [0, 5]
    assert out["writer, run waiting"] == [True] and out["run, writer busy"] == [False]
    assert out["run, writer idle"] is True  # the writer's idle thread is parked
    assert out["rows"] == ["n"]


def test_each_piece_is_decided_as_it_is_written(conn: BulkConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowkit.store import sqlite_bulk

    monkeypatch.setattr(sqlite_bulk, "CHUNK", 4)
    monkeypatch.setattr(sqlite_bulk, "BY_ROW", 2)
    answers = iter([False, True, True, False])  # the run's thread starts waiting, then another thread wakes
    monkeypatch.setattr(sqlite_bulk, "alone", lambda: next(answers))
    upsert = " ON CONFLICT (k) DO UPDATE SET t = excluded.t"
    rows = [(k % 5, f"v{k}", k, None, None, None) for k in range(12)]
    seen = _statements(conn)
    conn.executemany(_insert("bulk", upsert), rows)
    assert ["json_each" in s for s in seen] == [True, False, False, False, False, True]
    assert conn.execute("SELECT k, t FROM bulk ORDER BY k").fetchall() == [
        (0, "v10"), (1, "v11"), (2, "v7"), (3, "v8"), (4, "v9")]


def test_rows_json_cannot_say_go_row_by_row_after_pieces_written_alone(conn: BulkConnection,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from flowkit.store import sqlite_bulk

    monkeypatch.setattr(sqlite_bulk, "CHUNK", 4)
    monkeypatch.setattr(sqlite_bulk, "BY_ROW", 2)
    answers = iter([True, False])  # alone for the first piece; then the rows are looked at, and refused
    monkeypatch.setattr(sqlite_bulk, "alone", lambda: next(answers))
    seen = _statements(conn)
    rows = [(k, f"t{k}", k, float(k), None, None) for k in range(5)] + [(5, "nan", 5, math.nan, None, None)]
    bulk, one_by_one = _both(conn, rows)
    assert bulk == one_by_one and len(bulk) == 6
    assert not _in_bulk(seen)
