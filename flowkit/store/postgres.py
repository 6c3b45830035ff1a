"""The PostgreSQL metadata store, for a team: ``FLOWKIT_DB=postgresql://user@host/db`` (``flowkit[postgres]``).

The same tables, SQL and migrations as the SQLite store
(:class:`~flowkit.store.sql.SQLMetadataStore`; the few words that differ are
translated by :mod:`flowkit.store.postgres_sql`), so everything flowkit records
and every guarantee the store contract tests hold are the same on both:

- **one writer at a time**: every write is one transaction that first takes a
  transaction-scoped advisory lock (``pg_advisory_xact_lock``), as SQLite's
  ``BEGIN IMMEDIATE`` does, so version numbers, schedule fires and the
  scheduler lease are allocated exactly once among any number of processes and
  hosts; reads never wait for it;
- one connection per process and thread (psycopg 3, autocommit outside a
  write), opened on first use and again after the server dropped it;
- migrations are applied by the first process that opens a database, under
  the same lock; versions live in ``schema_versions``.

Credentials: anything libpq accepts (a password in the URL, ``PGPASSWORD``,
``~/.pgpass``, ``PGSSLMODE``...). A password never appears in an error,
``repr`` or record: :attr:`PostgresMetadataStore.display_url` is the URL with
it masked. A server that does not answer fails within ``connect_timeout``
seconds (10 unless the URL says otherwise).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

try:
    import psycopg
    from psycopg.adapt import Dumper
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the PostgreSQL metadata store needs psycopg 3: pip install 'flowkit[postgres]'") from exc

from flowkit import store as _store
from flowkit.errors import StoreError
from flowkit.store.postgres_sql import ddl, dml
from flowkit.store.sql import SQLMetadataStore

__all__ = ["PostgresMetadataStore", "display_url"]

T = TypeVar("T")

#: The advisory lock every write holds: "flowkit" in ASCII, one per database.
WRITE_LOCK = 0x666C6F776B6974
CONNECT_TIMEOUT = 10


def display_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: what errors and listings show."""
    parts = urlsplit(url)
    if parts.password is None:
        masked = parts
    else:
        host = parts.netloc.rsplit("@", 1)[1]
        masked = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = parse_qs(masked.query)
    if "password" in query:
        query["password"] = ["***"]
        masked = masked._replace(query="&".join(f"{k}={v[0]}" for k, v in query.items()))
    return urlunsplit(masked)


class _BoolDumper(Dumper):
    """Python booleans as integers: the schema keeps flags in integer columns, as SQLite does."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _Connection:
    """What the tables' SQL is handed inside a write: ``execute``/``executemany`` in SQLite's spelling."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.execute(dml(sql), tuple(params))
        return cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(dml(sql), rows)
        return cur


class PostgresMetadataStore(SQLMetadataStore):
    """The metadata of a store in a PostgreSQL database.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?options]``, as libpq takes it.
    """

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.display_url = display_url(url)
        self._local = threading.local()
        self._applied: dict[str, int] = {}
        self.migrate()

    def __reduce__(self) -> tuple[object, ...]:
        return (PostgresMetadataStore, (self.url,))

    def __repr__(self) -> str:
        return f"PostgresMetadataStore({self.display_url!r})"

    def _describe(self) -> str:
        return self.display_url

    # --- connections and transactions ----------------------------------------------------------

    def _error(self, exc: BaseException, doing: str) -> StoreError:
        password = urlsplit(self.url).password
        text = " ".join(str(exc).split())
        if password:
            text = text.replace(password, "***")
        return StoreError(f"{doing} the metadata database {self.display_url}: {text}")

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.raw.closed and not conn.raw.broken:
            return conn
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.url:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        try:
            raw = psycopg.connect(self.url, **kwargs)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot connect to") from None
        raw.adapters.register_dumper(bool, _BoolDumper)
        conn = self._local.conn = _Connection(raw)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.raw.close()
            self._local.conn = None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return conn.execute(sql, params).fetchall()
            except psycopg.OperationalError as exc:
                if not conn.raw.broken or attempt == 2:  # a read is safe to send again on a new connection
                    raise self._error(exc, "lost") from exc
        raise AssertionError("unreachable")

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one transaction holding the store's write lock (see the module's docstring)."""
        conn = self._connection()
        try:
            with conn.raw.transaction():
                conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                return fn(conn)
        except psycopg.OperationalError as exc:
            # Not sent again: a commit may have landed before the connection broke.
            raise self._error(exc, "lost the connection to" if conn.raw.broken else "cannot write to") from exc

    # --- migration versions ----------------------------------------------------------------------

    def _write_schema(self, fn: Callable[[Any], T]) -> T:
        # The write lock is taken for the whole session *before* the transaction begins: a transaction
        # that began before another process's migration committed would go on seeing the old catalog
        # (PostgreSQL reads it anew only when a transaction starts) and create the tables again.
        conn = self._connection()
        try:
            conn.raw.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
            try:
                with conn.raw.transaction():
                    return fn(conn)
            finally:
                conn.raw.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
        except psycopg.OperationalError as exc:
            raise self._error(exc, "cannot migrate") from exc

    def _execute_step(self, conn: _Connection, statement: str) -> None:
        conn.raw.execute(ddl(statement).replace("%", "%%"), ())

    def _versions(self, conn: _Connection) -> dict[str, int]:
        if conn.execute("SELECT to_regclass('schema_versions')").fetchone()[0] is None:
            return {}
        return dict(conn.execute("SELECT name, version FROM schema_versions").fetchall())

    def read_versions(self) -> dict[str, int]:
        return self._versions(self._connection())

    def _set_version(self, conn: _Connection, name: str, version: int) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (name TEXT PRIMARY KEY, version BIGINT NOT NULL)")
        conn.execute("INSERT INTO schema_versions (name, version) VALUES (?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET version = excluded.version", (name, version))


def _open(url: str) -> PostgresMetadataStore:
    return PostgresMetadataStore(url)


for _scheme in ("postgresql", "postgres"):
    _store.register_backend(_scheme, _open)
