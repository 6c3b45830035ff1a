"""The metadata store's tables in SQL, shared by the SQLite and PostgreSQL backends.

:class:`SQLMetadataStore` is the whole :class:`~flowkit.store.protocols.MetadataStore`
over two methods a backend provides: :meth:`~SQLMetadataStore.query` (rows of a
read) and :meth:`~SQLMetadataStore.write` (``fn(conn)`` in one transaction that
holds the store's write lock, so writers serialize as SQLite's ``BEGIN
IMMEDIATE`` makes them). Its parts live beside it: the core tables here;
schedules (:mod:`~flowkit.store.sqlite_schedules`), tracking
(:mod:`~flowkit.store.sqlite_tracking`), the registry
(:mod:`~flowkit.store.sqlite_registry`), the prediction log
(:mod:`~flowkit.store.sqlite_predictions`) and browsing
(:mod:`~flowkit.store.sqlite_browse`).

The SQL is written once, in SQLite's spelling kept to what PostgreSQL also
means (``INSERT ... ON CONFLICT``, quoted ``"user"``, ``RETURNING``); the
PostgreSQL backend translates the few words that differ
(:mod:`flowkit.store.postgres_sql`), migration steps included, so both
backends have the same schema from the same steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson

from flowkit.errors import StoreError
from flowkit.faults import FAULTS, fault
from flowkit.store import sqlite_schema  # noqa: F401 - registers the core migrations
from flowkit.store.migrations import CORE, Step, migrations, registered_names
from flowkit.store.protocols import (
    ArtifactRecord,
    AttemptRecord,
    Batch,
    CacheEntry,
    CacheHit,
    FileRecord,
    InputRecord,
    LineageStep,
    RunRecord,
    TaskRunRow,
    read_inputs_column,
)
from flowkit.store.sqlite_browse import BrowseTables, _where
from flowkit.store.sqlite_predictions import PredictionTables
from flowkit.store.sqlite_registry import RegistryTables
from flowkit.store.sqlite_schedules import ScheduleTables
from flowkit.store.sqlite_tracking import INSERT_CHECKS, INSERT_TRACKED, TrackingTables

__all__ = ["SQLMetadataStore", "upsert"]

T = TypeVar("T")


def upsert(table: str, columns: Sequence[str], key: Sequence[str], values: str | None = None) -> str:
    """``INSERT INTO table (columns) VALUES (...) ON CONFLICT (key) DO UPDATE SET`` the other columns.

    What ``INSERT OR REPLACE`` does in SQLite alone, said so that PostgreSQL means it too
    (columns left out keep their value). ``values`` replaces the ``?`` placeholders.
    """
    cols = ", ".join(columns)
    marks = values if values is not None else ", ".join("?" for _ in columns)
    rest = [c for c in columns if c not in key]
    action = ("DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)) if rest else "DO NOTHING"
    return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) {action}"


_HIT_COLUMNS = ("c.artifact_id, c.created, a.serializer, a.uri, a.size, c.expires, c.task_run_id, "
                "CASE WHEN a.type = 'flowkit.files.File' THEN 1 ELSE 0 END, c.key, c.content, c.signature, a.signature")
_RUN_COLUMNS = ('id, flow, status, params, started, ended, trigger, error, host, "user", git_commit, flow_file, '
                "scheduled, cache_salt, owner_pid, owner_start, heartbeat, triggered_by, trigger_reason")
_RUN_FIELDS = frozenset(RunRecord.__dataclass_fields__)
_STEP = ("SELECT tr.run_id, tr.node, tr.task, tr.status, tr.started, tr.cache_key, tr.artifact_id, tr.source, "
         "r.flow, r.git_commit FROM task_runs tr LEFT JOIN runs r ON r.id = tr.run_id ")
_PUT_TASK_RUNS = upsert("task_runs", ("run_id", "node", "seq", "task", "status", "attempts", "started", "ended",
                                      "cache_key", "artifact_id", "error", "traceback", "worker", "logs", "source",
                                      "inputs"),
                        ("run_id", "node"))
# most rows of a rerun: only the columns a cached task run has
_PUT_CACHED = upsert("task_runs", ("run_id", "node", "seq", "task", "status", "cache_key", "artifact_id", "source",
                                   "attempts"), ("run_id", "node"), "?, ?, ?, ?, 'cached', ?, ?, ?, 0")
_PUT_ATTEMPTS = upsert("attempts", ("run_id", "node", "number", "started", "ended", "error"),
                       ("run_id", "node", "number"))
_PUT_CACHE = upsert("cache", ("key", "artifact_id", "task", "task_run_id", "created", "run_id", "salted", "expires",
                              "content"), ("key",))
# the same bytes stored again: a removed record comes back to life
_PUT_ARTIFACTS = ("INSERT INTO artifacts (id, uri, serializer, type, size, columns, dtypes, rows, created, data, "
                  "versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                  "uri = excluded.uri, serializer = excluded.serializer, data = excluded.data, "
                  "removed = NULL, removed_by = NULL WHERE artifacts.removed IS NOT NULL")
_PUT_FILE = upsert("files", ("path", "size", "mtime_ns", "digest"), ("path",))


def _run(r: tuple[Any, ...]) -> RunRecord:
    return RunRecord(r[0], r[1], r[2], json.loads(r[3]) if r[3] else {}, *r[4:])


_ARTIFACT_COLUMNS = ("id, uri, serializer, type, size, columns, dtypes, rows, created, data IS NOT NULL, removed, "
                     "removed_by, signature, versions")


def _artifact(r: Sequence[Any]) -> ArtifactRecord:
    return ArtifactRecord(r[0], r[1] or "inline", r[2], r[3], r[4], json.loads(r[5]) if r[5] else None,
                          json.loads(r[6]) if r[6] else None, r[7], r[8], bool(r[9]), r[10], r[11], r[12],
                          json.loads(r[13]) if r[13] else None)


def _artifact_inputs(pairs: list[tuple[int, str]], made: dict[str, str | None]) -> list[InputRecord]:
    """The input records of an ``inputs`` column, given what each producing node of the run made."""
    return [InputRecord("artifact", made[node], node, None, None) for _, node in pairs if made.get(node)]


def _like(prefix: str) -> str:
    """A LIKE pattern matching ids that start with ``prefix`` taken literally."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SQLMetadataStore(ScheduleTables, TrackingTables, RegistryTables, PredictionTables, BrowseTables):
    """The metadata protocol in SQL, over a backend's ``query`` and ``write``.

    A backend sets ``dialect`` and ``url`` and provides :meth:`query`, :meth:`write`,
    :meth:`close`, how it keeps the version of each migration list
    (:meth:`_versions`, :meth:`_set_version`) and how it runs a text step
    (:meth:`_execute_step`).
    """

    dialect: str
    url: str
    # A rerun looks up every key of its flow at once: SQLite walks the keys and finds each in the
    # cache's index (an IN list it would first copy into a sorted table of its own, twice the time).
    # CROSS JOIN keeps that order (keys, entries, artifacts) whatever statistics an ANALYZE of a
    # small store left.
    _cache_lookup = (f"SELECT {_HIT_COLUMNS} FROM json_each(?) j CROSS JOIN cache c ON c.key = j.value "
                     "CROSS JOIN artifacts a ON a.id = c.artifact_id WHERE a.removed IS NULL")
    _run_columns = _RUN_COLUMNS
    _run_record = staticmethod(_run)
    _applied: dict[str, int]

    # --- what a backend provides ---------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""
        raise NotImplementedError

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one transaction under the store's write lock, retried while the store is busy."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def defer_checkpoints(self) -> None:
        """Nothing to defer: the database makes its own checkpoints (SQLite's store overrides this)."""

    def checkpoint(self) -> None:
        """Nothing to do: the database makes its own checkpoints (SQLite's store overrides this)."""

    def _versions(self, conn: Any) -> dict[str, int]:
        raise NotImplementedError

    def _set_version(self, conn: Any, name: str, version: int) -> None:
        raise NotImplementedError

    def _write_schema(self, fn: Callable[[Any], T]) -> T:
        """Run a migration: :meth:`write`, unless the backend needs more to see another's schema change."""
        return self.write(fn)

    def _execute_step(self, conn: Any, statement: str) -> None:
        conn.execute(statement)

    # --- migrations ----------------------------------------------------------------------------

    def _describe(self) -> str:
        """How errors name this store."""
        return self.url

    def schema_version(self, name: str = CORE) -> int:
        return self.read_versions().get(name, 0)

    def read_versions(self) -> dict[str, int]:
        """The applied version of each migration list (a plain read)."""
        raise NotImplementedError

    def migrate(self, name: str | None = None) -> None:
        if name is not None and not migrations(name, self.dialect):
            raise ValueError(f"no {self.dialect} migrations are registered under {name!r}; the names are: "
                             f"{', '.join(registered_names(self.dialect))}")
        names = [name] if name is not None else registered_names(self.dialect)
        todo = [n for n in names if self._applied.get(n) != len(migrations(n, self.dialect))]
        if not todo:
            return
        if any(self.read_versions().get(n, 0) != len(migrations(n, self.dialect)) for n in todo):
            self._write_schema(lambda conn: self._upgrade(conn, todo))  # read again inside: another may be first
        self._applied.update((n, len(migrations(n, self.dialect))) for n in todo)

    def _upgrade(self, conn: Any, names: list[str]) -> None:
        versions = self._versions(conn)
        for name in names:
            steps: tuple[Step, ...] = migrations(name, self.dialect)
            version = versions.get(name, 0)
            if version > len(steps):
                what = "schema version" if name == CORE else f"version of the {name!r} tables"
                raise StoreError(f"the store {self._describe()} has {what} {version}, newer than this flowkit "
                                 f"knows ({len(steps)}); upgrade flowkit to use it")
            for step in steps[version:]:
                if callable(step):
                    step(conn)
                else:
                    for statement in step.split(";"):
                        if statement.strip():
                            self._execute_step(conn, statement)
            if version != len(steps):
                self._set_version(conn, name, len(steps))

    # --- runs ----------------------------------------------------------------------------------

    def start_run(self, row: dict[str, Any]) -> None:
        unknown = set(row) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"a run has no field {', '.join(sorted(unknown))}; its fields: "
                             f"{', '.join(sorted(_RUN_FIELDS))}")
        cols = ", ".join(f'"{c}"' for c in row)  # quoted: "user" is a keyword in PostgreSQL
        marks = ", ".join("?" for _ in row)
        self.write(lambda c: c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", list(row.values())))

    def end_run(self, run_id: str, status: str, ended: float, error: str | None) -> None:
        self.write(lambda c: c.execute("UPDATE runs SET status = ?, ended = ?, error = ? WHERE id = ?",
                                       (status, ended, error, run_id)))

    def mark_crashed(self, run_ids: Sequence[str], when: float, error: str) -> int:
        rows = [(when, error, run_id) for run_id in run_ids]

        def end(c: Any) -> int:  # a run that ended meanwhile keeps its own end
            ended = sum(c.execute("UPDATE runs SET status = 'crashed', ended = COALESCE(heartbeat, started, ?), "
                                  "error = ? WHERE id = ? AND status = 'running'", row).rowcount for row in rows)
            # The schedule fire that launched a dead run ended with it.
            c.executemany("UPDATE fires SET status = 'crashed' WHERE run_id = ? AND status IN ('pending', 'running')",
                          [(run_id,) for run_id in run_ids])
            return ended

        return self.write(end) if rows else 0

    def runs(self, flow: str | None = None, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        where, params = _where(flow=flow, status=status)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY started DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_run(r) for r in self.query(sql, params)]

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self.query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def run_ids_like(self, prefix: str) -> list[str]:
        return [r[0] for r in self.query("SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                                         (_like(prefix),))]

    def has_other_runs(self, flow: str, run_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM runs WHERE flow = ? AND id != ? LIMIT 1", (flow, run_id)))

    # --- task runs -----------------------------------------------------------------------------

    def flush(self, batch: Batch) -> None:
        if batch.empty():
            return

        def write(c: Any) -> None:
            if batch.forget_artifacts:  # damaged bytes: the record stays, the recomputed value revives it
                c.executemany("UPDATE artifacts SET removed = ?, removed_by = 'damaged', data = NULL WHERE id = ?",
                              batch.forget_artifacts)
            if batch.artifacts:  # the same bytes stored again: a removed record comes back to life
                c.executemany(_PUT_ARTIFACTS, batch.artifacts)
            if batch.task_runs:
                c.executemany(_PUT_TASK_RUNS, batch.task_runs)
            if batch.cached:  # most rows of a rerun: only the columns a cached task run has
                c.executemany(_PUT_CACHED, batch.cached)
            if batch.attempts:
                c.executemany(_PUT_ATTEMPTS, batch.attempts)
            if batch.inputs:
                c.executemany("INSERT INTO inputs (run_id, node, position, kind, artifact_id, name, token, repr) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch.inputs)
            if batch.cache:
                c.executemany(_PUT_CACHE, batch.cache)
            if batch.uncache:
                c.executemany("DELETE FROM cache WHERE key = ?", [(k,) for k in batch.uncache])
            if batch.signed_artifacts:
                c.executemany("UPDATE artifacts SET signature = ? WHERE id = ?", batch.signed_artifacts)
            if batch.signed_entries:
                c.executemany("UPDATE cache SET signature = ? WHERE key = ?", batch.signed_entries)
            if batch.tracked:
                c.executemany(INSERT_TRACKED, batch.tracked)
            if batch.checks:
                c.executemany(INSERT_CHECKS, batch.checks)
            if batch.run_end:
                c.execute("UPDATE runs SET status = ?, ended = ?, error = ? WHERE id = ?", batch.run_end)
            if batch.heartbeat:
                c.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", batch.heartbeat)
            if FAULTS:
                fault("db.before_commit")

        self.write(write)
        batch.clear()
        if FAULTS:
            fault("db.after_commit")

    def task_runs(self, run_id: str) -> list[TaskRunRow]:
        rows = self.query("SELECT run_id, node, seq, task, status, attempts, started, ended, cache_key, artifact_id, "
                          "error, traceback, worker, logs, source, inputs FROM task_runs WHERE run_id = ? ORDER BY seq",
                          (run_id,))
        return [TaskRunRow(*r) for r in rows]

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        rows = self.query("SELECT node, number, started, ended, error FROM attempts WHERE run_id = ? "
                          "ORDER BY node, number", (run_id,))
        return [AttemptRecord(*r) for r in rows]

    # --- the cache -----------------------------------------------------------------------------

    def cache_lookup(self, keys: Iterable[str]) -> dict[str, CacheHit]:
        keys = list(keys)
        if not keys:
            return {}
        rows = self.query(self._cache_lookup, (orjson.dumps(keys).decode(),))
        new = tuple.__new__  # a CacheHit per row without a Python-level __new__: rows are many
        return {r[8]: new(CacheHit, r) for r in rows}  # r[8]: the hit's key

    def content_lookup(self, contents: Iterable[str]) -> dict[str, CacheHit]:
        contents = list(contents)
        if not contents:
            return {}
        # Many keys may share a content key (every rerun that found it files one): the newest
        # entry per content comes from the (content, created) index, newest first, one row each.
        rows = self.query(
            f"SELECT j.value, {_HIT_COLUMNS} FROM json_each(?) j "
            "JOIN cache c ON c.rowid = (SELECT c2.rowid FROM cache c2 JOIN artifacts a2 ON a2.id = c2.artifact_id "
            "  WHERE c2.content = j.value AND a2.removed IS NULL ORDER BY c2.created DESC LIMIT 1) "
            "JOIN artifacts a ON a.id = c.artifact_id", (json.dumps(contents),))
        new = tuple.__new__
        return {r[0]: new(CacheHit, r[1:]) for r in rows}

    def unbound_entries(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        if not keys:
            return set()
        entries = self.query("SELECT key, task, artifact_id, task_run_id FROM cache WHERE key IN "
                             "(SELECT value FROM json_each(?))", (json.dumps(keys),))
        # The producer each entry names, by the task runs' primary key: a task run id is
        # "<run id>/<node>", and both a node under a subflow and a run id given by hand may
        # hold a "/", so every split is a candidate (the id was made by one of them). Two
        # plain index lookups, not a join the planner could turn into a scan of all the task
        # runs that made the same bytes (every task that returned None).
        runs: set[str] = set()
        nodes: set[str] = set()
        for _key, _task, _artifact, producer in entries:
            at = producer.find("/") if producer else -1
            while at > 0:
                runs.add(producer[:at])
                nodes.add(producer[at + 1:])
                at = producer.find("/", at + 1)
        made = set(self.query(
            "SELECT run_id || '/' || node, task, artifact_id FROM task_runs WHERE status = 'completed' AND run_id IN "
            "(SELECT value FROM json_each(?)) AND node IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(runs)), json.dumps(sorted(nodes))))) if runs else set()
        return {key for key, task, artifact, producer in entries if (producer, task, artifact) not in made}

    def cache_entries(self) -> list[CacheEntry]:
        rows = self.query("SELECT c.key, c.task, c.artifact_id, c.created, a.size, a.type FROM cache c "
                          "LEFT JOIN artifacts a ON a.id = c.artifact_id ORDER BY c.created DESC")
        return [CacheEntry(*r) for r in rows]

    def clear_cache(self, tasks: Sequence[str] | None = None, *, dry_run: bool = False) -> int:
        where, params = "", []
        if tasks:
            where = " WHERE task IN (SELECT value FROM json_each(?))"
            params = [json.dumps(list(tasks))]

        if dry_run:
            return int(self.query("SELECT COUNT(*) FROM cache" + where, params)[0][0])
        return self.write(lambda c: c.execute("DELETE FROM cache" + where, params).rowcount)

    # --- artifacts -----------------------------------------------------------------------------

    def artifact(self, artifact_id: str) -> ArtifactRecord | None:
        rows = self.query(f"SELECT {_ARTIFACT_COLUMNS} FROM artifacts WHERE id = ?", (artifact_id,))
        return _artifact(rows[0]) if rows else None

    def artifact_ids_like(self, prefix: str) -> list[str]:
        return [r[0] for r in self.query("SELECT id FROM artifacts WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                                         (_like(prefix),))]

    def artifacts(self, limit: int | None = None) -> list[ArtifactRecord]:
        sql = f"SELECT {_ARTIFACT_COLUMNS} FROM artifacts ORDER BY created DESC, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_artifact(r) for r in self.query(sql)]

    def cache_sources(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        if not keys:
            return {}
        return dict(self.query("SELECT key, task_run_id FROM cache WHERE key IN (SELECT value FROM json_each(?)) "
                               "AND task_run_id IS NOT NULL", (json.dumps(keys),)))

    def newest_producers(self, artifact_ids: Iterable[str]) -> dict[str, LineageStep]:
        ids = list(artifact_ids)
        if not ids:
            return {}
        rows = self.query(_STEP + "WHERE tr.status = 'completed' AND tr.artifact_id IN "
                          "(SELECT value FROM json_each(?)) ORDER BY tr.started, tr.seq", (json.dumps(ids),))
        return {step.artifact_id: step for step in map(LineageStep._make, rows)}  # type: ignore[misc]  # newest wins

    def inline_data(self, artifact_id: str) -> bytes | None:
        rows = self.query("SELECT data FROM artifacts WHERE id = ?", (artifact_id,))
        return rows[0][0] if rows else None

    def inline_many(self, artifact_ids: Iterable[str]) -> dict[str, bytes]:
        ids = list(artifact_ids)
        if not ids:
            return {}
        rows = self.query("SELECT id, data FROM artifacts WHERE id IN (SELECT value FROM json_each(?)) "
                          "AND data IS NOT NULL", (json.dumps(ids),))
        return dict(rows)

    def stored_artifacts(self) -> dict[str, int | None]:
        return dict(self.query("SELECT id, size FROM artifacts WHERE removed IS NULL"))

    def referenced_artifacts(self, since: float) -> set[str]:
        recent = "r.started >= ? OR r.status = 'running'"
        parts = ["SELECT artifact_id FROM cache WHERE salted = 0",
                 "SELECT artifact_id FROM model_versions",  # a registered model is kept for good
                         f"SELECT c.artifact_id FROM cache c JOIN runs r ON r.id = c.run_id WHERE {recent}",
                         f"SELECT tr.artifact_id FROM task_runs tr JOIN runs r ON r.id = tr.run_id WHERE {recent}",
                         f"SELECT i.artifact_id FROM inputs i JOIN runs r ON r.id = i.run_id WHERE {recent}"]
        return {r[0] for r in self.query(" UNION ".join(parts), (since, since, since)) if r[0]}

    def mark_removed(self, artifact_ids: Sequence[str], when: float, by: str) -> None:
        ids = list(artifact_ids)

        def forget(c: Any) -> None:
            c.executemany("UPDATE artifacts SET removed = ?, removed_by = ?, data = NULL WHERE id = ?",
                          [(when, by, a) for a in ids])
            # entries of cache=False tasks (kept for resume=) expire with their value
            c.executemany("DELETE FROM cache WHERE artifact_id = ? AND salted = 1", [(a,) for a in ids])

        if ids:
            self.write(forget)

    # --- lineage -------------------------------------------------------------------------------

    def producers(self, artifact_id: str) -> list[LineageStep]:
        rows = self.query(_STEP + "WHERE tr.artifact_id = ? AND tr.status = 'completed' "
                          "ORDER BY tr.started DESC, tr.seq DESC", (artifact_id,))
        return [LineageStep(*r) for r in rows]

    def step(self, run_id: str, node: str) -> LineageStep | None:
        rows = self.query(_STEP + "WHERE tr.run_id = ? AND tr.node = ?", (run_id, node))
        return LineageStep(*rows[0]) if rows else None

    def consumed(self, run_id: str, node: str) -> list[InputRecord]:
        own = self.query("SELECT inputs FROM task_runs WHERE run_id = ? AND node = ? AND inputs IS NOT NULL",
                         (run_id, node))
        rows = self.query("SELECT kind, artifact_id, name, token, repr FROM inputs WHERE run_id = ? AND node = ? "
                          "ORDER BY rowid", (run_id, node))
        records = [InputRecord(*r) for r in rows]
        if own:  # artifact inputs computed in the run: its producers' artifacts, before the parameters
            pairs = read_inputs_column(own[0][0])
            records[:0] = _artifact_inputs(pairs, self._produced_in(run_id, [p for _, p in pairs]))
        return records

    def run_inputs(self, run_id: str) -> dict[str, list[InputRecord]]:
        rows = self.query("SELECT node, artifact_id, inputs FROM task_runs WHERE run_id = ?", (run_id,))
        artifacts = {node: artifact_id for node, artifact_id, _ in rows}
        out = {node: _artifact_inputs(read_inputs_column(column), artifacts)
               for node, _, column in rows if column is not None}
        for node, *row in self.query("SELECT node, kind, artifact_id, name, token, repr FROM inputs WHERE run_id = ? "
                                     "ORDER BY rowid", (run_id,)):
            out.setdefault(node, []).append(InputRecord(*row))
        return {node: records for node, records in out.items() if records}

    def _produced_in(self, run_id: str, nodes: Iterable[str]) -> dict[str, str | None]:
        """The artifact of each of these nodes' task runs in ``run_id``."""
        return dict(self.query("SELECT node, artifact_id FROM task_runs WHERE run_id = ? AND node IN "
                               "(SELECT value FROM json_each(?))", (run_id, json.dumps(sorted(set(nodes))))))

    # --- file inputs ---------------------------------------------------------------------------

    def file_record(self, path: str) -> FileRecord | None:
        rows = self.query("SELECT path, size, mtime_ns, digest FROM files WHERE path = ?", (path,))
        return FileRecord(*rows[0]) if rows else None

    def record_file(self, record: FileRecord) -> None:
        self.write(lambda c: c.execute(_PUT_FILE, (record.path, record.size, record.mtime_ns, record.digest)))
