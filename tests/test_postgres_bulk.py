"""Many rows of one write go by ``COPY`` where none conflicts, and as the statement says where one does.

Against a real server (``tests/pg_server.py``): the rows that land are the same either way.
"""

from __future__ import annotations

import pytest

from flowkit.store import open_store
from flowkit.store.postgres import COPY_ROWS, _Connection
from flowkit.store.sql import _PUT_CACHED, upsert

psycopg = pytest.importorskip("psycopg")

FILES = upsert("files", ("path", "size", "mtime_ns", "digest"), ("path",))


@pytest.fixture
def db(postgres, monkeypatch):
    url = postgres.database("bulk")
    store = open_store(url)
    copies: list[int | None] = []
    real = _Connection._copy

    def spy(self, sql, rows):
        copies.append(real(self, sql, rows))
        return copies[-1]

    monkeypatch.setattr(_Connection, "_copy", spy)
    store.copies = copies
    yield store
    store.close()
    postgres.drop(url)


def test_new_rows_go_by_copy_and_rows_that_update_by_the_upsert(db):
    db.write(lambda c: c.executemany(FILES, [(f"p{i}", i, i, "first") for i in range(100)]))
    assert db.copies == [100]
    # half of these name paths already there: the copy is undone and the upsert writes all of them
    db.write(lambda c: c.executemany(FILES, [(f"p{i}", 1000 + i, i, "second") for i in range(50, 150)]))
    assert db.copies == [100, None]
    got = {path: (size, digest) for path, size, digest in db.query("SELECT path, size, digest FROM files")}
    assert len(got) == 150
    assert got["p0"] == (0, "first") and got["p49"] == (49, "first")
    assert got["p50"] == (1050, "second") and got["p149"] == (1149, "second")


def test_a_value_copy_cannot_read_goes_through_the_statement(db):
    # a whole number that came as a float, in an integer column: the statement's path rounds it, as SQLite does
    db.write(lambda c: c.executemany(FILES, [(f"f{i}", float(i), i, None) for i in range(COPY_ROWS)]))
    assert db.copies == [None]
    assert db.query("SELECT size FROM files WHERE path = 'f7'") == [(7,)]


def test_constants_of_the_statement_are_copied_with_each_row(db):
    rows = [("r1", f"n{i}", i, "noop", f"k{i}", f"a{i}", None) for i in range(COPY_ROWS)]
    db.write(lambda c: c.executemany(_PUT_CACHED, rows))
    assert db.copies == [COPY_ROWS]
    assert db.query("SELECT node, status, attempts, cache_key FROM task_runs WHERE node = 'n3'") == [
        ("n3", "cached", 0, "k3")]


def test_a_few_rows_go_as_one_statement_without_a_copy(db):
    db.write(lambda c: c.executemany(FILES, [(f"s{i}", i, i, "x") for i in range(COPY_ROWS - 1)]))
    assert db.copies == []
    assert db.query("SELECT COUNT(*) FROM files") == [(COPY_ROWS - 1,)]


def test_a_table_that_doubled_is_analyzed_at_once_so_lookups_are_planned_on_its_size(db):
    from flowkit.store.postgres import ANALYZE_ROWS
    from flowkit.store.protocols import Batch

    def write(start: int, stop: int) -> float:
        batch = Batch()
        batch.cached.extend(("r1", f"n{i}", i, "noop", f"k{i}", f"a{i}", None) for i in range(start, stop))
        db.flush(batch)
        return db.query("SELECT reltuples FROM pg_class WHERE relname = 'task_runs' "
                        "AND relnamespace = current_schema()::regnamespace")[0][0]

    assert write(0, ANALYZE_ROWS - 1) < 0  # never analyzed: PostgreSQL would plan on an empty table
    assert write(ANALYZE_ROWS - 1, ANALYZE_ROWS) == ANALYZE_ROWS
    assert write(ANALYZE_ROWS, 2 * ANALYZE_ROWS - 1) == ANALYZE_ROWS  # not doubled yet
    assert write(2 * ANALYZE_ROWS - 1, 2 * ANALYZE_ROWS) == 2 * ANALYZE_ROWS
