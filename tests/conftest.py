"""DAG-shape fixtures shared by the tests: linear, diamond, fan-out/fan-in, flaky, failing.

Each shape is a flow built from the tasks below; ``CALLS`` records which
task bodies really ran, so tests can tell a run from a skip.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

import flowkit as fk
from pg_server import postgres  # noqa: F401 - fixture: a real PostgreSQL server for the tests
from s3_server import s3_server, s3_url  # noqa: F401 - fixtures: a real S3 server (moto) for the tests
import services
from services import pytest_runtest_logreport, pytest_terminal_summary  # noqa: F401 - hooks: the run ends
#                                                              saying which backends and services ran

CALLS: list[str] = []
_lock = threading.Lock()


def _called(name: str) -> None:
    with _lock:
        CALLS.append(name)


@fk.task
def one() -> int:
    _called("one")
    return 1


@fk.task
def inc(x: int) -> int:
    _called("inc")
    return x + 1


@fk.task
def add(x: int, y: int) -> int:
    _called("add")
    return x + y


@fk.task
def total(xs: list[int]) -> int:
    _called("total")
    return sum(xs)


@fk.task
def boom(x: int = 0) -> int:
    _called("boom")
    raise ValueError(f"boom on {x}")


@fk.flow
def linear(n: int = 3) -> int:
    x = one()
    for _ in range(n):
        x = inc(x)
    return x


@fk.flow
def diamond() -> int:
    a = one()
    return add(inc(a), inc(a))


@fk.flow
def fan(n: int = 4) -> int:
    return total([inc(i) for i in range(n)])


def chain_of(task: fk.Task, n: int) -> Any:
    """Inside a flow body: ``task(0)``, then ``task(i, previous)`` for i = 1 .. n-1; the last ref."""
    ref = task(0)
    for i in range(1, n):
        ref = task(i, ref)
    return ref


@fk.flow
def failing() -> int:
    """One branch fails: its downstream is skipped, the other branch completes."""
    a = one()
    bad = boom(a)
    good = inc(a)
    return add(inc(bad), good)


class Flaky:
    """Fails the first ``failures`` calls, then returns ``value``."""

    def __init__(self, failures: int, value: int = 42, exc: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.value = value
        self.exc = exc
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"flaky failure {self.calls}")
        return self.value


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()
    yield
    CALLS.clear()


#: ``FLOWKIT_TEST_METADATA=postgresql`` runs every test's store on PostgreSQL (a fresh database each).
METADATA = os.environ.get("FLOWKIT_TEST_METADATA", "sqlite")


@pytest.fixture(autouse=True)
def _no_openlineage(monkeypatch):
    """No run sends OpenLineage events unless its test configures them (tests/test_openlineage.py)."""
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch, request):
    """Every test gets its own store (FLOWKIT_HOME) and working directory."""
    path = tmp_path / "flowkit-home"
    monkeypatch.setenv("FLOWKIT_HOME", str(path))
    monkeypatch.chdir(tmp_path)
    if METADATA == "postgresql" and "sqlite_only" not in request.keywords:
        import pg_server

        server = pg_server.server()
        url = server.database()
        monkeypatch.setenv("FLOWKIT_DB", url)
        yield path
        from flowkit import store

        with store._OPEN_LOCK:
            store._OPEN.clear()
        server.drop(url)  # each test's database is its own: its connections go with it
        return
    yield path


EXECUTORS = {
    "sequential": lambda: fk.LocalExecutor(),
    "threads": lambda: fk.LocalExecutor(max_workers=4),
}


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request):
    """Every executor the engine contract tests must pass on."""
    return EXECUTORS[request.param]()


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the soak tier of tests/faults (larger sizes and more seeds; minutes, not seconds)")


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: the soak tier of the fault scenarios; runs only with --soak")


def pytest_collection_modifyitems(config, items):
    services.note_groups(items)
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak tier: run with --soak (tests/faults, larger sizes, see docs/reliability.md)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
