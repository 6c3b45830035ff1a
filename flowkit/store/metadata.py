"""The metadata database: runs, task runs, artifacts, inputs, cache entries.

SQLite in WAL mode with a busy timeout; every write is one ``BEGIN IMMEDIATE``
transaction (retried while another process holds the write lock), so several
processes can run flows on one store at once. The schema version lives in
``PRAGMA user_version`` and is brought up to date by one guarded migration
step when the database is opened.
"""

from __future__ import annotations

import json
import random
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from flowkit.errors import StoreError

__all__ = ["SCHEMA_VERSION", "CacheHit", "InputRecord", "LineageStep", "MetadataDB"]

T = TypeVar("T")

#: Each entry upgrades the schema from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, flow TEXT NOT NULL, status TEXT NOT NULL, params TEXT, started REAL,
        ended REAL, trigger TEXT, scheduled REAL, host TEXT, user TEXT, git_commit TEXT, flow_file TEXT,
        cache_salt TEXT, error TEXT
    );
    CREATE INDEX runs_flow_started ON runs(flow, started);
    CREATE INDEX runs_started ON runs(started);
    CREATE TABLE task_runs (
        run_id TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL, task TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started REAL, ended REAL, cache_key TEXT,
        artifact_id TEXT,
        error TEXT, traceback TEXT, worker TEXT,
        PRIMARY KEY (run_id, node)
    ) WITHOUT ROWID;
    CREATE INDEX task_runs_produced ON task_runs(artifact_id) WHERE status = 'completed';
    CREATE TABLE artifacts (
        id TEXT PRIMARY KEY, uri TEXT, serializer TEXT NOT NULL, type TEXT, size INTEGER,
        columns TEXT, dtypes TEXT, rows INTEGER, created REAL, data BLOB
    );
    CREATE TABLE inputs (
        run_id TEXT NOT NULL, node TEXT NOT NULL, position INTEGER, kind TEXT NOT NULL, artifact_id TEXT,
        name TEXT, token TEXT, repr TEXT
    );
    CREATE INDEX inputs_task_run ON inputs(run_id, node);
    CREATE TABLE cache (
        key TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, task TEXT, task_run_id TEXT, created REAL,
        run_id TEXT, salted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX cache_artifact ON cache(artifact_id);
    CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, digest TEXT);
    """,
    """
    CREATE TABLE attempts (
        run_id TEXT NOT NULL, node TEXT NOT NULL, number INTEGER NOT NULL, started REAL, ended REAL, error TEXT,
        PRIMARY KEY (run_id, node, number)
    ) WITHOUT ROWID;
    """,
    """
    ALTER TABLE task_runs ADD COLUMN logs TEXT;
    """,
    """
    CREATE TABLE schedules (
        name TEXT PRIMARY KEY, flow_ref TEXT NOT NULL, flow TEXT NOT NULL, expr TEXT NOT NULL, tz TEXT NOT NULL,
        catchup TEXT NOT NULL, overlap TEXT NOT NULL, max_catchup INTEGER, params TEXT, params_pickle BLOB,
        paused INTEGER DEFAULT 0, created REAL NOT NULL, checked REAL NOT NULL
    );
    CREATE TABLE fires (
        schedule TEXT NOT NULL, slot REAL NOT NULL, status TEXT NOT NULL, run_id TEXT, holder TEXT,
        fired REAL, PRIMARY KEY (schedule, slot)
    ) WITHOUT ROWID;
    CREATE TABLE lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, expires REAL NOT NULL);
    """,
    # When an entry goes stale because a value upstream of it had a cache_ttl (NULL: never); the
    # task's own ttl is applied at lookup.
    """
    ALTER TABLE cache ADD COLUMN expires REAL;
    """,
    # Lineage per task run and early cutoff: a cached task run names the task run that produced
    # its value (``source``); an artifact gc or damage removed keeps its record (``removed``,
    # ``removed_by``); a cache entry also carries the key of its inputs' content (``content``),
    # under which a rerun whose upstream reproduced the same bytes finds it.
    """
    ALTER TABLE task_runs ADD COLUMN source TEXT;
    ALTER TABLE artifacts ADD COLUMN removed REAL;
    ALTER TABLE artifacts ADD COLUMN removed_by TEXT;
    ALTER TABLE cache ADD COLUMN content TEXT;
    CREATE INDEX cache_content ON cache(content) WHERE content IS NOT NULL;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

class CacheHit(NamedTuple):
    """A cache entry found for a key, with what loading its value needs.

    Attributes:
        artifact_id: the digest of the stored value.
        created: when the value was computed (epoch seconds).
        serializer: how its bytes decode.
        uri: its file, or ``None`` when the bytes are kept in the database.
        size: its size in bytes.
        expires: when it goes stale because a value it was computed from had a
            ``cache_ttl`` (``None``: never; the task's own ttl is applied on top).
        task_run_id: the task run that computed it.
        type: the value's type (``module.qualname``).
    """

    artifact_id: str
    created: float | None
    serializer: str
    uri: str | None
    size: int | None
    expires: float | None
    task_run_id: str | None
    type: str | None


_HIT_COLUMNS = "c.artifact_id, c.created, a.serializer, a.uri, a.size, c.expires, c.task_run_id, a.type"

_LOCKED = ("database is locked", "database is busy", "database table is locked")


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    return any(text in str(exc) for text in _LOCKED)


_DAMAGED = ("file is not a database", "database disk image is malformed")


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> StoreError | None:
    """The error for a database file SQLite cannot read, saying how to start afresh; ``None`` for other errors."""
    if not any(text in str(exc) for text in _DAMAGED):
        return None
    files = [p for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
             if p == path or p.exists()]
    moves = " && ".join(f"mv {shlex.quote(str(p))} {shlex.quote(str(p) + '.damaged')}" for p in files)
    return StoreError(
        f"the metadata database {path} is damaged ({exc}). Move it aside and flowkit starts a new, empty "
        f"one at the next command: {moves} . Keep the artifacts folder {path.parent / 'artifacts'}: cached "
        f"values are found again when tasks produce them, so only the run history is lost.")


class MetadataDB:
    """One connection per process and thread to ``flowkit.db``."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._migrate()

    def __reduce__(self) -> tuple[object, ...]:
        return (MetadataDB, (str(self.path),))

    # --- connections and transactions ----------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
                conn.execute("PRAGMA synchronous = NORMAL")
            except (sqlite3.Error, OSError) as exc:
                damaged = _damaged(self.path, exc) if isinstance(exc, sqlite3.DatabaseError) else None
                if damaged is not None:
                    raise damaged from exc
                raise StoreError(f"cannot open the metadata database {self.path}: {exc}. Check that the folder "
                                 f"is writable, or point FLOWKIT_HOME elsewhere.") from exc
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    raise
            except sqlite3.DatabaseError as exc:  # found damaged after it opened
                damaged = _damaged(self.path, exc)
                if damaged is None:
                    raise
                raise damaged from exc
            time.sleep(delay * (1 + random.random()))  # locked: try again shortly
            delay = min(delay * 2, 0.25)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retried while the store is busy."""
        conn = self.conn

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._retry(attempt)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""
        return self._retry(lambda: self.conn.execute(sql, params).fetchall())

    def _migrate(self) -> None:
        def step(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {self.path} has schema version {version}, newer than this flowkit knows "
                    f"({SCHEMA_VERSION}); upgrade flowkit to use it"
                )
            for i in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[i].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        if self.query("PRAGMA user_version")[0][0] != SCHEMA_VERSION:
            self.write(step)

    # --- writes --------------------------------------------------------------------------------

    def start_run(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.write(lambda c: c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", list(row.values())))

    def flush(self, batch: Batch) -> None:
        """Write a batch of records in one transaction."""
        if batch.empty():
            return

        def write(c: sqlite3.Connection) -> None:
            if batch.forget_artifacts:  # damaged bytes: the record stays, the recomputed value revives it
                c.executemany("UPDATE artifacts SET removed = ?, removed_by = 'damaged', data = NULL WHERE id = ?",
                              batch.forget_artifacts)
            if batch.artifacts:  # the same bytes stored again: a removed record comes back to life
                c.executemany("INSERT INTO artifacts (id, uri, serializer, type, size, columns, dtypes, rows, "
                              "created, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                              "uri = excluded.uri, serializer = excluded.serializer, data = excluded.data, "
                              "removed = NULL, removed_by = NULL WHERE artifacts.removed IS NOT NULL",
                              batch.artifacts)
            if batch.task_runs:
                c.executemany("INSERT OR REPLACE INTO task_runs (run_id, node, seq, task, status, attempts, started, "
                              "ended, cache_key, artifact_id, error, traceback, worker, logs, source) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch.task_runs)
            if batch.cached:  # most rows of a rerun: only the columns a cached task run has
                c.executemany("INSERT OR REPLACE INTO task_runs (run_id, node, seq, task, status, cache_key, "
                              "artifact_id, source, attempts) VALUES (?, ?, ?, ?, 'cached', ?, ?, ?, 0)", batch.cached)
            if batch.attempts:
                c.executemany("INSERT OR REPLACE INTO attempts (run_id, node, number, started, ended, error) "
                              "VALUES (?, ?, ?, ?, ?, ?)", batch.attempts)
            if batch.inputs:
                c.executemany("INSERT INTO inputs (run_id, node, position, kind, artifact_id, name, token, repr) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch.inputs)
            if batch.cache:
                c.executemany("INSERT OR REPLACE INTO cache (key, artifact_id, task, task_run_id, created, run_id, "
                              "salted, expires, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch.cache)
            if batch.uncache:
                c.executemany("DELETE FROM cache WHERE key = ?", [(k,) for k in batch.uncache])
            if batch.run_end:
                c.execute("UPDATE runs SET status = ?, ended = ?, error = ? WHERE id = ?", batch.run_end)

        self.write(write)
        batch.clear()

    # --- reads ---------------------------------------------------------------------------------

    def cache_lookup(self, keys: Iterable[str]) -> dict[str, CacheHit]:
        """The entries of those ``keys`` that are in the cache, in one query."""
        keys = list(keys)
        if not keys:
            return {}
        rows = self.query(
            f"SELECT c.key, {_HIT_COLUMNS} FROM cache c JOIN artifacts a ON a.id = c.artifact_id "
            "WHERE c.key IN (SELECT value FROM json_each(?)) AND a.removed IS NULL",
            (json.dumps(keys),),
        )
        new = tuple.__new__  # a CacheHit per row without a Python-level __new__: rows are many
        return {r[0]: new(CacheHit, r[1:]) for r in rows}

    def content_lookup(self, contents: Iterable[str]) -> dict[str, CacheHit]:
        """The newest entry computed from inputs with each of these content keys (early cutoff), in one query."""
        contents = list(contents)
        if not contents:
            return {}
        rows = self.query(
            f"SELECT c.content, {_HIT_COLUMNS} FROM cache c JOIN artifacts a ON a.id = c.artifact_id "
            "WHERE c.content IN (SELECT value FROM json_each(?)) AND a.removed IS NULL ORDER BY c.created",
            (json.dumps(contents),))
        return {r[0]: CacheHit(*r[1:]) for r in rows}  # the newest comes last and wins

    def has_other_runs(self, flow: str, run_id: str) -> bool:
        """Whether the store has recorded a run of this flow other than ``run_id``."""
        return bool(self.query("SELECT 1 FROM runs WHERE flow = ? AND id != ? LIMIT 1", (flow, run_id)))

    def inline_many(self, artifact_ids: Iterable[str]) -> dict[str, bytes]:
        """The bytes of many small artifacts kept in the database, in one query."""
        ids = list(artifact_ids)
        if not ids:
            return {}
        rows = self.query("SELECT id, data FROM artifacts WHERE id IN (SELECT value FROM json_each(?)) "
                          "AND data IS NOT NULL", (json.dumps(ids),))
        return dict(rows)

    def inline_data(self, artifact_id: str) -> bytes | None:
        rows = self.query("SELECT data FROM artifacts WHERE id = ?", (artifact_id,))
        return rows[0][0] if rows else None


    # --- lineage -------------------------------------------------------------------------------

    _STEP = ("SELECT tr.run_id, tr.node, tr.task, tr.status, tr.started, tr.cache_key, tr.artifact_id, tr.source, "
             "r.flow, r.git_commit FROM task_runs tr LEFT JOIN runs r ON r.id = tr.run_id ")

    def producers(self, artifact_id: str) -> list[LineageStep]:
        """Every task run that computed these bytes, newest first."""
        rows = self.query(self._STEP + "WHERE tr.artifact_id = ? AND tr.status = 'completed' "
                          "ORDER BY tr.started DESC, tr.seq DESC", (artifact_id,))
        return [LineageStep(*r) for r in rows]

    def step(self, run_id: str, node: str) -> LineageStep | None:
        """The task run of ``node`` in ``run_id``, if it was recorded."""
        rows = self.query(self._STEP + "WHERE tr.run_id = ? AND tr.node = ?", (run_id, node))
        return LineageStep(*rows[0]) if rows else None

    def consumed(self, run_id: str, node: str) -> list[InputRecord]:
        """What a task run consumed, in the order it was recorded."""
        rows = self.query("SELECT kind, artifact_id, name, token, repr FROM inputs WHERE run_id = ? AND node = ? "
                          "ORDER BY rowid", (run_id, node))
        return [InputRecord(*r) for r in rows]

    def run_ids_like(self, prefix: str) -> list[str]:
        """At most two run ids starting with ``prefix`` (two: it is ambiguous)."""
        return [r[0] for r in self.query("SELECT id FROM runs WHERE id LIKE ? LIMIT 2", (prefix + "%",))]

    def artifact_ids_like(self, prefix: str) -> list[str]:
        """At most two artifact ids starting with ``prefix`` (two: it is ambiguous)."""
        return [r[0] for r in self.query("SELECT id FROM artifacts WHERE id LIKE ? LIMIT 2", (prefix + "%",))]


class LineageStep(NamedTuple):
    """One recorded task run, as lineage walks it (``source``: for a cached one, who computed the value)."""

    run_id: str
    node: str
    task: str
    status: str
    started: float | None
    cache_key: str | None
    artifact_id: str | None
    source: str | None
    flow: str | None
    git_commit: str | None

    @property
    def id(self) -> str:
        return f"{self.run_id}/{self.node}"


class InputRecord(NamedTuple):
    """One input of a task run: an artifact (``name``: the upstream node) or a parameter."""

    kind: str
    artifact_id: str | None
    name: str | None
    token: str | None
    repr: str | None


class Batch:
    """Rows waiting to be written together (see :meth:`MetadataDB.flush`)."""

    __slots__ = ("artifacts", "task_runs", "cached", "attempts", "inputs", "cache", "uncache", "forget_artifacts",
                 "run_end")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.artifacts: list[tuple[Any, ...]] = []
        self.task_runs: list[tuple[Any, ...]] = []
        self.cached: list[tuple[Any, ...]] = []
        self.attempts: list[tuple[Any, ...]] = []
        self.inputs: list[tuple[Any, ...]] = []
        self.cache: list[tuple[Any, ...]] = []
        self.uncache: list[str] = []
        self.forget_artifacts: list[tuple[float, str]] = []  # (when, artifact id)
        self.run_end: tuple[Any, ...] | None = None

    def empty(self) -> bool:
        return not (self.artifacts or self.task_runs or self.cached or self.attempts or self.inputs or self.cache or self.uncache
                    or self.forget_artifacts or self.run_end)

    def __len__(self) -> int:
        return len(self.task_runs) + len(self.cached) + len(self.artifacts) + len(self.inputs) + len(self.cache)
