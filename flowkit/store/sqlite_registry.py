"""Registered models, their aliases and the alias history in SQLite (part of :class:`~flowkit.store.sqlite.SQLiteMetadataStore`).

The tables belong to the ``"registry"`` migration list. A version is allocated
as ``MAX(version) + 1`` inside the ``BEGIN IMMEDIATE`` transaction that inserts
it, so two processes registering at once serialize on the write lock and get
consecutive versions; (name, version) is the primary key and (name, cache key)
unique, so a duplicate could not be written even by a faulty caller. The alias
history refuses updates and deletes (triggers, in both backends): it is append-only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flowkit.store.migrations import register_migrations
from flowkit.store.registry import ANY, AliasRecord, ModelSummary, ModelVersionRecord

__all__ = ["RegistryTables"]


def _append_only(conn: Any) -> None:
    # A trigger body holds ';', so it cannot go in a text step (split on ';').
    if getattr(conn, "dialect", "sqlite") == "postgresql":
        conn.execute("CREATE FUNCTION alias_history_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'the alias history is append-only'; END $$")
        for event in ("UPDATE", "DELETE"):
            conn.execute(f"CREATE TRIGGER alias_history_no_{event.lower()} BEFORE {event} ON alias_history "
                         "FOR EACH ROW EXECUTE FUNCTION alias_history_append_only()")
        return
    for event in ("UPDATE", "DELETE"):
        conn.execute(f"CREATE TRIGGER alias_history_no_{event.lower()} BEFORE {event} ON alias_history "
                     "BEGIN SELECT RAISE(ABORT, 'the alias history is append-only'); END")


register_migrations("registry", [
    """
    CREATE TABLE model_versions (
        name TEXT NOT NULL, version INTEGER NOT NULL, artifact_id TEXT NOT NULL, run_id TEXT, task_run_id TEXT,
        cache_key TEXT, metrics TEXT, params TEXT, tags TEXT, signature TEXT, library_versions TEXT,
        created REAL NOT NULL, user TEXT,
        PRIMARY KEY (name, version)
    );
    CREATE UNIQUE INDEX model_versions_cache_key ON model_versions(name, cache_key) WHERE cache_key IS NOT NULL;
    CREATE INDEX model_versions_artifact ON model_versions(artifact_id);
    CREATE TABLE model_aliases (
        name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (name, alias)
    ) WITHOUT ROWID;
    CREATE TABLE alias_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER,
        previous INTEGER, time REAL NOT NULL, user TEXT, run_id TEXT, reason TEXT, action TEXT NOT NULL
    );
    CREATE INDEX alias_history_alias ON alias_history(name, alias, time)
    """,
    _append_only,
])

_VERSION_COLUMNS = ("v.name, v.version, v.artifact_id, v.run_id, v.task_run_id, v.cache_key, v.metrics, v.params, "
                    'v.tags, v.signature, v.library_versions, v.created, v."user", '
                    "(SELECT json_group_array(a.alias) FROM (SELECT alias FROM model_aliases "
                    " WHERE name = v.name AND version = v.version ORDER BY alias) a), "
                    "art.serializer, art.data, art.removed")
# The artifact's serializer and inline bytes come along, so loading a resolved model needs no second query.
_SELECT = f"SELECT {_VERSION_COLUMNS} FROM model_versions v LEFT JOIN artifacts art ON art.id = v.artifact_id "
_HISTORY_COLUMNS = 'name, alias, version, previous, time, "user", run_id, reason, action, seq'
_INSERT_ARTIFACT = ("INSERT INTO artifacts (id, uri, serializer, type, size, columns, dtypes, rows, created, data, "
                    "versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET uri = excluded.uri, "
                    "serializer = excluded.serializer, data = excluded.data, removed = NULL, removed_by = NULL "
                    "WHERE artifacts.removed IS NOT NULL")


def _json(text: str | None, empty: Any = None) -> Any:
    return empty if text is None else json.loads(text)


def _version(r: Sequence[Any]) -> ModelVersionRecord:
    return ModelVersionRecord(r[0], r[1], r[2], r[3], r[4], r[5], _json(r[6], {}), _json(r[7], {}), _json(r[8], {}),
                              _json(r[9]), _json(r[10], {}), r[11], r[12], tuple(_json(r[13], [])),
                              r[14] if r[16] is None else None, r[15])


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=repr)


class RegistryTables:
    """The registry part of the metadata protocol, over the ``write``/``query`` of the SQLite store."""

    write: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    query: Callable[..., list[tuple[Any, ...]]]

    # --- versions ------------------------------------------------------------------------------

    def add_model_version(self, record: ModelVersionRecord, aliases: Sequence[str] = (),
                          artifact: Any = None) -> tuple[ModelVersionRecord, bool]:
        def add(c: sqlite3.Connection) -> tuple[ModelVersionRecord, bool]:
            if record.cache_key is not None:
                row = c.execute(_SELECT + "WHERE v.name = ? AND v.cache_key = ?",
                                (record.name, record.cache_key)).fetchone()
                if row is not None:
                    return _version(row), False
            if artifact is not None:
                c.execute(_INSERT_ARTIFACT, tuple(artifact))
            version = c.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?",
                                (record.name,)).fetchone()[0]
            c.execute("INSERT INTO model_versions (name, version, artifact_id, run_id, task_run_id, cache_key, "
                      'metrics, params, tags, signature, library_versions, created, "user") '
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (record.name, version, record.artifact_id, record.run_id, record.task_run_id, record.cache_key,
                       _dumps(record.metrics), _dumps(record.params), _dumps(record.tags), _dumps(record.signature),
                       _dumps(record.library_versions), record.created, record.user))
            for alias in dict.fromkeys(aliases):
                self._move(c, record.name, alias, version, record.created, record.user, "set", None, record.run_id,
                           ANY)
            return _version(c.execute(_SELECT + "WHERE v.name = ? AND v.version = ?",
                                      (record.name, version)).fetchone()), True

        return self.write(add)  # type: ignore[no-any-return]

    def find_model_version(self, name: str, version: int | None = None, alias: str | None = None,
                           as_of: float | None = None) -> ModelVersionRecord | None:
        if version is not None:
            sql, params = _SELECT + "WHERE v.name = ? AND v.version = ?", [name, version]
            if as_of is not None:
                sql += " AND v.created <= ?"
                params.append(as_of)
        elif alias is not None and as_of is None:
            sql = _SELECT + ("WHERE v.name = ? AND v.version = (SELECT version FROM model_aliases "
                             "WHERE name = ? AND alias = ?)")
            params = [name, name, alias]
        elif alias is not None:
            sql = _SELECT + ("WHERE v.name = ? AND v.version = (SELECT version FROM alias_history "
                             "WHERE name = ? AND alias = ? AND time <= ? ORDER BY time DESC, seq DESC LIMIT 1)")
            params = [name, name, alias, as_of]
        else:
            sql, params = _SELECT + "WHERE v.name = ?", [name]
            if as_of is not None:
                sql += " AND v.created <= ?"
                params.append(as_of)
            sql += " ORDER BY v.version DESC LIMIT 1"
        rows = self.query(sql, params)
        return _version(rows[0]) if rows else None

    def model_version_for_key(self, name: str, cache_key: str) -> ModelVersionRecord | None:
        rows = self.query(_SELECT + "WHERE v.name = ? AND v.cache_key = ?", (name, cache_key))
        return _version(rows[0]) if rows else None

    def relink_model_version(self, name: str, version: int, run_id: str, task_run_id: str) -> ModelVersionRecord:
        def relink(c: sqlite3.Connection) -> ModelVersionRecord:
            c.execute("UPDATE model_versions SET run_id = ?, task_run_id = ? WHERE name = ? AND version = ?",
                      (run_id, task_run_id, name, version))
            return _version(c.execute(_SELECT + "WHERE v.name = ? AND v.version = ?", (name, version)).fetchone())

        return self.write(relink)

    def model_versions(self, name: str) -> list[ModelVersionRecord]:
        return [_version(r) for r in self.query(_SELECT + "WHERE v.name = ? ORDER BY v.version", (name,))]

    def models(self) -> list[ModelSummary]:
        rows = self.query("SELECT name, COUNT(*), MAX(version), MIN(created), MAX(created) FROM model_versions "
                          "GROUP BY name ORDER BY name")
        return [ModelSummary(*r) for r in rows]

    # --- aliases -------------------------------------------------------------------------------

    def model_aliases(self, name: str) -> dict[str, int]:
        return dict(self.query("SELECT alias, version FROM model_aliases WHERE name = ? ORDER BY alias", (name,)))

    def move_alias(self, name: str, alias: str, version: int | None, *, when: float, user: str | None,
                   action: str, reason: str | None = None, run_id: str | None = None,
                   expect: Any = ANY) -> AliasRecord | None:
        return self.write(  # type: ignore[no-any-return]
            lambda c: self._move(c, name, alias, version, when, user, action, reason, run_id, expect))

    @staticmethod
    def _move(c: sqlite3.Connection, name: str, alias: str, version: int | None, when: float, user: str | None,
              action: str, reason: str | None, run_id: str | None, expect: Any) -> AliasRecord | None:
        row = c.execute("SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
        previous = row[0] if row else None
        if (expect is not ANY and previous != expect) or (version is None and previous is None):
            return None
        if version is None:
            c.execute("DELETE FROM model_aliases WHERE name = ? AND alias = ?", (name, alias))
        else:
            c.execute("INSERT INTO model_aliases (name, alias, version) VALUES (?, ?, ?) "
                      "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version", (name, alias, version))
        seq = c.execute('INSERT INTO alias_history (name, alias, version, previous, time, "user", run_id, reason, '
                        "action) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                        (name, alias, version, previous, when, user, run_id, reason, action)).fetchone()[0]
        return AliasRecord(name, alias, version, previous, when, user, run_id, reason, action, int(seq or 0))

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasRecord]:
        sql, params = f"SELECT {_HISTORY_COLUMNS} FROM alias_history WHERE name = ?", [name]
        if alias is not None:
            sql += " AND alias = ?"
            params.append(alias)
        return [AliasRecord(*r) for r in self.query(sql + " ORDER BY seq", params)]

    # --- lineage -------------------------------------------------------------------------------

    def registered_producers(self, artifact_ids: Iterable[str]) -> dict[str, str]:
        ids = list(artifact_ids)
        if not ids:
            return {}
        rows = self.query("SELECT artifact_id, task_run_id FROM model_versions WHERE task_run_id IS NOT NULL "
                          "AND artifact_id IN (SELECT value FROM json_each(?)) ORDER BY created, version",
                          (json.dumps(ids),))
        return dict(rows)  # the newest wins
