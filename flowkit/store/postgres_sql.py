"""flowkit's SQL, as written for SQLite, said in PostgreSQL's words.

The SQL of :class:`~flowkit.store.sql.SQLMetadataStore` and the migration steps
are written once, in SQLite's spelling, kept to what both databases mean
(``INSERT ... ON CONFLICT``, ``RETURNING``, a quoted ``"user"``). What is left
differs in a few words, which these functions rewrite (each result is cached:
a statement is translated once per process):

=========================================  ==============================================
SQLite                                      PostgreSQL
=========================================  ==============================================
``?`` placeholders                          ``%s`` (and a literal ``%`` doubled)
``json_each(?)`` (a JSON array's values)    ``json_array_elements_text(%s::json)``
``json_group_array(x)``                     ``json_agg(x)::text``
``json_extract(x, '$')``                    ``(x::jsonb #>> '{}')``
``instr(s, t)``                             ``strpos(s, t)``
``MAX(a, b)`` (two arguments)               ``GREATEST(a, b)``
``INTEGER`` / ``REAL`` / ``BLOB``           ``BIGINT`` / ``DOUBLE PRECISION`` / ``BYTEA``
``INTEGER PRIMARY KEY AUTOINCREMENT``       ``BIGSERIAL PRIMARY KEY``
a table's implicit ``rowid``                a ``rowid BIGSERIAL`` column
``WITHOUT ROWID``                           (nothing: every table is so in PostgreSQL)
a column named ``user``                     ``"user"`` (a keyword in PostgreSQL)
=========================================  ==============================================

Types are widened on purpose: SQLite's ``INTEGER`` holds 64 bits and its
``REAL`` is a double, PostgreSQL's ``INTEGER`` and ``REAL`` are half that.
"""

from __future__ import annotations

import functools
import re

__all__ = ["ddl", "dml"]

_DML = [
    (re.compile(r"\bjson_each\(\?\)"), "json_array_elements_text(?::json)"),
    (re.compile(r"\bjson_group_array\(([^()]*)\)"), r"json_agg(\1)::text"),
    (re.compile(r"\bjson_extract\(([^(),]+), '\$'\)"), r"(\1::jsonb #>> '{}')"),
    (re.compile(r"\binstr\("), "strpos("),
    (re.compile(r"\bMAX\(([^(),]+), ([^(),]+)\)"), r"GREATEST(\1, \2)"),
]

_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"(?<![\"\w.])user(?=\s+TEXT\b)", re.I), '"user"'),
]
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?[\w\"]+\s*\(", re.I)
_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.I)


@functools.lru_cache(maxsize=4096)
def dml(sql: str) -> str:
    """A query or write in SQLite's spelling, for psycopg (``%s`` placeholders)."""
    for pattern, replacement in _DML:
        sql = pattern.sub(replacement, sql)
    return sql.replace("%", "%%").replace("?", "%s")


@functools.lru_cache(maxsize=1024)
def ddl(statement: str) -> str:
    """One migration statement (``CREATE TABLE``, ``ALTER TABLE``, ``CREATE INDEX``...) for PostgreSQL.

    A table SQLite gives an implicit ``rowid`` (one not ``WITHOUT ROWID``, and without an
    ``INTEGER PRIMARY KEY`` of its own) gets a ``rowid BIGSERIAL`` column, so that queries
    ordering by ``rowid`` (insertion order) mean the same.
    """
    text = statement.strip()
    creates = _CREATE_TABLE.match(text)
    keeps_rowid = creates is not None and not _WITHOUT_ROWID.search(text) and not re.search(
        r"\bINTEGER PRIMARY KEY\b", text, re.I)
    text = _WITHOUT_ROWID.sub(")", text)
    for pattern, replacement in _TYPES:
        text = pattern.sub(replacement, text)
    if creates is not None and keeps_rowid:
        text = text[: creates.end()] + " rowid BIGSERIAL, " + text[creates.end():]
    for pattern, replacement in _DML:
        text = pattern.sub(replacement, text)
    return text
