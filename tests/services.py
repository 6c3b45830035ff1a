"""Which backends and services the run used: a summary at the end of every pytest run.

CI (``.ci/run``) runs the whole suite; its last lines say whether PostgreSQL, the S3 server, Dask
clusters and headless Chromium really ran, or why not, so a skipped backend is never silent.
"""

from __future__ import annotations

import collections
import os
import shutil
from typing import Any

import pytest

#: (group, outcome) -> count, for the tests of each service
_COUNTS: collections.Counter[tuple[str, str]] = collections.Counter()
#: which groups a collected test belongs to, by node id
_GROUPS: dict[str, tuple[str, ...]] = {}


def _groups(item: pytest.Item) -> tuple[str, ...]:
    found = []
    fixtures = getattr(item, "fixturenames", ())
    if item.get_closest_marker("dask"):
        found.append("dask")
    if "s3_server" in fixtures or "s3_url" in fixtures:
        found.append("s3")
    if ("postgres" in item.nodeid or "team" in fixtures
            or os.environ.get("FLOWKIT_TEST_METADATA") == "postgresql"):
        found.append("postgresql")
    if "chromium" in item.name:
        found.append("chromium")
    return tuple(found)


def note_groups(items: list[pytest.Item]) -> None:
    """Remember which service each collected test uses (called from the conftest's collection hook)."""
    for item in items:
        if groups := _groups(item):
            _GROUPS[item.nodeid] = groups


def pytest_runtest_logreport(report: Any) -> None:
    groups = _GROUPS.get(report.nodeid)
    if not groups:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        for group in groups:
            _COUNTS[group, report.outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    import pg_server
    import s3_server

    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    lines = {
        "postgresql": pg_server.status() or "not started (no test asked for it)",
        "s3": s3_server.STATUS or "not started (no test asked for it)",
        "dask": "LocalCluster and dask scheduler/worker processes on 127.0.0.1",
        "chromium": f"{chromium}" + (f", chromedriver {driver}" if driver else ", no chromedriver")
        if chromium else "not installed (apt-get install chromium chromium-driver)",
    }
    metadata = os.environ.get("FLOWKIT_TEST_METADATA", "sqlite")
    terminalreporter.write_sep("-", "backends and services")
    terminalreporter.write_line(f"metadata store of every test: {metadata}")
    for group, what in lines.items():
        counts = ", ".join(f"{_COUNTS[group, outcome]} {outcome}" for outcome in ("passed", "failed", "skipped")
                           if _COUNTS[group, outcome])
        terminalreporter.write_line(f"{group:<10} {counts or 'no tests'}: {what}")
