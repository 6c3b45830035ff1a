"""flowkit's SQL, as written for SQLite, said in PostgreSQL's words.

The SQL of :class:`~flowkit.store.sql.SQLMetadataStore` and the migration steps
are written once, in SQLite's spelling, kept to what both databases mean
(``INSERT ... ON CONFLICT``, ``RETURNING``, a quoted ``"user"``). What is left
differs in a few words, which these functions rewrite (each result is cached:
a statement is translated once per process):

============================================  ==============================================================
SQLite                                        PostgreSQL
============================================  ==============================================================
``?`` placeholders                            ``%s`` (and a literal ``%`` doubled)
``json_each(?)`` (a JSON array's values)      ``json_array_elements_text(%s::json)``
``x IN (SELECT value FROM json_each(?))``     ``x = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))``
``json_group_array(x)``                       ``json_agg(x)::text``
``json_extract(x, '$')``                      ``(x::jsonb #>> '{}')``
``instr(s, t)``                               ``strpos(s, t)``
``MAX(a, b)`` (two arguments)                 ``GREATEST(a, b)``
``INTEGER`` / ``REAL`` / ``BLOB``             ``BIGINT`` / ``DOUBLE PRECISION`` / ``BYTEA``
``INTEGER PRIMARY KEY AUTOINCREMENT``         ``BIGSERIAL PRIMARY KEY``
a table's implicit ``rowid``                  a ``rowid BIGSERIAL`` column
``WITHOUT ROWID``                             (nothing: every table is so in PostgreSQL)
a column named ``user``                       ``"user"`` (a keyword in PostgreSQL)
============================================  ==============================================================

Types are widened on purpose: SQLite's ``INTEGER`` holds 64 bits and its
``REAL`` is a double, PostgreSQL's ``INTEGER`` and ``REAL`` are half that.
"""

from __future__ import annotations

import functools
import operator
import re

__all__ = ["bulk", "columns_as_text", "copyable", "ddl", "dml", "unique_rows"]

_DML = [
    # "x IN (a set-returning function)" is planned with a guess of 100 rows and whatever the table's
    # statistics say, which before the first ANALYZE is a scan of the table; "x = ANY(an array)" is
    # planned as lookups in x's index.
    (re.compile(r"\bIN\s+\(SELECT value FROM json_each\(\?\)\)"),
     "= ANY(ARRAY(SELECT json_array_elements_text(?::json)))"),
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


_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\(([^()]*)\)(.*)$", re.I | re.S)


def _insert(sql: str) -> tuple[str, str, list[str], list[str], str] | None:
    """An ``INSERT INTO t (a, b) VALUES (?, 'x') tail``: (table, its column list, the names, the values, tail)."""
    match = _INSERT.match(sql)
    if match is None:
        return None
    table, columns, values, tail = match.groups()
    names = [c.strip() for c in columns.split(",")]
    items = [v.strip() for v in values.split(",")]
    return (table, columns, names, items, tail) if len(items) == len(names) else None


@functools.lru_cache(maxsize=1024)
def bulk(sql: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``INSERT INTO t (a, b) VALUES (?, ?) ...`` as one statement for any number of rows: (table, statement, columns).

    The rows go as one array per placeholder (``SELECT ... FROM unnest(%b::type[], ...)``),
    so a thousand rows cost one statement with a few parameters instead of a thousand. The
    statement holds ``{0}``, ``{1}``... where each array's type goes (see :func:`typed`).
    ``None`` for a statement that is not such an ``INSERT``.
    """
    parts = _insert(sql)
    if parts is None:
        return None
    table, columns, names, items, tail = parts
    takes: list[str] = []
    select = []
    for name, item in zip(names, items):
        if item == "?":
            select.append(f"u.c{len(takes)}")
            takes.append(name.strip('"'))
        else:
            select.append(item)
    # %b: each array is sent as a binary text[], which psycopg builds without quoting every element
    # (the text form costs about as much as the rest of the write); the server casts it to the column's type.
    arrays = ", ".join(f"%b::{{{i}}}[]" for i in range(len(takes)))
    aliases = ", ".join(f"c{i}" for i in range(len(takes)))
    statement = (f"INSERT INTO {table} ({columns}) SELECT {', '.join(select)} FROM unnest({arrays}) AS u({aliases})"
                 + dml(tail).replace("{", "{{").replace("}", "}}"))
    return table, statement, tuple(takes)


_LITERAL = re.compile(r"^(?:'([^']*)'|(-?\d+)|(NULL))$", re.I)
_TAIL = re.compile(r"^\s*(ON\s+CONFLICT\b.*)?$", re.I | re.S)


@functools.lru_cache(maxsize=1024)
def copyable(sql: str) -> tuple[str, str, tuple[object, ...]] | None:
    """``INSERT INTO t (a, b, c) VALUES (?, ?, 'x') [ON CONFLICT ...]`` as a ``COPY``: (table, columns, constants).

    ``columns`` lists the placeholders' columns first and then those of the constants, so a
    row to copy is the statement's row followed by ``constants``. ``None`` when a value is
    an expression (a cast, a function call) or the statement says more than ``ON CONFLICT``
    (``RETURNING``): those go through :func:`bulk`.

    A ``COPY`` writes rows only where no row conflicts with one already there, and then it
    writes what the ``INSERT`` would have written; where one conflicts, it fails whole.
    """
    parts = _insert(sql)
    if parts is None or not _TAIL.match(parts[4]):
        return None
    table, _, names, items, _ = parts
    taken, fixed, constants = [], [], []
    for name, item in zip(names, items):
        if item == "?":
            taken.append(name)
            continue
        literal = _LITERAL.match(item)
        if literal is None:
            return None
        text, number, _ = literal.groups()
        fixed.append(name)
        constants.append(text if text is not None else int(number) if number is not None else None)
    return table, ", ".join(taken + fixed), tuple(constants)


def _text(value: object) -> str | None:
    """A Python value as PostgreSQL reads it from text, whatever the column's type (cast on the server)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same double
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return str(value)


def columns_as_text(rows: list[tuple], count: int, types: list[str]) -> list[list[str | None]]:
    """The rows' values, one list per column, as text (integers that came as floats rounded, as SQLite would)."""
    out = []
    for i, column in enumerate(zip(*rows) if rows else [()] * count):
        if types[i] == "bigint":
            out.append([None if v is None else str(round(v)) if isinstance(v, float) else _text(v) for v in column])
        elif types[i] == "text":
            out.append([v if v is None or type(v) is str else _text(v) for v in column])
        else:
            out.append([_text(v) for v in column])
    return out


_UPSERT = re.compile(r"\bON\s+CONFLICT\s*(?:\(([^)]*)\))?\s*DO\s+(NOTHING|UPDATE\s+SET\s+(.*?))(\s+WHERE\s+.*)?$",
                     re.I | re.S)
_COLUMNS = re.compile(r"^\s*INSERT\s+INTO\s+\w+\s*\(([^)]*)\)", re.I)
_ONLY_EXCLUDED = re.compile(r"^\s*\w+\s*=\s*(excluded\.\w+|NULL|'[^']*'|\d+)\s*$", re.I)


@functools.lru_cache(maxsize=1024)
def _conflict(sql: str) -> tuple[tuple[int, ...], str] | None:
    """The key columns' positions and how duplicates resolve (``"first"``, ``"last"``, ``"same"``) of an upsert."""
    upsert, columns = _UPSERT.search(sql), _COLUMNS.match(sql)
    if upsert is None or columns is None or upsert.group(1) is None:
        return None
    names = [c.strip().strip('"') for c in columns.group(1).split(",")]
    key = tuple(names.index(c.strip().strip('"')) for c in upsert.group(1).split(","))
    if upsert.group(2).upper() == "NOTHING":
        return key, "first"  # the first row is inserted, the others do nothing
    idempotent = all(_ONLY_EXCLUDED.match(part) for part in upsert.group(3).split(","))
    if upsert.group(4) is None:
        return key, "last"  # each row overwrites the one before: the last one stays
    return key, "same" if idempotent else "none"


def unique_rows(sql: str, rows: list[tuple]) -> list[tuple] | None:
    """``rows`` without those an upsert would write over within one statement, where the result is the same.

    PostgreSQL refuses a statement that updates one row twice; SQLite applies the rows one
    after another. Duplicates of a key resolve as that would: ``DO NOTHING`` keeps the
    first, an unconditional ``DO UPDATE`` the last, a conditional one drops exact copies
    (its ``SET`` only assigns the new row's values, so a copy changes nothing). ``None``:
    the rows cannot go in one statement (write them one by one).
    """
    conflict = _conflict(sql)
    if conflict is None:  # a plain INSERT, or ON CONFLICT DO NOTHING without a target, is fine as it is
        return None if re.search(r"\bDO\s+UPDATE\b", sql, re.I) else rows
    key, keep = conflict
    of = operator.itemgetter(*key)
    seen: dict[object, tuple] = {}
    if keep == "last":
        seen = {of(row): row for row in rows}
        return list(seen.values()) if len(seen) != len(rows) else rows
    for row in rows:
        k = of(row)
        if k not in seen:
            seen[k] = row
        elif keep == "none" or (keep == "same" and seen[k] != row):
            return None
    return list(seen.values()) if len(seen) != len(rows) else rows
