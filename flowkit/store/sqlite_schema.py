"""The core schema in SQLite: runs, task runs, attempts, artifacts, inputs, cache, files, schedules.

``MIGRATIONS`` is the ``"core"`` migration list (see :mod:`flowkit.store.migrations`);
a store's core version is its ``PRAGMA user_version``, as it was before features
had lists of their own, so stores made by earlier versions open unchanged.
Append a step to change the schema; never edit one that shipped.
"""

from __future__ import annotations

from flowkit.store.migrations import CORE, register_migrations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

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
    CREATE INDEX cache_content ON cache(content, created) WHERE content IS NOT NULL;
    """,
    # Who runs a run: the owner's process id and start time (the host is ``host``) and its last
    # sign of life, so a reader can tell a run whose process died (``crashed``) from one running.
    """
    ALTER TABLE runs ADD COLUMN owner_pid INTEGER;
    ALTER TABLE runs ADD COLUMN owner_start TEXT;
    ALTER TABLE runs ADD COLUMN heartbeat REAL;
    """,
    # What started a run that another run started (``fk.trigger``): that run, and why (JSON).
    """
    ALTER TABLE runs ADD COLUMN triggered_by TEXT;
    ALTER TABLE runs ADD COLUMN trigger_reason TEXT;
    CREATE INDEX runs_triggered_by ON runs(triggered_by) WHERE triggered_by IS NOT NULL;
    """,
    # Trust and compatibility: an artifact's and a cache entry's signature under the store's key
    # (flowkit.store.signing; NULL when written without signing), and the versions of Python and
    # the libraries of the process that wrote an artifact (JSON).
    """
    ALTER TABLE artifacts ADD COLUMN signature TEXT;
    ALTER TABLE artifacts ADD COLUMN versions TEXT;
    ALTER TABLE cache ADD COLUMN signature TEXT;
    """,
    # A task run's artifact inputs as the nodes of its own run that produced them (JSON pairs of
    # position and node; flowkit.store.protocols.inputs_column), when each of them was computed in
    # that run: one column instead of an ``inputs`` row (and its two index entries) per input.
    """
    ALTER TABLE task_runs ADD COLUMN inputs TEXT;
    """,
    # Entries are found by artifact only to drop the salted ones (``cache=False`` tasks, kept for
    # ``resume=``) whose value gc removed: index those alone, not an entry of every computed task.
    """
    DROP INDEX cache_artifact;
    CREATE INDEX cache_salted_artifact ON cache(artifact_id) WHERE salted = 1;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

register_migrations(CORE, MIGRATIONS, dialect="sqlite")
