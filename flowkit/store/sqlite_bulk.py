"""Many rows in one SQLite statement: ``executemany`` of an ``INSERT`` as one ``INSERT ... SELECT``.

Python's :mod:`sqlite3` lets go of the GIL around each ``sqlite3_step`` and takes it back
after. ``executemany`` steps once per row, so on a thread beside one that runs Python (the
run's thread, beside the recorder's writer) it waits for the GIL after every row, and the
other thread hands it over only every switch interval (5 ms): 20,000 rows that take 0.1 s
alone take minutes beside a busy thread, and a background writer writes nothing until the
run waits for it. :class:`BulkConnection` sends the rows of an ``INSERT ... VALUES (?, ...)``
as one JSON parameter instead::

    WITH _rows(_row) AS MATERIALIZED (SELECT value FROM json_each(?1))
    INSERT INTO t (a, b) SELECT _row->>'$[0]', _row->>'$[1]' FROM _rows WHERE true ON CONFLICT ...

one step that writes every row without the GIL. Bytes (an artifact's inline value) go in a
second parameter, all of them joined, each row naming its piece by offset and length.

What the rows mean is unchanged: the same order, so a later row of the same key updates an
earlier one as it would row by row; the same types (JSON keeps text, integers, floats as
``repr`` writes them, ``NULL``; booleans are 1 and 0, as :mod:`sqlite3` binds them). Rows JSON
cannot say exactly (a NaN, a text with a NUL character, a type of its own) and statements of
another shape go through :meth:`sqlite3.Connection.executemany` as before.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["BulkConnection", "bulk_statements"]

# The ->> operator and MATERIALIZED came with SQLite 3.38 and 3.35; before, rows go one by one.
_BULK = sqlite3.sqlite_version_info >= (3, 38)
_EXTRACT = "_row->>'{}'"  # the element at a path of a row's JSON text, as an SQL value
_MARK = re.compile(r"\?|'[^',?]*'|NULL|-?\d+(?:\.\d+)?")
_SHAPE = re.compile(r"(?is)(\s*INSERT\b[^?]*?)\bVALUES\s*\((.*?)\)(\s*(?:ON\s+CONFLICT\b[^?]*)?)")


@functools.lru_cache(maxsize=256)
def bulk_statements(sql: str) -> tuple[str, str] | None:
    """The ``INSERT ... SELECT FROM json_each`` forms of ``sql``: without bytes, and with a blob parameter.

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
    # The rows once, as a table of their texts (MATERIALIZED: else json_each renders a row's text
    # again for each column read from it); WHERE true: without it SQLite reads ON CONFLICT as a join's.
    rows = "WITH _rows(_row) AS MATERIALIZED (SELECT value FROM json_each(?1)) "
    select = " SELECT {} FROM _rows WHERE true"
    return (rows + head + select.format(", ".join(plain)) + tail, rows + head + select.format(", ".join(blobs)) + tail)


class BulkConnection(sqlite3.Connection):
    """A connection whose ``executemany`` of an ``INSERT`` is one statement (see the module docstring)."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:  # type: ignore[override]
        forms = bulk_statements(sql)
        if forms is None:
            return super().executemany(sql, rows)
        rows = rows if isinstance(rows, (list, tuple)) else list(rows)
        pieces: list[bytes] = []
        offset = 1  # substr counts from 1

        def blob(value: Any) -> list[int]:
            nonlocal offset
            if type(value) is not bytes:
                raise TypeError(type(value).__name__)
            pieces.append(value)
            at, offset = offset, offset + len(value)
            return [at, len(value)]

        try:
            text = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":"),
                                    default=blob).encode(rows)
        except (TypeError, ValueError):  # a NaN, a type JSON has no word for: row by row, as sqlite3 does it
            return super().executemany(sql, rows)
        if "\\u0000" in text:  # SQLite's JSON functions end a text at a NUL character
            return super().executemany(sql, rows)
        if pieces:
            return self.execute(forms[1], (text, b"".join(pieces) or b"\0"))  # b"": substr of it is NULL
        return self.execute(forms[0], (text,))
