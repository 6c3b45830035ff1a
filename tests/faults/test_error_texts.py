"""What flowkit says when things are broken: each message names what is at fault and what to do.

1. an argument that holds itself (a list appended to itself) is a ``CacheKeyError`` naming the task,
   the argument and where the cycle is, not a bare ``RecursionError``;
2. a damaged small value kept inline in the metadata database is described as that, not as a file
   path that does not exist, and it is recomputed;
3. a metadata database that is not one (garbage bytes, a truncated file) or that cannot grow (a full
   disk, a file past the size the system allows) is a ``StoreError`` naming the database and saying
   what to do, never "check that the folder is writable" nor a bare ``sqlite3`` error.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main
from flowkit.store import Store

from tests.faults.harness import env

pytestmark = pytest.mark.sqlite_only  # damages the SQLite file itself


@fk.task
def count(xs: object, scale: int = 1) -> int:
    return len(xs) * scale  # type: ignore[arg-type]


@fk.task
def echo(x: object) -> object:
    return x


# --- 1. an argument that holds itself -----------------------------------------------------------

def _looped_list() -> list[object]:
    xs: list[object] = [1, 2]
    xs.append(xs)
    return xs


def _looped_dict() -> dict[str, object]:
    d: dict[str, object] = {"a": [1]}
    d["a"].append(d)  # type: ignore[union-attr]
    return d


@fk.flow
def positional_cycle() -> int:
    return count(_looped_list())


@fk.flow
def keyword_cycle() -> int:
    return count(xs=[0], scale=_looped_dict())  # type: ignore[arg-type]


@fk.flow
def mapped_cycle() -> list[int]:
    return count.map([[1], _looped_list()])


@pytest.mark.parametrize(("flow", "argument", "where"), [
    (positional_cycle, "xs", "xs[2]"),
    (keyword_cycle, "scale", "scale['a'][1]"),
    (mapped_cycle, "xs", "xs[2]"),
])
def test_an_argument_that_holds_itself_is_a_cache_key_error_naming_task_and_argument(flow, argument, where):
    with pytest.raises(fk.errors.CacheKeyError) as caught:
        flow.run()
    text = str(caught.value)
    assert f"task 'count', argument {argument!r}" in text
    assert "contains itself" in text and f"at {where}" in text
    assert not isinstance(caught.value, RecursionError)


def test_a_deep_but_acyclic_argument_still_runs():
    deep: list[object] = []
    for _ in range(50):
        deep = [deep]

    @fk.flow
    def nested() -> object:
        return echo(deep)

    assert nested.run().value == deep


# --- 2. a damaged inline value ------------------------------------------------------------------

@fk.flow
def small() -> object:
    return echo({"tiny": True})


def test_a_damaged_inline_value_says_so_and_is_recomputed(caplog):
    store = Store.open()
    first = small.run()
    (tr,) = first.task_runs
    assert store.artifact(tr.artifact_id).inline
    store.db.write(lambda c: c.execute("UPDATE artifacts SET data = ? WHERE id = ?", (b"\x80garbage", tr.artifact_id)))

    with pytest.raises(fk.CacheCorruptionError) as caught:
        store.load(tr.artifact_id)
    text = str(caught.value)
    assert "inline value in the metadata database" in text and "artifact file" not in text
    assert str(store.files.path(tr.artifact_id)) not in text  # no path of a file that never existed

    with caplog.at_level(logging.WARNING, logger="flowkit"):
        again = small.run()
    (said,) = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert "task 'echo'" in said and "inline value in the metadata database" in said and "recomputed" in said
    assert "artifact file" not in said
    assert again.value == {"tiny": True} and again.task_runs[0].status == "completed"
    assert small.run().task_runs[0].status == "cached"  # the stored value was repaired


# --- 3. a database that is not one, or cannot grow ------------------------------------------------

def _garbage(db: Path) -> None:
    db.write_bytes(os.urandom(1 << 14))


def _truncated(db: Path) -> None:
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)


def _clobbered(db: Path) -> None:
    with open(db, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(8192))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _clobbered], ids=["garbage", "truncated", "clobbered"])
def test_a_corrupt_database_is_named_with_what_to_do(tmp_path, damage):
    home = tmp_path / "store"
    assert small.with_options(store=str(home)).run().status == "completed"
    from flowkit import store as store_module

    with store_module._OPEN_LOCK:  # close this process's connections before the file is damaged
        for opened in store_module._OPEN.values():
            opened.db.close()
        store_module._OPEN.clear()
    for leftover in (home / "flowkit.db-wal", home / "flowkit.db-shm"):
        leftover.unlink(missing_ok=True)
    damage(home / "flowkit.db")

    with pytest.raises(fk.errors.StoreError) as caught:
        Store(home).runs()
    text = str(caught.value)
    assert f"metadata database {home / 'flowkit.db'} is damaged" in text
    assert "writable" not in text and "mv " in text and "artifacts" in text

    result = CliRunner().invoke(main, ["--home", str(home), "runs"])
    assert result.exit_code != 0 and "is damaged" in result.output and "writable" not in result.output
    assert "Traceback" not in result.output


_LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # a write past the limit fails instead of killing us
    limit = int(sys.argv.pop(1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from flowkit.cli import main
    main(prog_name="flowkit")
""")

_FLOWS = textwrap.dedent("""
    import flowkit as fk

    @fk.task
    def one(i):
        return i

    @fk.flow
    def many(n: int = 40):
        return [one(i) for i in range(n)]
""")


@pytest.mark.parametrize("limit", [4097, 40_000], ids=["cannot-start", "fills-up"])
def test_a_database_that_cannot_grow_is_named_not_a_folder_to_check(tmp_path, limit):
    (tmp_path / "flows.py").write_text(_FLOWS)
    home = tmp_path / "store"
    done = subprocess.run([sys.executable, "-c", _LIMITED, str(limit), "run", "flows.py:many"], env=env(home),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    text = done.stderr
    assert f"metadata database {home / 'flowkit.db'}" in text or f"disk full at {home / 'flowkit.db'}" in text, text
    assert "Free some space" in text and "writable" not in text, text
    assert "Traceback" not in text and "sqlite3.OperationalError" not in text, text


@pytest.mark.parametrize("inline", [False, True])
def test_a_damaged_artifact_error_survives_pickling(inline):
    """It is raised where a value is loaded (a Dask worker) and read where the run is driven."""
    import pickle

    from flowkit.store.protocols import DamagedArtifact

    error = DamagedArtifact("/store/artifacts/ab/" + "ab" * 16, "ab" * 16, "cd" * 16, inline=inline)
    back = pickle.loads(pickle.dumps(error))
    assert (str(back), back.path, back.expected, back.actual, back.inline) == (
        str(error), error.path, error.expected, error.actual, inline)
