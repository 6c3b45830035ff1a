"""The prediction log in SQLite (part of :class:`~flowkit.store.sqlite.SQLiteMetadataStore`).

The table belongs to the ``"predictions"`` migration list. It is only ever
appended to, by the writer thread of a model service (with its own connection:
the store keeps one per thread), a batch per transaction; readers select by
model and time, which the index covers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from flowkit.store.migrations import register_migrations
from flowkit.store.predictions import PredictionRow

__all__ = ["PredictionTables"]

register_migrations("predictions", [
    """
    CREATE TABLE predictions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
        request_id TEXT NOT NULL, inputs TEXT NOT NULL, outputs TEXT NOT NULL
    );
    CREATE INDEX predictions_model_time ON predictions(model, time)
    """,
])

_INSERT = "INSERT INTO predictions (model, version, time, request_id, inputs, outputs) VALUES (?, ?, ?, ?, ?, ?)"


class PredictionTables:
    """The prediction log part of the metadata protocol, over the ``write``/``query`` of the SQLite store."""

    write: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    query: Callable[..., list[tuple[Any, ...]]]

    def add_predictions(self, rows: Sequence[PredictionRow]) -> None:
        if rows:
            self.write(lambda c: c.executemany(_INSERT, [tuple(r) for r in rows]))

    def predictions(self, model: str, since: float | None = None, until: float | None = None,
                    version: int | None = None) -> list[PredictionRow]:
        sql = "SELECT model, version, time, request_id, inputs, outputs FROM predictions WHERE model = ?"
        params: list[Any] = [model]
        for clause, value in (("time >= ?", since), ("time < ?", until), ("version = ?", version)):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        return [PredictionRow(*r) for r in self.query(sql + " ORDER BY seq", params)]
