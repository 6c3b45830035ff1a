"""The store: ``$FLOWKIT_HOME`` (default ``./.flowkit``), metadata plus artifacts.

- ``flowkit.db``: the SQLite metadata database (:mod:`flowkit.store.metadata`);
- ``artifacts/``: content-addressed files (:mod:`flowkit.store.artifacts`);
  small values (up to 32 KiB) are kept inside the database instead. The
  artifact root may be moved elsewhere, an fsspec URL included, with
  ``Store(home, artifacts=...)`` or ``$FLOWKIT_ARTIFACTS``, so that the workers
  of a remote Dask cluster can write and read it.

:class:`Store` is what the engine, the lineage queries and the CLI use. It
pickles as its home path, so it can travel to a worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkit.errors import CacheCorruptionError, StoreError
from flowkit.hashing import file_digest
from flowkit.records import Attempt, Run, TaskRun
from flowkit.store.artifacts import DamagedArtifact, artifact_files
from flowkit.store.metadata import MetadataDB
from flowkit.store.serializers import load_artifact

__all__ = ["GCReport", "Store", "current_file_digests", "default_home"]

_FILE_DIGESTS: contextvars.ContextVar[Callable[[Path], str]] = contextvars.ContextVar(
    "flowkit_file_digests", default=lambda path: file_digest(path))


def current_file_digests() -> Callable[[Path], str]:
    """How ``fk.File`` inputs are digested in this context (the store's shortcut table when planning a run)."""
    return _FILE_DIGESTS.get()


def default_home() -> Path:
    """``$FLOWKIT_HOME``, else ``./.flowkit``."""
    return Path(os.environ.get("FLOWKIT_HOME") or ".flowkit")


_OPEN: dict[tuple[Path, str | None], Store] = {}
_OPEN_LOCK = threading.Lock()


def _reopen(home: str, artifacts: str) -> Store:
    return Store.open(home, artifacts=artifacts)


@dataclass
class GCReport:
    """What :meth:`Store.gc` removed (or would remove, with ``dry_run``)."""

    artifacts: list[str] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False


class Store:
    """Metadata database plus artifact folder under one home directory."""

    def __init__(self, home: str | os.PathLike[str] | None = None, *,
                 artifacts: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the flowkit store at {self.home}: {exc}. Set FLOWKIT_HOME to a "
                             f"writable folder.") from exc
        self.db = MetadataDB(self.home / "flowkit.db")
        root = artifacts or os.environ.get("FLOWKIT_ARTIFACTS") or self.home / "artifacts"
        self.artifacts_root = os.fspath(root)
        self.files = artifact_files(root)
        self._file_memo: dict[tuple[str, int, int], str] = {}

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None, *,
             artifacts: str | os.PathLike[str] | None = None) -> Store:
        """The store at ``home`` (default: :func:`default_home`), shared within this process."""
        path = (Path(home) if home is not None else default_home()).absolute()
        root = artifacts or os.environ.get("FLOWKIT_ARTIFACTS")
        with _OPEN_LOCK:
            store = _OPEN.get((path, root))
            if store is None:
                store = _OPEN[(path, root)] = cls(path, artifacts=root)
            return store

    def __reduce__(self) -> tuple[object, ...]:
        return (_reopen, (str(self.home), self.artifacts_root))

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    # --- files as inputs -----------------------------------------------------------------------

    def file_digest(self, path: Path) -> str:
        """A file's content digest, reusing the recorded one while its size and mtime are unchanged."""
        real = os.path.realpath(path)
        st = os.stat(real)
        memo_key = (real, st.st_size, st.st_mtime_ns)
        cached = self._file_memo.get(memo_key)
        if cached is not None:
            return cached
        rows = self.db.query("SELECT size, mtime_ns, digest FROM files WHERE path = ?", (real,))
        if rows and rows[0][0] == st.st_size and rows[0][1] == st.st_mtime_ns:
            d = rows[0][2]
        else:
            d = file_digest(real)
            self.db.write(lambda c: c.execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, digest) "
                                              "VALUES (?, ?, ?, ?)", (real, st.st_size, st.st_mtime_ns, d)))
        self._file_memo[memo_key] = d
        return d

    @contextlib.contextmanager
    def digesting_files(self) -> Iterator[None]:
        """Within this block, ``fk.File`` tokens use this store's size+mtime shortcut table."""
        token = _FILE_DIGESTS.set(self.file_digest)
        try:
            yield
        finally:
            _FILE_DIGESTS.reset(token)

    # --- artifacts -----------------------------------------------------------------------------

    def artifact(self, artifact_id: str) -> dict[str, Any] | None:
        """The record of an artifact: uri, serializer, type, size, columns, dtypes, rows, created.

        An artifact that gc (or damage) removed keeps its record: ``removed`` says when, and
        ``removed_by`` why (``"gc"`` or ``"damaged"``); both are ``None`` while its bytes exist.
        """
        rows = self.db.query("SELECT id, uri, serializer, type, size, columns, dtypes, rows, created, "
                             "data IS NOT NULL, removed, removed_by FROM artifacts WHERE id = ?", (artifact_id,))
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "uri": r[1] or "inline", "serializer": r[2], "type": r[3], "size": r[4],
                "columns": json.loads(r[5]) if r[5] else None, "dtypes": json.loads(r[6]) if r[6] else None,
                "rows": r[7], "created": r[8], "inline": bool(r[9]), "removed": r[10], "removed_by": r[11]}

    def load(self, artifact_id: str) -> Any:
        """The value of an artifact; :class:`~flowkit.CacheCorruptionError` if its bytes are damaged."""
        record = self.artifact(artifact_id)
        if record is None:
            raise KeyError(f"no artifact {artifact_id!r} in the store at {self.home}")
        if record["removed"] is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["removed"]))
            cause = "by gc" if record["removed_by"] == "gc" else f"({record['removed_by']})"
            raise KeyError(f"artifact {artifact_id} was removed {cause} at {when}; its record and lineage are "
                           f"kept, and rerunning the flow that made it recomputes it")
        inline = self.db.inline_data(artifact_id) if record["inline"] else None
        try:
            return load_artifact(self.files, artifact_id, record["serializer"], inline)
        except DamagedArtifact as exc:
            raise CacheCorruptionError(f"artifact {artifact_id} is damaged ({exc}); rerun the flow that made it "
                                       f"to recompute it") from exc

    # --- runs ----------------------------------------------------------------------------------

    def runs(self, flow: str | None = None, limit: int | None = None, status: str | None = None) -> list[Run]:
        """Run records, newest first."""
        where, params = [], []
        if flow is not None:
            where.append("flow = ?")
            params.append(flow)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = ("SELECT id, flow, status, params, started, ended, trigger, error, host, user, git_commit, flow_file, "
               "scheduled FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY started DESC, rowid DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._run(r) for r in self.db.query(sql, params)]

    def run(self, run_id: str) -> Run:
        """One run record by id (a unique prefix of it is enough)."""
        rows = self.db.query("SELECT id, flow, status, params, started, ended, trigger, error, host, user, "
                             "git_commit, flow_file, scheduled FROM runs WHERE id LIKE ? LIMIT 2", (run_id + "%",))
        if not rows:
            raise KeyError(f"no run {run_id!r} in the store at {self.home}")
        if len(rows) > 1:
            raise KeyError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        return self._run(rows[0])

    def _run(self, r: tuple[Any, ...]) -> Run:
        info = {"host": r[8], "user": r[9], "git_commit": r[10], "flow_file": r[11], "scheduled": r[12]}
        return Run(r[0], r[1], r[2], json.loads(r[3]) if r[3] else {}, r[4], r[5], None, r[6], r[7], info=info,
                   load=self.task_runs)

    def task_runs(self, run_id: str) -> tuple[TaskRun, ...]:
        """The task runs of a run, in the order they were recorded."""
        rows = self.db.query("SELECT run_id || '/' || node, run_id, node, task, status, attempts, started, ended, "
                             "cache_key, artifact_id, error, traceback, worker, logs, source FROM task_runs WHERE run_id = ? "
                             "ORDER BY seq", (run_id,))
        history: dict[str, list[Attempt]] = {}
        for node, number, started, ended, error in self.db.query(
                "SELECT node, number, started, ended, error FROM attempts WHERE run_id = ? ORDER BY node, number",
                (run_id,)):
            history.setdefault(node, []).append(Attempt(number, started, ended, error))
        out = []
        for r in rows:
            attempts = history.get(r[2])
            if attempts is None and r[4] == "completed":
                attempts = [Attempt(1, r[6], r[7], None)]
            out.append(TaskRun(*r[:13], history=tuple(attempts or ()), logs=r[13], source=r[14]))
        return tuple(out)

    def cache_salt(self, run_id: str) -> tuple[str, str]:
        """(flow, cache salt) of a run, for ``resume=``."""
        rows = self.db.query("SELECT flow, cache_salt FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(run_id)
        return rows[0][0], rows[0][1] or run_id

    # --- the cache -----------------------------------------------------------------------------

    def cache_entries(self) -> list[dict[str, Any]]:
        """Every cache entry with its task, artifact and size, newest first."""
        rows = self.db.query("SELECT c.key, c.task, c.artifact_id, c.created, a.size, a.type FROM cache c "
                             "LEFT JOIN artifacts a ON a.id = c.artifact_id ORDER BY c.created DESC")
        return [{"key": r[0], "task": r[1], "artifact_id": r[2], "created": r[3], "size": r[4], "type": r[5]}
                for r in rows]

    def clear_cache(self, *, tasks: list[str] | None = None, dry_run: bool = False) -> int:
        """Forget cache entries (all, or those of some tasks); return how many. Artifacts go at the next gc."""
        where, params = "", []
        if tasks:
            where = " WHERE task IN (SELECT value FROM json_each(?))"
            params = [json.dumps(tasks)]
        count = self.db.query("SELECT COUNT(*) FROM cache" + where, params)[0][0]
        if not dry_run and count:
            self.db.write(lambda c: c.execute("DELETE FROM cache" + where, params))
        return count

    # --- garbage collection --------------------------------------------------------------------

    def gc(self, *, keep_days: float = 30.0, dry_run: bool = False, now: float | None = None,
           grace_seconds: float = 3600.0) -> GCReport:
        """Remove artifacts nothing needs any more.

        An artifact is kept while a cache entry points to it, a run that
        started in the last ``keep_days`` days (or that is still running)
        produced or consumed it, or a registered model refers to it. Files
        younger than ``grace_seconds`` are kept too: a running flow may have
        written them without recording them yet.
        """
        now = time.time() if now is None else now
        since = now - keep_days * 86400
        keep_sql = (
            "SELECT artifact_id FROM cache WHERE salted = 0 "
            "UNION SELECT c.artifact_id FROM cache c JOIN runs r ON r.id = c.run_id "
            "  WHERE r.started >= ? OR r.status = 'running' "
            "UNION SELECT tr.artifact_id FROM task_runs tr JOIN runs r ON r.id = tr.run_id "
            "  WHERE r.started >= ? OR r.status = 'running' "
            "UNION SELECT i.artifact_id FROM inputs i JOIN runs r ON r.id = i.run_id "
            "  WHERE r.started >= ? OR r.status = 'running'"
        )
        keep = {r[0] for r in self.db.query(keep_sql, (since, since, since)) if r[0]}
        report = GCReport(dry_run=dry_run)
        doomed_rows = self.db.query("SELECT id, size FROM artifacts WHERE removed IS NULL")
        for artifact_id, size in doomed_rows:
            if artifact_id not in keep:
                report.artifacts.append(artifact_id)
                report.bytes += size or 0
        doomed = set(report.artifacts)
        stray = [(d, mtime) for d, mtime in self.files.digests() if d not in keep and d not in doomed]
        for d, mtime in stray:  # files never recorded (an interrupted run), past the grace period
            if now - mtime > grace_seconds:
                report.artifacts.append(d)
        fresh = {d for d, mtime in self.files.digests() if now - mtime <= grace_seconds}
        report.artifacts = [a for a in report.artifacts if a not in fresh]
        if dry_run or not report.artifacts:
            return report
        gone = report.artifacts

        def forget(c: Any) -> None:  # the records stay, so lineage can say what was there
            c.executemany("UPDATE artifacts SET removed = ?, removed_by = 'gc', data = NULL WHERE id = ?",
                          [(now, a) for a in gone])
            # entries of cache=False tasks (kept for resume=) expire with their run's history
            c.executemany("DELETE FROM cache WHERE artifact_id = ? AND salted = 1", [(a,) for a in gone])

        self.db.write(forget)
        for a in gone:
            self.files.delete(a)
        return report


    # --- read-only queries for the CLI ---------------------------------------------------------

    def computed_by(self, cache_keys: Iterable[str]) -> dict[str, TaskRun]:
        """The task run that computed each cache entry, by cache key (keys not in the cache are left out).

        A ``cached`` task run's own timings are those of loading the value; this is
        where to read how long computing it took (:attr:`TaskRun.run_time`).
        """
        keys = list(dict.fromkeys(cache_keys))
        if not keys:
            return {}
        rows = self.db.query("SELECT key, task_run_id FROM cache WHERE key IN (SELECT value FROM json_each(?)) "
                             "AND task_run_id IS NOT NULL", (json.dumps(keys),))
        by_run: dict[str, dict[str, str]] = {}  # run id -> {node: key}
        for key, task_run_id in rows:
            run_id, _, node = task_run_id.partition("/")
            by_run.setdefault(run_id, {})[node] = key
        out: dict[str, TaskRun] = {}
        for run_id, nodes in by_run.items():
            for tr in self.task_runs(run_id):
                if tr.node in nodes:
                    out[nodes[tr.node]] = tr
        return out

    def find_artifact(self, prefix: str) -> str:
        """The full id of the artifact whose id starts with ``prefix``; ``KeyError`` if none or several do."""
        prefix = prefix.lower()
        hexadecimal = bool(prefix) and all(c in "0123456789abcdef" for c in prefix)
        rows = self.db.query("SELECT id FROM artifacts WHERE id LIKE ? LIMIT 2", (prefix + "%",)) if hexadecimal else []
        if not rows:
            raise KeyError(f"no artifact {prefix!r} in the store at {self.home}; `flowkit artifacts ls` lists them")
        if len(rows) > 1:
            raise KeyError(f"artifact id prefix {prefix!r} is ambiguous; give more characters")
        return rows[0][0]

    def artifact_list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Artifact records, newest first: ``id``, ``type``, ``size``, ``rows``, ``created``, ``serializer``,
        and ``task``, ``node``, ``run_id`` of the newest completed task run that produced it (``None`` when
        no recorded run did)."""
        sql = "SELECT id, type, size, rows, created, serializer FROM artifacts ORDER BY created DESC, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        keys = ("id", "type", "size", "rows", "created", "serializer")
        records = [dict(zip(keys, r), task=None, node=None, run_id=None) for r in self.db.query(sql)]
        by_id = {r["id"]: r for r in records}
        if by_id:
            newest: dict[str, float] = {}
            for artifact_id, task, node, run_id, started in self.db.query(
                    "SELECT tr.artifact_id, tr.task, tr.node, tr.run_id, r.started FROM task_runs tr "
                    "JOIN runs r ON r.id = tr.run_id WHERE tr.status = 'completed' "
                    "AND tr.artifact_id IN (SELECT value FROM json_each(?))", (json.dumps(list(by_id)),)):
                if started is not None and started >= newest.get(artifact_id, float("-inf")):
                    newest[artifact_id] = started
                    by_id[artifact_id].update(task=task, node=node, run_id=run_id)
        return records
