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
  the same lock; versions live in ``schema_versions``;
- a young table that doubled since it was last analyzed is analyzed (``ANALYZE``) at
  once (see :data:`ANALYZE_YOUNG`), not a minute later by autovacuum: a rerun
  planned on the statistics of an empty table scans it for each lookup.

Credentials: anything libpq accepts (a password in the URL, ``PGPASSWORD``,
``~/.pgpass``, ``PGSSLMODE``...). A password never appears in an error,
``repr`` or record: :attr:`PostgresMetadataStore.display_url` is the URL with
it masked. A server that does not answer fails within ``connect_timeout``
seconds (10 unless the URL says otherwise); a write waits at most 30 s for
another's to finish (``lock_timeout``), as SQLite's busy timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

try:
    import psycopg
    from psycopg.adapt import Dumper
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the PostgreSQL metadata store needs psycopg 3: pip install 'flowkit[postgres]'") from exc

from flowkit import store as _store
from flowkit.errors import StoreError
from flowkit.store.postgres_sql import bulk, columns_as_text, copyable, ddl, dml, unique_rows
from flowkit.store.sql import _HIT_COLUMNS, SQLMetadataStore

__all__ = ["PostgresMetadataStore", "display_url"]

T = TypeVar("T")

#: The advisory lock every write holds: "flowkit" in ASCII, one per database.
WRITE_LOCK = 0x666C6F776B6974
CONNECT_TIMEOUT = 10
#: Seconds a write waits for another process's write to finish before it fails.
LOCK_TIMEOUT = 30.0
#: Rows of one INSERT from which they go by COPY (below it, the savepoint around the copy costs more than it saves).
COPY_ROWS = 64
#: A young table (below ANALYZE_YOUNG rows when last analyzed) that this store wrote ANALYZE_ROWS rows to, and at
#: least ANALYZE_SHARE times what it held then, is analyzed at once (after the write, outside its transaction).
#: Until then PostgreSQL plans with the statistics of a table that was empty or nearly: a rerun's lookup of 100
#: keys scanned the whole table (25-35 ms each). Past a few thousand rows the plans no longer change with the
#: size, and autovacuum keeps the statistics current (within a minute, at 10% more rows).
ANALYZE_ROWS = 50
ANALYZE_SHARE = 1.0
ANALYZE_YOUNG = 5000


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


class _Written(NamedTuple):
    """What :meth:`_Connection.executemany` reports: the rows all its statements wrote."""

    rowcount: int


class _Connection:
    """What the tables' SQL is handed inside a write: ``execute``/``executemany`` in SQLite's spelling."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._types: dict[str, dict[str, str]] = {}

    def column_types(self, table: str) -> dict[str, str]:
        """The type of each column of ``table`` (``bigint``, ``text``...), read once per connection."""
        types = self._types.get(table)
        if types is None:
            rows = self.raw.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                                    "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                                    (table,)).fetchall()
            types = self._types[table] = dict(rows)
        return types

    def forget_types(self) -> None:
        """After a migration: tables may have new columns."""
        self._types.clear()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.execute(dml(sql), tuple(params))
        return cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> _Written:
        """Like ``executemany``; the rows of an ``INSERT`` go in statements of many rows each.

        One statement with an array per column (:func:`~flowkit.store.postgres_sql.bulk`) instead
        of one statement per row is most of what the run's records cost; from :data:`COPY_ROWS`
        rows on they go by ``COPY`` where none conflicts (:meth:`_copy`). Rows of an upsert that
        name one key twice are resolved first, as SQLite's row-by-row writes would
        (:func:`~flowkit.store.postgres_sql.unique_rows`), or else written one by one.
        """
        cur = self.raw.cursor()
        rows = rows if isinstance(rows, list) else list(rows)
        unique = unique_rows(sql, rows) if len(rows) > 1 else None
        plan = bulk(sql) if unique is not None else None
        if plan is None:
            cur.executemany(dml(sql), rows)
            return _Written(cur.rowcount)
        if len(unique) >= COPY_ROWS:
            copied = self._copy(sql, unique)
            if copied is not None:
                return _Written(copied)
        table, statement, takes = plan
        types = self.column_types(table)
        typed = [types[c] for c in takes]
        cur.execute(statement.format(*typed), columns_as_text(unique, len(takes), typed), prepare=False)
        total = cur.rowcount
        return _Written(total)

    def _copy(self, sql: str, rows: list[Sequence[Any]]) -> int | None:
        """Write ``rows`` of an ``INSERT`` with ``COPY``: the rows written, or ``None`` where ``COPY`` cannot.

        ``COPY`` costs a third of the one statement over arrays (the rows are formatted in C,
        and no row is checked for a conflict one at a time). It runs in a savepoint: where a row
        names a key already there (an upsert that updates), or a value does not read as its
        column's type, the copy is undone and the statement writes them as it says.
        """
        plan = copyable(sql)
        if plan is None:
            return None
        table, columns, constants = plan
        try:
            with self.raw.transaction(), self.raw.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                write = copy.write_row
                if constants:
                    for row in rows:
                        write((*row, *constants))
                else:
                    for row in rows:
                        write(row)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
            return None
        return len(rows)


class PostgresMetadataStore(SQLMetadataStore):
    """The metadata of a store in a PostgreSQL database.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?options]``, as libpq takes it.
    """

    dialect = "postgresql"
    # As an array of keys: PostgreSQL plans a join of a set-returning function with a guess of
    # its rows, which over a table it has no statistics of yet is a scan of the cache (and it has
    # no CROSS JOIN ... ON to fix the order).
    _cache_lookup = (f"SELECT {_HIT_COLUMNS} FROM cache c JOIN artifacts a ON a.id = c.artifact_id "
                     "WHERE c.key IN (SELECT value FROM json_each(?)) AND a.removed IS NULL")

    def __init__(self, url: str) -> None:
        self.url = url
        self.display_url = display_url(url)
        self._local = threading.local()
        self._applied: dict[str, int] = {}
        self._stats_lock = threading.Lock()
        self._unanalyzed: dict[str, int] = {}  # table -> rows this store wrote to it since it analyzed it
        self._analyzed: dict[str, float] | None = None  # table -> the rows it held when last analyzed
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
        # A writer waits for the write lock as long as SQLite's busy timeout lets it, never forever.
        raw.execute(f"SET lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'")
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
        for attempt in (1, 2):
            conn = self._connection()
            began = False
            try:
                with conn.raw.transaction():
                    conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    began = True
                    return fn(conn)
            except psycopg.errors.LockNotAvailable as exc:
                raise StoreError(f"cannot write to the metadata database {self.display_url}: another process held "
                                 f"its write lock for over {LOCK_TIMEOUT:g} s") from exc
            except psycopg.OperationalError as exc:
                # A connection found dead before the transaction began (the server restarted, an idle
                # connection was cut) is opened again; one that broke later is not: its commit may have landed.
                if conn.raw.broken and not began and attempt == 1:
                    continue
                raise self._error(exc, "lost the connection to" if conn.raw.broken else "cannot write to") from exc
        raise AssertionError("unreachable")

    def flush(self, batch: Any) -> None:
        written = {"task_runs": len(batch.task_runs) + len(batch.cached), "cache": len(batch.cache),
                   "artifacts": len(batch.artifacts), "inputs": len(batch.inputs)}
        super().flush(batch)
        self._count(written)

    def _count(self, written: dict[str, int]) -> None:
        """Note rows written; analyze the young tables that grew (see :data:`ANALYZE_YOUNG`)."""
        with self._stats_lock:
            try:
                if self._analyzed is None:  # what the tables held when last analyzed, by anyone
                    self._analyzed = self._sizes(list(written))
                due = []
                for table, rows in written.items():
                    total = self._unanalyzed[table] = self._unanalyzed.get(table, 0) + rows
                    held = self._analyzed.get(table, 0.0)
                    if held < ANALYZE_YOUNG and total >= ANALYZE_ROWS and total >= ANALYZE_SHARE * held:
                        due.append(table)
                        self._unanalyzed[table] = 0
                for table in due:
                    self._connection().raw.execute(f"ANALYZE {table}")
                if due:
                    self._analyzed.update(self._sizes(due))
            except (psycopg.Error, StoreError):  # statistics are an optimization: autovacuum takes them later
                pass

    def _sizes(self, tables: list[str]) -> dict[str, float]:
        rows = self._connection().raw.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s) "
            "AND relnamespace = current_schema()::regnamespace", (tables,)).fetchall()
        return {name: max(0.0, float(tuples)) for name, tuples in rows}  # never analyzed: -1

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
                conn.forget_types()
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
