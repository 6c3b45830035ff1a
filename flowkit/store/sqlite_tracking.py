"""Metrics, params, tags and check results in SQLite (part of :class:`~flowkit.store.sqlite.SQLiteMetadataStore`).

The tables belong to the ``"tracking"`` migration list. Rows are written by
:meth:`~flowkit.store.sqlite.SQLiteMetadataStore.flush` with the task runs they
belong to; here they are read back, a cached task run through its ``source``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from flowkit.store.migrations import register_migrations
from flowkit.store.tracking import CheckRecord, TaggedTaskRun, TrackedRecord

__all__ = ["TrackingTables", "INSERT_CHECKS", "INSERT_TRACKED"]

register_migrations("tracking", [
    """
    CREATE TABLE tracked (
        run_id TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        step INTEGER, value REAL, text TEXT, time REAL NOT NULL
    );
    CREATE INDEX tracked_task_run ON tracked(run_id, node);
    CREATE TABLE check_results (
        run_id TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL, "check" TEXT NOT NULL,
        passed INTEGER NOT NULL, severity TEXT NOT NULL, observed TEXT, threshold TEXT, baseline TEXT,
        message TEXT, sample TEXT, artifact_id TEXT
    );
    CREATE INDEX check_results_task_run ON check_results(run_id, node)
    """,
])

INSERT_TRACKED = ("INSERT INTO tracked (run_id, node, seq, kind, name, step, value, text, time) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_CHECKS = ('INSERT INTO check_results (run_id, node, seq, "check", passed, severity, observed, threshold, '
                 "baseline, message, sample, artifact_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

# The task run whose entries a task run shows: its own, or its source's ("<run id>/<node>"; run ids hold no "/").
_FROM = """
    FROM task_runs tr
    JOIN {table} t
      ON t.run_id = CASE WHEN tr.source IS NULL THEN tr.run_id ELSE substr(tr.source, 1, instr(tr.source, '/') - 1) END
     AND t.node = CASE WHEN tr.source IS NULL THEN tr.node ELSE substr(tr.source, instr(tr.source, '/') + 1) END
    WHERE tr.run_id IN (SELECT value FROM json_each(?))
"""


# The same join over every run, for the task runs carrying one tag (its text is JSON: compare the decoded value).
_TAGGED = """
    SELECT tr.run_id, tr.node, tr.task, tr.status, r.started, tr.artifact_id
    FROM task_runs tr
    JOIN runs r ON r.id = tr.run_id
    WHERE EXISTS (
      SELECT 1 FROM tracked t
      WHERE t.run_id = CASE WHEN tr.source IS NULL THEN tr.run_id ELSE substr(tr.source, 1, instr(tr.source, '/') - 1) END
        AND t.node = CASE WHEN tr.source IS NULL THEN tr.node ELSE substr(tr.source, instr(tr.source, '/') + 1) END
        AND t.kind = 'tag' AND t.name = ? AND json_extract(t.text, '$') = ?)
    ORDER BY r.started, tr.run_id, tr.seq
"""


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class TrackingTables:
    """The tracking part of the metadata protocol, over the ``query`` of the SQLite store."""

    query: Callable[..., list[tuple[Any, ...]]]
    write: Callable[[Callable[[sqlite3.Connection], Any]], Any]

    def tracked(self, run_ids: Sequence[str], kind: str | None = None) -> list[TrackedRecord]:
        sql = ("SELECT tr.run_id, tr.node, tr.task, t.kind, t.name, t.step, t.value, t.text, t.time, tr.source"
               + _FROM.format(table="tracked"))
        params: list[Any] = [json.dumps(list(run_ids))]
        if kind is not None:
            sql += " AND t.kind = ?"
            params.append(kind)
        rows = self.query(sql + " ORDER BY tr.run_id, tr.seq, t.seq", params)
        return [TrackedRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6] if r[3] == "metric" else _json(r[7]), r[8],
                              r[9]) for r in rows]

    def check_results(self, run_ids: Sequence[str]) -> list[CheckRecord]:
        rows = self.query(
            'SELECT tr.run_id, tr.node, tr.task, t."check", t.passed, t.severity, t.observed, t.threshold, '
            "t.baseline, t.message, t.sample, t.artifact_id, tr.source" + _FROM.format(table="check_results")
            + " ORDER BY tr.run_id, tr.seq, t.seq", [json.dumps(list(run_ids))])
        return [CheckRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5], _json(r[6]), _json(r[7]), r[8], r[9],
                            _json(r[10]), r[11], r[12]) for r in rows]

    def tagged(self, name: str, value: str) -> list[TaggedTaskRun]:
        return [TaggedTaskRun(*r) for r in self.query(_TAGGED, [name, value])]
