"""What the fault scenarios share: subprocess environments, polling with a deadline, files around a store,
and the figures a soak run reports.

Every scenario test takes a ``size`` and a ``seed``. Its fast tier (a small size, one seed) runs with the
rest of the suite; its soak tier (:data:`SOAK_SIZES`, several seeds) runs only under ``pytest --soak``,
and what it counted (:func:`tally`) is printed at the end of the session as one JSON object, the figures
``docs/reliability.md`` quotes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import flowkit as fk

T = TypeVar("T")

ROOT = Path(fk.__file__).parent.parent

#: The figures of this session, by scenario: counters summed over every test that tallied them.
FIGURES: dict[str, Counter[str]] = {}


def tiers(fast: tuple[int, int], soak: list[tuple[int, int]]) -> list[Any]:
    """``(size, seed)`` parameters: the fast tier, then the soak tier (marked ``soak``: skipped without ``--soak``)."""
    return [pytest.param(*fast, id=f"fast-{fast[0]}-{fast[1]}")] + [
        pytest.param(size, seed, id=f"soak-{size}-{seed}", marks=pytest.mark.soak) for size, seed in soak]


def tally(scenario: str, **counts: int) -> None:
    """Add to the figures of ``scenario``."""
    FIGURES.setdefault(scenario, Counter()).update(counts)


def peak(scenario: str, **values: int) -> None:
    """Keep the largest of each value in the figures of ``scenario``."""
    counts = FIGURES.setdefault(scenario, Counter())
    for name, value in values.items():
        counts[name] = max(counts[name], value)


def env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess on the store at ``home``: this checkout's flowkit, SQLite, no crash points."""
    out = {**os.environ, "FLOWKIT_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("FLOWKIT_FAULTS", "FLOWKIT_DB", "FLOWKIT_ARTIFACTS"):
        out.pop(name, None)
    out.update(extra)
    return out


def spawn(args: list[str], home: Path, cwd: Path, **extra: str) -> subprocess.Popen[str]:
    """Start ``python ARGS...`` on the store at ``home``, its output captured as text."""
    return subprocess.Popen([sys.executable, *args], env=env(home, **extra), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(check: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``check()`` until it returns something true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(0.01)  # a poll interval, not a timing assumption


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: relative path -> (size, mtime in ns)."""
    out = {}
    for path in folder.rglob("*"):
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out
