"""The store backends the contract suites run against, and helpers to drive them from other processes.

A metadata backend is a name and a function from a fresh temporary folder to the
URL of an empty store (what ``open_store`` takes, so other processes can open it
too); it may also build a store as an older flowkit left it (``legacy``). PostgreSQL's
entry is a fresh database on a server the tests start (tests/pg_server.py),
skipped with the reason when none can be.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import flowkit
from flowkit.store.artifacts import ArtifactFiles, FsspecArtifactFiles, artifact_files
from flowkit.store.protocols import ArtifactStore

ROOT = Path(flowkit.__file__).parent.parent

#: The core schema steps as flowkit 0.1 shipped them (schema version 6): what a legacy store was made with.
V6_STEPS = 6


@dataclass(frozen=True)
class MetadataBackend:
    name: str
    url: Callable[[Path], str]
    legacy: Callable[[Path, list[str]], str] | None = None  # (folder, core steps) -> URL of a v6 store


def _sqlite_url(folder: Path) -> str:
    return "sqlite:///" + str(folder / "flowkit.db").lstrip("/")


def _sqlite_legacy(folder: Path, steps: list[str]) -> str:
    """A store made the way flowkit did before named migration lists: each step, then ``user_version``."""
    path = folder / "flowkit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for step in steps:
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {len(steps)}")
    conn.close()
    return _sqlite_url(folder)


def _postgres_url(folder: Path) -> str:
    """A fresh database on the test server (tests/pg_server.py); the test is skipped, saying why, without one."""
    import pg_server

    try:
        return pg_server.server().database()
    except pg_server.Unavailable as exc:
        pytest.skip(f"PostgreSQL: {exc}")


METADATA = [MetadataBackend("sqlite", _sqlite_url, _sqlite_legacy), MetadataBackend("postgresql", _postgres_url)]


@pytest.fixture(params=METADATA, ids=lambda b: b.name)
def metadata_backend(request: pytest.FixtureRequest) -> MetadataBackend:
    return request.param


@pytest.fixture
def metadata_url(metadata_backend: MetadataBackend, tmp_path: Path) -> str:
    return metadata_backend.url(tmp_path)


#: An artifact backend: a function of a fresh temporary folder and the test's request (for server fixtures).
ARTIFACTS: dict[str, Callable[[Path, pytest.FixtureRequest], ArtifactStore]] = {
    "local": lambda folder, _: ArtifactFiles(folder / "artifacts"),
    "fsspec-file": lambda folder, _: FsspecArtifactFiles(f"file://{folder}/artifacts"),
    "fsspec-memory": lambda folder, _: FsspecArtifactFiles(f"memory://{folder.name}/artifacts"),
    # a fresh bucket on moto's S3 server (tests/s3_server.py), skipped with the reason when it cannot start
    "s3": lambda _, request: artifact_files(request.getfixturevalue("s3_url")),
}


@pytest.fixture(params=sorted(ARTIFACTS))
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    return ARTIFACTS[request.param](tmp_path, request)


def run_processes(tmp_path: Path, body: str, args: list[list[str]], timeout: float = 120) -> list[str]:
    """Run ``body`` (Python; ``sys.argv[1:]`` are its arguments) in one process per argument list, all at
    once; they start their work together (each waits for a ``go`` file), and their stdouts are returned."""
    go = tmp_path / "go"
    script = tmp_path / f"worker_{abs(hash(body))}.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
    """) + textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, str(script), *a], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for a in args]
    go.touch()
    outs = [p.communicate(timeout=timeout) for p in procs]
    go.unlink()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return [out for out, _ in outs]
