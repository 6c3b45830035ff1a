"""Many rows in one SQLite statement: ``executemany`` of an ``INSERT`` as one ``INSERT ... SELECT``.

Python's :mod:`sqlite3` lets go of the GIL around each ``sqlite3_step`` and takes it back
after. ``executemany`` steps once per row, so on a thread beside one that runs Python (the
run's thread, beside the recorder's writer) it waits for the GIL after every row, and the
other thread hands it over only every switch interval (5 ms): 20,000 rows that take 0.1 s
alone take minutes beside a busy thread, and a background writer writes nothing until the
run waits for it. :class:`BulkConnection` sends the rows of an ``INSERT ... VALUES (?, ...)``
as one JSON parameter instead::

    INSERT INTO t (a, b) WITH _rows(_at, _row) AS MATERIALIZED (SELECT key, value FROM json_each(CAST(?1 AS TEXT)))
    SELECT _row->>'$[0]', _row->>'$[1]' FROM _rows WHERE true ORDER BY _at ON CONFLICT ...

one step that writes every row without the GIL (up to :data:`CHUNK` rows a statement). It
costs more CPU per row than ``executemany`` (the JSON text, made by orjson under the GIL,
and read again by SQLite), so when no other thread wants the GIL (:func:`flowkit.store.parked.alone`:
a run's end, when its thread waits for the writer; a process of one thread) the rows go
row by row, :data:`BY_ROW` rows at a time, the choice made again before each piece.
Bytes (an artifact's inline value) go in a second parameter, all of them joined, each row
naming its piece by offset and length. An ``UPDATE t SET c = ?, ... WHERE k = ?`` (values
from the row or literals) and a ``DELETE FROM t WHERE k = ?`` are one statement too
(:func:`keyed_statement`): a key's last row stands for its rows, as it does row by row, and
``rowcount`` counts each changed row once.

What the rows mean is unchanged: the same order, so a later row of the same key updates an
earlier one as it would row by row; the same types (JSON keeps text, integers, floats as
``repr`` writes them, ``NULL``; booleans are 1 and 0, as :mod:`sqlite3` binds them); the
same ``rowcount`` (of the last statement, past :data:`CHUNK` rows). Rows of other values (a
NaN, a text with a NUL character, a subclass, which an adapter may bind, a row of the wrong
length) and statements of another shape go through :meth:`sqlite3.Connection.executemany`,
which writes them, or refuses them, as before. Integers are taken to fit in 64 bits, as
SQLite's do: the store's own are counts and sizes, and a metric's step is checked where a
task logs it.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from flowkit.store.parked import alone

__all__ = ["BY_ROW", "CHUNK", "BulkConnection", "bulk_statements", "keyed_statement"]

#: Rows per statement: one parameter stays far below SQLite's limit on a value (1e9 bytes)
#: even with inline values of 32 KiB, and the rows' texts below a few times the batch's size.
CHUNK = 4096
#: Rows written row by row before :func:`~flowkit.store.parked.alone` is asked again: a thread
#: that wakes meanwhile waits for the GIL at most a few hundred rows' switch intervals.
BY_ROW = 256
#: The types a row's values may have to be sent as JSON (exactly these: a subclass, which an
#: adapter may bind otherwise, goes row by row).
_PLAIN = frozenset({str, int, float, type(None), bool, bytes})
_KEYED = _PLAIN - {bytes}  # an update by key sends no bytes parameter
_ROWS = frozenset({tuple, list})  # what orjson writes as a JSON array

# The ->> operator and MATERIALIZED came with SQLite 3.38 and 3.35; before, rows go one by one.
_BULK = sqlite3.sqlite_version_info >= (3, 38)
_EXTRACT = "_row->>'{}'"  # the element at a path of a row's JSON text, as an SQL value
_MARK = re.compile(r"\?|'[^',?]*'|NULL|-?\d+(?:\.\d+)?")
_SHAPE = re.compile(r"(?is)(\s*INSERT\b[^?]*?)\bVALUES\s*\((.*?)\)(\s*(?:ON\s+CONFLICT\b[^?]*)?)")


@functools.lru_cache(maxsize=256)
def bulk_statements(sql: str) -> tuple[str, str, int] | None:
    """The ``INSERT ... SELECT FROM json_each`` forms of ``sql`` (without bytes, with a blob parameter) and its marks.

    ``None`` when ``sql`` is not an ``INSERT ... VALUES (...)`` of ``?`` marks and plain literals,
    with at most an ``ON CONFLICT`` clause after it.
    """
    shape = _SHAPE.fullmatch(sql) if _BULK else None
    if shape is None:
        return None
    head, values, tail = shape.groups()
    marks = [m.strip() for m in values.split(",")]
    if not all(_MARK.fullmatch(m) for m in marks):
        return None
    plain, blobs, n = [], [], 0
    for mark in marks:
        if mark != "?":
            plain.append(mark)
            blobs.append(mark)
            continue
        at = _EXTRACT.format(f"$[{n}]")
        plain.append(at)
        # a piece of the bytes parameter is named by [offset, length]; a scalar is itself
        blobs.append(f"CASE json_type(_row, '$[{n}]') WHEN 'array' THEN substr(?2, {_EXTRACT.format(f'$[{n}][0]')}, "
                     f"{_EXTRACT.format(f'$[{n}][1]')}) ELSE {at} END")
        n += 1
    # The rows once, as a table of their texts and places (MATERIALIZED: else json_each renders
    # a row's text again for each column read from it). The INSERT comes first, so that sqlite3
    # sees one (its rowcount, its implicit transaction); WHERE true: without it SQLite reads ON
    # CONFLICT as a join's.
    rows = " WITH _rows(_at, _row) AS MATERIALIZED (SELECT key, value FROM json_each(CAST(?1 AS TEXT)))"
    select = " SELECT {} FROM _rows WHERE true ORDER BY _at"
    return (head.rstrip() + rows + select.format(", ".join(plain)) + tail,
            head.rstrip() + rows + select.format(", ".join(blobs)) + tail, n)


_UPDATE = re.compile(r"(?is)\s*UPDATE\s+(\w+)\s+SET\s+(.*?)\s+WHERE\s+(\w+)\s*=\s*\?\s*")
_DELETE = re.compile(r"(?is)\s*DELETE\s+FROM\s+(\w+)\s+WHERE\s+(\w+)\s*=\s*\?\s*")
_ASSIGN = re.compile(r"\s*(\w+)\s*=\s*(.*?)\s*")


@functools.lru_cache(maxsize=256)
def keyed_statement(sql: str) -> tuple[str, int] | None:
    """One statement for the rows of an ``UPDATE t SET ... WHERE k = ?`` or a ``DELETE FROM t WHERE k = ?``, and its marks.

    The key is the last mark. Rows of one key are one (the last: what row by row leaves), so
    that each row of ``t`` meets one row of the parameter. ``None`` for other statements.
    """
    if not _BULK:
        return None
    delete = _DELETE.fullmatch(sql)
    if delete is not None:
        table, key = delete.groups()
        return f"DELETE FROM {table} WHERE {key} IN (SELECT value->>'$[0]' FROM json_each(CAST(?1 AS TEXT)))", 1
    update = _UPDATE.fullmatch(sql)
    if update is None:
        return None
    table, assignments, key = update.groups()
    sets, n = [], 0
    for item in assignments.split(","):
        assign = _ASSIGN.fullmatch(item)
        if assign is None or not _MARK.fullmatch(assign.group(2)):
            return None
        column, value = assign.groups()
        if value == "?":
            value = f"_keyed._{n}"
            n += 1
        sets.append(f"{column} = {value}")
    picks = ", ".join(f"value->>'$[{i}]' AS _{i}" for i in range(n + 1))
    return (f"UPDATE {table} SET {', '.join(sets)} FROM (SELECT {picks} FROM json_each(CAST(?1 AS TEXT))) AS _keyed "
            f"WHERE {table}.{key} = _keyed._{n}", n + 1)


class BulkConnection(sqlite3.Connection):
    """A connection whose ``executemany`` of an ``INSERT`` is one statement (see the module docstring)."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:  # type: ignore[override]
        forms = bulk_statements(sql)
        keyed = keyed_statement(sql) if forms is None else None
        if forms is None and keyed is None:
            return super().executemany(sql, rows)
        rows = rows if isinstance(rows, (list, tuple)) else list(rows)
        if forms is not None and rows:
            plain = None  # whether the rows can be JSON: looked at once, when one statement is wanted
            at = 0
            while at < len(rows):  # in order: a later row of a key still comes after
                if alone():  # nothing waits for the GIL (the run waits for these rows): cheaper row by row
                    cursor = super().executemany(sql, rows[at:at + BY_ROW])
                    at += BY_ROW
                    continue
                if plain is None:
                    plain = _plain(rows, forms[2], _PLAIN)
                if not plain:
                    return super().executemany(sql, rows[at:])
                cursor = self._inserted(sql, forms, rows[at:at + CHUNK])
                at += CHUNK
            return cursor
        if keyed is not None and rows and not alone() and _plain(rows, keyed[1], _KEYED):
            last = list({row[-1]: row for row in rows}.values())  # a key's last row is what row by row leaves
            for at in range(0, len(last), CHUNK):
                text = _json(last[at:at + CHUNK])
                if text is None:
                    return super().executemany(sql, rows)
                cursor = self.execute(keyed[0], (text,))
            return cursor
        return super().executemany(sql, rows)

    def _inserted(self, sql: str, forms: tuple[str, str, int], rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        pieces: list[bytes] = []
        offset = 1  # substr counts from 1

        def blob(value: bytes) -> list[int]:  # only bytes reach it: _plain let no other type through
            nonlocal offset
            pieces.append(value)
            at, offset = offset, offset + len(value)
            return [at, len(value)]

        text = _json(rows, blob)
        if text is None:
            return super().executemany(sql, rows)
        if pieces:
            return self.execute(forms[1], (text, b"".join(pieces) or b"\0"))  # b"": substr of it is NULL
        return self.execute(forms[0], (text,))


def _plain(rows: Sequence[Sequence[Any]], width: int, kinds: frozenset[type]) -> bool:
    """Each row has ``width`` values, each of one of ``kinds``, and no float is NaN or infinite.

    ``kinds`` are types JSON says as sqlite3 binds them, and exactly those: orjson would write a
    subclass its own way (an ``IntEnum`` as its value), where sqlite3 may bind it with an adapter.
    A column at a time, in C loops.
    """
    if set(map(len, rows)) != {width}:
        return False
    for column in zip(*rows):
        types = set(map(type, column))
        if not types <= kinds or float in types and not _finite(column):
            return False
    return True


def _finite(column: tuple[Any, ...]) -> bool:
    """No float of a column is a NaN or an infinity (JSON has no word for them; SQLite keeps an infinity)."""
    try:  # the sum of finite floats is finite, unless it is past the largest float: then each is looked at
        if math.isfinite(sum(filter(None, column), 0.0)):  # None (NULL) and zeros left out
            return True
    except (TypeError, OverflowError):  # text or bytes beside the floats, or an int past the largest float
        pass
    return all(math.isfinite(value) for value in column if type(value) is float)


def _json(rows: Sequence[Sequence[Any]], default: Any = None) -> bytes | None:
    """The rows as JSON text, in UTF-8 (read as text by the statements); ``None`` for what must go row by row.

    The rows are :func:`_plain`'s; an integer orjson cannot write (past 64 bits, unsigned: below
    that, integers are taken to fit SQLite's, as the module says), a text that is not valid UTF-8
    or one with a NUL character (SQLite's JSON functions end a text at it) makes it ``None``.
    ``default`` is given each ``bytes`` value, which orjson does not write itself.
    """
    if not set(map(type, rows)) <= _ROWS:  # a NamedTuple row: orjson writes only plain tuples and lists
        rows = list(map(tuple, rows))
    try:
        text = orjson.dumps(rows, default=default)
    except orjson.JSONEncodeError:
        return None
    return None if b"\\u0000" in text else text
