"""A real PostgreSQL server for the tests and benchmarks: ``initdb`` + ``pg_ctl`` into a temporary folder.

:func:`server` starts one per process on first use (on a free port of 127.0.0.1,
as the ``postgres`` user when run as root, since PostgreSQL refuses root) and
stops it at exit; :meth:`Postgres.database` makes a fresh, empty database and
returns its URL. ``$FLOWKIT_TEST_POSTGRES_URL`` (a superuser's URL) uses a
server already running instead. When neither works, :func:`server` raises
:class:`Unavailable` with the reason, which the tests turn into a skip.

The test server trades durability for speed (``fsync=off``); ``durable=True``
keeps PostgreSQL's defaults (what the benchmarks compare against SQLite).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

try:
    import psycopg
except ImportError:  # the tests that need it are skipped, saying so
    psycopg = None

__all__ = ["Postgres", "Unavailable", "server", "status"]

PASSWORD = "flowkit-test-secret"


class Unavailable(RuntimeError):
    """No PostgreSQL server could be started or reached (the message says why)."""


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """A running server: :attr:`admin_url` (a superuser on the ``postgres`` database)."""

    def __init__(self, admin_url: str, stop: list[str] | None = None, user: str | None = None,
                 root: Path | None = None, version: str = "") -> None:
        self.admin_url = admin_url
        self._stop = stop
        self._user = user
        self._root = root
        self.version = version

    def database(self, prefix: str = "flowkit") -> str:
        """The URL of a new, empty database on this server."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    def drop(self, url: str) -> None:
        """Drop the database at ``url``, closing the connections still open to it."""
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._stop is not None:
            subprocess.run(self._stop, user=self._user, capture_output=True, timeout=60)
            self._stop = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def start(durable: bool = False) -> Postgres:
    """Start a server of the system's PostgreSQL in a temporary folder (see the module's docstring)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise Unavailable("PostgreSQL's initdb/pg_ctl are not installed (Debian: apt-get install postgresql)")
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
    root = Path(tempfile.mkdtemp(prefix="flowkit-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    (root / "pw").write_text(PASSWORD)
    if user is not None:
        ids = pwd.getpwnam(user)
        for path in (root, sockets, root / "pw"):
            os.chown(path, ids.pw_uid, ids.pw_gid)
    port = _free_port()

    def run(cmd: list[str], timeout: float) -> None:
        try:
            done = subprocess.run(cmd, user=user, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"{Path(cmd[0]).name} failed: {exc}") from exc
        if done.returncode != 0:
            log = root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise Unavailable(f"{Path(cmd[0]).name} failed: {done.stderr.strip() or done.stdout.strip()} {tail}")

    run([initdb, "-D", str(data), "-U", "flowkit", f"--pwfile={root / 'pw'}", "--auth-local=trust",
         "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C"], 120)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    run([pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"], 90)
    version = subprocess.run([_binary("postgres") or "postgres", "--version"], capture_output=True,
                             text=True).stdout.strip()
    return Postgres(f"postgresql://flowkit:{PASSWORD}@127.0.0.1:{port}/postgres",
                    [pg_ctl, "-D", str(data), "-m", "fast", "stop"], user, root, version)


_SERVER: Postgres | None = None
_FAILURE: str | None = None


def server() -> Postgres:
    """This process's test server, started on first use; raises :class:`Unavailable` (saying why) if none."""
    global _SERVER, _FAILURE
    if _SERVER is None and _FAILURE is None:
        if psycopg is None:
            _FAILURE = "psycopg is not installed (pip install -e '.[postgres]')"
        else:
            existing = os.environ.get("FLOWKIT_TEST_POSTGRES_URL")
            try:
                _SERVER = Postgres(existing, version="external") if existing else start()
            except Unavailable as exc:
                _FAILURE = str(exc)
            else:
                atexit.register(_SERVER.stop)
    if _SERVER is None:
        raise Unavailable(_FAILURE)
    return _SERVER


def status() -> str | None:
    """What the test server is, ``"unavailable: why"``, or ``None`` when no test asked for one."""
    if _SERVER is not None:
        return f"{_SERVER.version or 'PostgreSQL'} at {urlsplit(_SERVER.admin_url).netloc.split('@')[-1]}"
    if _FAILURE is not None:
        return f"unavailable: {_FAILURE}"
    return None


try:
    import pytest
except ImportError:  # the benchmarks use this module without pytest
    pytest = None
else:
    @pytest.fixture(scope="session")
    def postgres() -> Postgres:
        """The test server; the test is skipped, saying why, where none can start."""
        try:
            return server()
        except Unavailable as exc:
            pytest.skip(f"no PostgreSQL server: {exc}")
