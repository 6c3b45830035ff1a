"""A real S3-compatible server for the tests: moto's server mode in a subprocess on 127.0.0.1.

``s3_server`` (one per session) starts moto's server (``moto.server.main``) on a
port the server picks itself, and waits for its banner; when moto is not installed or the
server does not come up, the tests that need it are skipped with the reason.
``s3_url`` points this process's environment at it (the standard variables:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``; no profile or config file of the machine's), makes a fresh
bucket and returns ``s3://<bucket>/flowkit``. Subprocesses get the same variables
from ``s3_server.env``.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

#: what the session's server was, or why there was none (``None`` until a test asked for it)
STATUS: str | None = None

_BANNER = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 60.0


#: moto's server, ended when its standard input closes: so it ends with the process that started it,
#: even one that was killed and could not stop it.
_SERVE = """
import os, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", "0"])
"""


class MotoServer:
    """moto's S3 server on 127.0.0.1: its endpoint, the environment that reaches it, a client."""

    def __init__(self) -> None:
        self.secret = "flowkit-test-secret-" + secrets.token_hex(8)  # tests check it never shows up
        self.access_key = "FLOWKITTESTKEY" + secrets.token_hex(3).upper()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._port: int | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT) or self._port is None:
            self.stop()
            raise RuntimeError(f"moto's server did not start within {START_TIMEOUT:.0f} s; it said: "
                               + " | ".join(self._tail))
        self.endpoint = f"http://127.0.0.1:{self._port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                    "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        self._fs: Any = None

    def _drain(self) -> None:
        """Read the server's output for its port, then keep reading it so that it never blocks on a full pipe."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._tail.append(line.rstrip())
            if self._port is None and (m := _BANNER.search(line)):
                self._port = int(m.group(1))
                self._ready.set()
        self._ready.set()  # the server exited: stop waiting

    @property
    def fs(self) -> Any:
        """An s3fs filesystem on the server, for tests to look into buckets (its own instance)."""
        if self._fs is None:
            import s3fs

            self._fs = s3fs.S3FileSystem(endpoint_url=self.endpoint, key=self.access_key, secret=self.secret,
                                         skip_instance_cache=True,
                                         use_listings_cache=False)
        return self._fs

    def bucket(self) -> str:
        """A new, empty bucket's name."""
        name = "flowkit-" + secrets.token_hex(6)
        self.fs.mkdir(name)
        return name

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    # moto is not imported here: importing it hooks a stub into every botocore client of the process
    global STATUS
    missing = [name for name in ("moto", "flask", "s3fs") if importlib.util.find_spec(name) is None]
    if missing:
        STATUS = f"unavailable: missing {', '.join(missing)}"
        pytest.skip(f"S3 tests need moto[server] and s3fs (pip install -e '.[dev]'); missing: {', '.join(missing)}")
    try:
        server = MotoServer()
    except (OSError, RuntimeError) as exc:
        STATUS = f"unavailable: {exc}"
        pytest.skip(f"no S3 server for the tests: {exc}")
    from importlib.metadata import version

    STATUS = f"moto {version('moto')} server at {server.endpoint}"
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/flowkit``, with this process's environment pointed at the server."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return f"s3://{s3_server.bucket()}/flowkit"
