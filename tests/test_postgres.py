"""PostgreSQL metadata under bad input and bad luck, against a real server (``tests/pg_server.py``).

An unreachable server or a wrong password is a :class:`StoreError` naming the URL with its password
masked, within the connect timeout, never a hang; a connection the server cut is opened again, for
reads and for the next write; the password shows up in no message, log or record.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

import flowkit as fk
import pg_server
from flowkit.errors import StoreError
from flowkit.store.postgres import display_url

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def db_url(postgres):
    url = postgres.database("badinput")
    yield url
    postgres.drop(url)


def _with(url: str, *, password: str | None = None, port: int | None = None, path: str | None = None,
          query: str | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    netloc = f"{user}:{password if password is not None else parts.password}@{parts.hostname}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, path=path if path is not None else parts.path,
                                     query=query if query is not None else parts.query))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@fk.task
def double(x: int) -> int:
    return 2 * x


@fk.flow
def doubled(n: int = 3) -> list[int]:
    return [double(i) for i in range(n)]


def test_a_closed_port_is_a_clear_error_naming_the_url_without_its_password(db_url, caplog):
    url = _with(db_url, password="hunter2-not-shown", port=_free_port())
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as caught:
        fk.Store(db_url=url)
    text = str(caught.value)
    assert display_url(url) in text and "***" in text and "cannot connect" in text
    assert "hunter2-not-shown" not in text + caplog.text


def test_a_server_that_never_answers_gives_up_after_the_connect_timeout(db_url):
    # A socket that accepts connections and never says a word: without a timeout, libpq would wait for ever.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = _with(db_url, port=silent.getsockname()[1], query="connect_timeout=2")
    start = time.monotonic()
    try:
        with pytest.raises(StoreError, match="cannot connect to the metadata database"):
            fk.Store(db_url=url)
        took = time.monotonic() - start
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        silent.close()
    assert accepted, "the client never reached the silent server"
    assert took < 20, f"{took:.1f} s to give up with connect_timeout=2"


def test_a_wrong_password_is_refused_and_never_written_anywhere(db_url, caplog):
    url = _with(db_url, password="wrong-password-42")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as caught:
        fk.Store(db_url=url)
    text = str(caught.value) + repr(caught.value)
    assert "password authentication failed" in text and display_url(url) in text
    assert "wrong-password-42" not in text + caplog.text
    assert pg_server.PASSWORD not in text


def test_a_database_that_does_not_exist_is_named(db_url):
    url = _with(db_url, path="/no_such_database_here")
    with pytest.raises(StoreError, match="no_such_database_here") as caught:
        fk.Store(db_url=url)
    assert pg_server.PASSWORD not in str(caught.value)


def test_the_password_is_in_no_record_and_no_repr(db_url):
    store = fk.Store(db_url=db_url)
    run = doubled.with_options(store=store).run()
    assert run.status == "completed"
    assert pg_server.PASSWORD not in repr(store.db) + repr(store)
    with psycopg.connect(db_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        for table in tables:
            dump = " ".join(str(row) for row in conn.execute(f'SELECT * FROM "{table}"'))
            assert pg_server.PASSWORD not in dump, table


def _cut_connections(server: pg_server.Postgres, url: str) -> int:
    """Have the server end every connection to the store's database, as a restart or a proxy would."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        return len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())


def test_a_connection_the_server_cut_is_opened_again_for_reads_and_writes(postgres, db_url):
    store = fk.Store(db_url=db_url)
    first = doubled.with_options(store=store).run()
    assert first.status == "completed"
    assert _cut_connections(postgres, db_url) >= 1
    assert [r.id for r in store.runs()] == [first.id]  # a read on a new connection
    assert _cut_connections(postgres, db_url) >= 1
    again = doubled.with_options(store=store).run(4)  # its first write finds the connection gone
    assert again.status == "completed"
    assert [t.status for t in sorted(again.task_runs, key=lambda t: t.node)].count("cached") == 3
    assert {r.id for r in store.runs()} == {first.id, again.id}
    assert _cut_connections(postgres, db_url) >= 1
    assert store.db.write(lambda conn: conn.execute("SELECT 7").fetchone()[0]) == 7  # a write first, this time
