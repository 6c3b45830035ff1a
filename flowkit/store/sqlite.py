"""The SQLite metadata store: the reference :class:`~flowkit.store.protocols.MetadataStore`.

One file (``$FLOWKIT_HOME/flowkit.db`` by default) in WAL mode with a busy
timeout; one connection per process and thread; every write is one ``BEGIN
IMMEDIATE`` transaction, retried while another process holds the write lock,
so several processes can run flows on one store at once. The tables and their
SQL are :class:`~flowkit.store.sql.SQLMetadataStore`'s, shared with the
PostgreSQL backend; this module is how SQLite is connected to, locked, retried
and versioned.

Migrations (:mod:`flowkit.store.migrations`): the core list's version is
``PRAGMA user_version``, as in stores made before features had their own lists;
the other lists' versions are rows of ``schema_versions``, created with the
first of them.
"""

from __future__ import annotations

import contextlib
import random
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flowkit.errors import StoreError
from flowkit.store.migrations import CORE
from flowkit.store.sql import SQLMetadataStore
from flowkit.store.sqlite_bulk import BulkConnection

__all__ = ["SQLiteMetadataStore"]

#: Pages of write-ahead log after which the background writer's commit checkpoints (SQLite's own: 1,000).
DEFERRED_CHECKPOINT = 10_000

T = TypeVar("T")

_LOCKED = ("database is locked", "database is busy", "database table is locked")


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    return any(text in str(exc) for text in _LOCKED)


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == 13 or "database or disk is full" in str(exc)  # SQLITE_FULL


def _is_io_error(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == 10 or "disk I/O error" in str(exc)  # SQLITE_IOERR


def _unwritable(path: Path, exc: sqlite3.Error) -> StoreError | None:
    """The error for a database file that could not grow or be written; ``None`` for other errors."""
    if _is_full(exc):
        return StoreError(f"disk full at {path}: the metadata database could not grow ({exc}); nothing of this "
                          f"write was kept, what was written before is. Free some space, or point FLOWKIT_HOME "
                          f"elsewhere.")
    if _is_io_error(exc):
        code = getattr(exc, "sqlite_errorname", None)
        return StoreError(f"cannot write the metadata database {path}: {exc}{f' ({code})' if code else ''}: the "
                          f"disk may be full, the file past the size the system allows it, or the device failing. "
                          f"Nothing of this write was kept, what was written before is. Free some space, or point "
                          f"FLOWKIT_HOME elsewhere.")
    return None


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


class SQLiteMetadataStore(SQLMetadataStore):
    """The metadata of a store in one SQLite file.

    Besides the protocol, :meth:`query` and :meth:`write` run SQL of one's own
    (SQLite only: tests and one-off repairs use them).
    """

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.url = "sqlite:///" + str(self.path.absolute()).lstrip("/")
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._applied: dict[str, int] = {}
        self.migrate()

    def __reduce__(self) -> tuple[object, ...]:
        return (SQLiteMetadataStore, (str(self.path),))

    def __repr__(self) -> str:
        return f"SQLiteMetadataStore({str(self.path)!r})"

    # --- connections and transactions ----------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                       check_same_thread=False, factory=BulkConnection)
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
                conn.execute("PRAGMA synchronous = NORMAL")
                # The log grows past 40 MB in a large run (defer_checkpoints); once checkpointed, it
                # is cut back to the size SQLite's own checkpoints keep it at when it starts over.
                conn.execute("PRAGMA journal_size_limit = 4194304")
            except (sqlite3.Error, OSError) as exc:
                damaged = _damaged(self.path, exc) if isinstance(exc, sqlite3.DatabaseError) else None
                damaged = damaged or (_unwritable(self.path, exc) if isinstance(exc, sqlite3.Error) else None)
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

    def defer_checkpoints(self) -> None:
        """This thread's commits checkpoint only past :data:`DEFERRED_CHECKPOINT` pages of log.

        SQLite checkpoints inside the commit that takes its log past 1,000 pages; a run's
        rows update the same pages of the cache's and task runs' indexes batch after batch,
        and each checkpoint copies them again: a tenth of the background writer's time, in
        which its rows, and a run's end, wait. With fewer, larger checkpoints each page is
        copied about once; the writer makes the last one (:meth:`checkpoint`) after the run.
        """
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {DEFERRED_CHECKPOINT}")

    def checkpoint(self) -> None:
        """Move what the write-ahead log holds into the database; readers and writers go on meanwhile.

        A passive checkpoint: it copies what no reader still needs and gives way to one
        under way elsewhere. Upkeep only (what was committed is in the log, which the next
        connection reads), so an error here is left for the next commit to meet.
        """
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    unwritable = _unwritable(self.path, exc)  # a full disk, an I/O error: say where and what to do
                    if unwritable is not None:
                        raise unwritable from exc
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
                conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls a transaction back itself on some errors (a full disk, an I/O error):
                # a ROLLBACK then would fail and hide the error that matters.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(attempt)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""
        return self._retry(lambda: self.conn.execute(sql, params).fetchall())

    # --- migration versions ----------------------------------------------------------------------

    def _describe(self) -> str:
        return str(self.path)

    def _versions(self, conn: sqlite3.Connection) -> dict[str, int]:
        versions = {CORE: conn.execute("PRAGMA user_version").fetchone()[0]}
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_versions'").fetchone():
            versions.update(conn.execute("SELECT name, version FROM schema_versions").fetchall())
        return versions

    def read_versions(self) -> dict[str, int]:
        return self._retry(lambda: self._versions(self.conn))

    def _set_version(self, conn: sqlite3.Connection, name: str, version: int) -> None:
        # The core list's version is ``user_version``, as in stores made before features had their own lists.
        if name == CORE:
            conn.execute(f"PRAGMA user_version = {int(version)}")
        else:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_versions (name, version) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET version = excluded.version", (name, version))
