"""The translation of flowkit's SQLite-spelled SQL into PostgreSQL's (no server needed)."""

from __future__ import annotations

from flowkit.store.postgres_sql import bulk, columns_as_text, copyable, ddl, dml, unique_rows
from flowkit.store.sql import upsert


def test_queries_get_postgresql_words_and_placeholders():
    assert dml("SELECT x FROM t WHERE k IN (SELECT value FROM json_each(?)) AND n LIKE ? ESCAPE '\\' "
               "AND instr(s, '/') > 0 AND MAX(a, ?) = 1") == (
        "SELECT x FROM t WHERE k = ANY(ARRAY(SELECT json_array_elements_text(%s::json))) AND n LIKE %s "
        "ESCAPE '\\' AND strpos(s, '/') > 0 AND GREATEST(a, %s) = 1")
    assert dml("SELECT j.value FROM json_each(?) j") == "SELECT j.value FROM json_array_elements_text(%s::json) j"
    assert dml("SELECT json_group_array(a.alias), COUNT(*) FROM m WHERE p LIKE '%x'") == (
        "SELECT json_agg(a.alias)::text, COUNT(*) FROM m WHERE p LIKE '%%x'")


def test_tables_get_wide_types_and_a_rowid_unless_without_rowid():
    assert ddl("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, x REAL, b BLOB, user TEXT)") == (
        'CREATE TABLE t ( rowid BIGSERIAL, id TEXT PRIMARY KEY, n BIGINT, x DOUBLE PRECISION, b BYTEA, "user" TEXT)')
    assert ddl("CREATE TABLE t (a TEXT, b INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID") == (
        "CREATE TABLE t (a TEXT, b BIGINT, PRIMARY KEY (a, b))")
    assert ddl("CREATE TABLE p (seq INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)") == (
        "CREATE TABLE p (seq BIGSERIAL PRIMARY KEY, v TEXT)")


def test_duplicate_keys_resolve_as_row_by_row_upserts_would():
    update = upsert("c", ("k", "v"), ("k",))
    assert unique_rows(update, [("a", 1), ("b", 2), ("a", 3)]) == [("a", 3), ("b", 2)]  # the last wins
    nothing = "INSERT INTO c (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING"
    assert unique_rows(nothing, [("a", 1), ("a", 3)]) == [("a", 1)]  # the first wins
    guarded = ("INSERT INTO c (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v "
               "WHERE c.v IS NULL")
    assert unique_rows(guarded, [("a", 1), ("a", 1)]) == [("a", 1)]  # exact copies change nothing
    assert unique_rows(guarded, [("a", 1), ("a", 2)]) is None  # order matters: written one by one
    plain = "INSERT INTO i (k, v) VALUES (?, ?)"
    assert unique_rows(plain, [("a", 1), ("a", 1)]) == [("a", 1), ("a", 1)]  # no key: every row is kept


def test_many_rows_go_as_one_statement_of_arrays_with_constants_kept():
    table, statement, takes = bulk("INSERT INTO tr (k, status, n) VALUES (?, 'cached', ?) "
                                   "ON CONFLICT (k) DO UPDATE SET n = excluded.n")
    assert (table, takes) == ("tr", ("k", "n"))
    assert statement.format("text", "bigint") == (
        "INSERT INTO tr (k, status, n) SELECT u.c0, 'cached', u.c1 FROM unnest(%b::text[], %b::bigint[]) "
        "AS u(c0, c1) ON CONFLICT (k) DO UPDATE SET n = excluded.n")
    assert columns_as_text([("a", True, 1.5, b"\x01", None, 2.0)], 6,
                           ["text", "bigint", "double precision", "bytea", "text", "bigint"]) == [
        ["a"], ["1"], ["1.5"], ["\\x01"], [None], ["2"]]


def test_inserts_of_placeholders_and_plain_constants_can_be_copied():
    assert copyable("INSERT INTO t (a, b, c, d) VALUES (?, 'x', ?, 0) ON CONFLICT (a) DO UPDATE SET b = excluded.b") == (
        "t", "a, c, b, d", ("x", 0))
    assert copyable("INSERT INTO i (k, v) VALUES (?, ?)") == ("i", "k, v", ())
    assert copyable("INSERT INTO t (a, b) VALUES (?, NULL)") == ("t", "a, b", (None,))
    assert copyable("INSERT INTO t (a, b) VALUES (?, ?::json)") is None  # an expression: only the statement says it
    assert copyable("INSERT INTO t (a) VALUES (?) RETURNING a") is None
    assert copyable("UPDATE t SET a = ?") is None
