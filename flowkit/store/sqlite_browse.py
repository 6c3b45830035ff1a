"""A page of runs, their counts and a run's edges in SQLite (part of :class:`~flowkit.store.sqlite.SQLiteMetadataStore`).

The ``"browse"`` migration list adds the indexes that keep a filtered page of
runs an index walk when a store holds many thousands of runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from flowkit.store.migrations import register_migrations
from flowkit.store.protocols import RunRecord, read_inputs_column

__all__ = ["BrowseTables"]

register_migrations("browse", [
    """
    CREATE INDEX runs_status_started ON runs(status, started);
    CREATE INDEX runs_trigger_started ON runs(trigger, started)
    """,
    "CREATE INDEX inputs_artifact ON inputs(artifact_id)",
])

# A cached task run's edges are those of its source ("<run id>/<node>"; run ids hold no "/"), the row
# `{0}` this joins to `tr`, a cached task run.
_SOURCE = """
      ON {0}.run_id = substr(tr.source, 1, instr(tr.source, '/') - 1)
     AND {0}.node = substr(tr.source, instr(tr.source, '/') + 1)
    WHERE tr.run_id = ? AND tr.source IS NOT NULL"""

_EDGES = f"""
    SELECT DISTINCT i.name, i.node FROM inputs i
    WHERE i.run_id = ? AND i.kind = 'artifact' AND i.name IS NOT NULL
    UNION
    SELECT DISTINCT i.name, tr.node FROM task_runs tr
    JOIN inputs i {_SOURCE.format("i")} AND i.kind = 'artifact' AND i.name IS NOT NULL
"""

# The same from the inputs kept as a task run's column: (node, column) of the run's task runs, and of
# the sources of its cached ones, under the cached task run's node.
_OWN_EDGES = f"""
    SELECT node, inputs FROM task_runs WHERE run_id = ? AND inputs IS NOT NULL
    UNION ALL
    SELECT tr.node, s.inputs FROM task_runs tr
    JOIN task_runs s {_SOURCE.format("s")} AND s.inputs IS NOT NULL
"""


def _where(since: float | None = None, until: float | None = None, **filters: str | None) -> tuple[str, list[Any]]:
    parts = [f"{column} = ?" for column, value in filters.items() if value is not None]
    params: list[Any] = [v for v in filters.values() if v is not None]
    if since is not None:
        parts.append("started >= ?")
        params.append(since)
    if until is not None:
        parts.append("started < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


class BrowseTables:
    """The browsing part of the metadata protocol, over the ``query`` of the SQLite store."""

    query: Callable[..., list[tuple[Any, ...]]]
    _run_columns: str
    _run_record: Callable[[tuple[Any, ...]], RunRecord]

    def run_page(self, *, flow: str | None = None, status: str | None = None, trigger: str | None = None,
                 limit: int = 50, offset: int = 0, since: float | None = None,
                 until: float | None = None) -> list[RunRecord]:
        where, params = _where(since, until, flow=flow, status=status, trigger=trigger)
        sql = (f"SELECT {self._run_columns} FROM runs{where} ORDER BY started DESC, rowid DESC "
               f"LIMIT {max(int(limit), 0)} OFFSET {max(int(offset), 0)}")
        return [self._run_record(r) for r in self.query(sql, params)]

    def run_status_counts(self, *, flow: str | None = None, trigger: str | None = None, since: float | None = None,
                          until: float | None = None) -> dict[str, int]:
        where, params = _where(since, until, flow=flow, trigger=trigger)
        return {status: count for status, count in
                self.query(f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", params)}

    def run_flows(self) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT flow FROM runs ORDER BY flow")]

    def task_run_counts(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        rows = self.query("SELECT run_id, status, COUNT(*) FROM task_runs WHERE run_id IN "
                          "(SELECT value FROM json_each(?)) GROUP BY run_id, status", [json.dumps(list(run_ids))])
        for run_id, status, count in rows:
            out.setdefault(run_id, {})[status] = count
        return out

    def run_edges(self, run_id: str) -> list[tuple[str, str]]:
        nodes = {r[0] for r in self.query("SELECT node FROM task_runs WHERE run_id = ?", (run_id,))}
        edges = set(self.query(_EDGES, (run_id, run_id)))
        edges.update((producer, node) for node, column in self.query(_OWN_EDGES, (run_id, run_id))
                     for _, producer in read_inputs_column(column))
        return sorted((a, b) for a, b in edges if a in nodes and b in nodes)

    def artifact_consumers(self, artifact_id: str) -> list[tuple[str, str]]:
        rows = self.query("SELECT DISTINCT i.run_id, i.node, r.started FROM inputs i LEFT JOIN runs r ON r.id = i.run_id "
                          "WHERE i.artifact_id = ? AND i.kind = 'artifact'", (artifact_id,))
        found = {(run_id, node): started for run_id, node, started in rows}
        # Inputs kept as the task run's column name producers of the same run, which computed these bytes.
        producers: dict[str, set[str]] = {}
        for run_id, node in self.query("SELECT run_id, node FROM task_runs WHERE artifact_id = ? "
                                       "AND status = 'completed'", (artifact_id,)):
            producers.setdefault(run_id, set()).add(node)
        for run_id, made in producers.items():
            for node, column, started in self.query(
                    "SELECT tr.node, tr.inputs, r.started FROM task_runs tr LEFT JOIN runs r ON r.id = tr.run_id "
                    "WHERE tr.run_id = ? AND tr.inputs IS NOT NULL", (run_id,)):
                if any(producer in made for _, producer in read_inputs_column(column)):
                    found[(run_id, node)] = started
        order = sorted(found.items(), key=lambda item: (item[1] is not None, item[1] or 0.0, item[0]))
        return [key for key, _ in order]
