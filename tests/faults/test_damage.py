"""Damaged artifacts of every kind, for every kind of value the store writes: found before anything loads.

The flow below makes one value of each kind the store writes: a pickled object and a numpy array in files
of their own, DataFrames as Feather and as Parquet files, and small values (a dict, a frame) kept inline in
the metadata database. After a clean run, each scenario damages the stored bytes of every one of them at
once (a flipped bit, a truncation, an empty file, two artifacts' bytes swapped, a valid pickle of something
else put in place, the bytes gone) and runs the flow again. Every damage must be found by the digest check
*before* the bytes are deserialized: the pickle put in place, if ever loaded, would create a marker file,
and it never may. The damaged tasks are recomputed, and only they; the rerun's value equals the clean
run's; a third run serves everything from the cache, so the store was repaired, not merely worked around.
"""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import flowkit as fk
from flowkit.store import Store

from tests.faults.harness import tally, tiers

pytestmark = pytest.mark.sqlite_only  # damages rows of the SQLite file itself

#: Where a foreign pickle would leave its mark if anything ever deserialized it.
MARKER = "unpickled.marker"


class Planted:
    """A valid pickle of something else: loading it opens (creates) the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _rng(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed, sum(kind.encode())])


@fk.task
def pickled(seed: int, size: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {"seed": seed, "rows": [[rng.random() for _ in range(50)] for _ in range(size * 100)]}  # > 32 KiB


@fk.task
def array(seed: int, size: int) -> np.ndarray:
    return _rng(seed, "array").normal(size=size * 5000)


@fk.task
def feather_frame(seed: int, size: int) -> pd.DataFrame:
    rng = _rng(seed, "feather")
    n = size * 3000
    return pd.DataFrame({"x": rng.normal(size=n), "label": [f"row-{i}" for i in rng.integers(0, 99, n)]})


@fk.task(serializer="parquet")
def parquet_frame(seed: int, size: int) -> pd.DataFrame:
    rng = _rng(seed, "parquet")
    n = size * 3000
    return pd.DataFrame({"y": rng.integers(0, 1 << 40, n), "z": rng.random(n)})


@fk.task
def small_value(seed: int, size: int) -> dict[str, int]:
    return {"seed": seed, "size": size}


@fk.task
def small_frame(seed: int, size: int) -> pd.DataFrame:
    return pd.DataFrame({"seed": [seed] * 3, "size": [size] * 3})


#: Each task, and where its value is stored: ``(serializer, inline)``.
KINDS = {"pickled": ("pickle", False), "array": ("npy", False), "feather_frame": ("feather", False),
         "parquet_frame": ("parquet", False), "small_value": ("pickle", True), "small_frame": ("feather", True)}
TASKS = {t.name: t for t in (pickled, array, feather_frame, parquet_frame, small_value, small_frame)}


@fk.flow
def values(seed: int = 1, size: int = 1) -> dict[str, Any]:
    return {name: task(seed, size) for name, task in TASKS.items()}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


# --- reading and writing the stored bytes of an artifact -----------------------------------------

def stored(store: Store, artifact_id: str) -> bytes | None:
    if store.artifact(artifact_id).inline:
        return store.db.inline_data(artifact_id)
    path = store.files.path(artifact_id)
    return path.read_bytes() if path.exists() else None


def put(store: Store, artifact_id: str, data: bytes | None) -> None:
    """Replace the stored bytes of an artifact (``None``: remove them), wherever they live."""
    if store.artifact(artifact_id).inline:
        store.db.write(lambda c: c.execute("UPDATE artifacts SET data = ? WHERE id = ?", (data, artifact_id)))
        return
    path = store.files.path(artifact_id)
    if data is None:
        path.unlink()
    else:
        path.write_bytes(data)


def flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    i = rng.randrange(len(out))
    out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


#: Damage: (bytes of the artifacts, rng, marker) -> their new bytes. ``swap`` pairs the artifacts up.
DAMAGE = {
    "bit_flip": lambda blobs, rng, marker: [flip(b, rng) for b in blobs],
    "truncated": lambda blobs, rng, marker: [b[:rng.randrange(1, len(b))] for b in blobs],
    "empty": lambda blobs, rng, marker: [b"" for _ in blobs],
    "swapped": lambda blobs, rng, marker: [blobs[i ^ 1] for i in range(len(blobs))],
    "foreign_pickle": lambda blobs, rng, marker: [pickle.dumps(Planted(marker)) for _ in blobs],
    "missing": lambda blobs, rng, marker: [None for _ in blobs],
}


def _artifacts(run: fk.Run) -> dict[str, str]:
    return {tr.name: tr.artifact_id for tr in run.task_runs}


def damage_and_rerun(tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str, seed: int, size: int,
                     targets: list[str]) -> int:
    """Damage the artifacts of ``targets`` with ``how``, rerun, check everything; return how many were found."""
    store = Store.open()
    marker = tmp_path / MARKER
    clean = values.run(seed=seed, size=size)
    assert clean.status == "completed"
    ids = _artifacts(clean)
    for name, (serializer, inline) in KINDS.items():  # each kind is really stored the way it is meant to be
        record = store.artifact(ids[name])
        assert (record.serializer, record.inline) == (serializer, inline), name

    rng = random.Random(f"{seed}-{how}")
    targets = sorted(targets)
    if how == "swapped":  # with a partner of the same place (file or inline): both are damaged
        files = [t for t in targets if not KINDS[t][1]]
        inline = [t for t in targets if KINDS[t][1]]
        targets = files[: len(files) // 2 * 2] + inline[: len(inline) // 2 * 2]
    blobs = [stored(store, ids[t]) for t in targets]
    for name, data in zip(targets, DAMAGE[how](blobs, rng, marker)):
        put(store, ids[name], data)

    for name in targets:  # a direct read refuses the bytes before loading them
        with pytest.raises(fk.CacheCorruptionError, match=f"artifact {ids[name]}"):
            store.load(ids[name])
    assert not marker.exists()

    with caplog.at_level(logging.WARNING, logger="flowkit"):
        caplog.clear()
        again = values.run(seed=seed, size=size)
    assert not marker.exists(), "a damaged artifact was deserialized"
    assert again.status == "completed", again.error
    assert set(again.value) == set(clean.value)
    for name in TASKS:
        assert same(again.value[name], clean.value[name]), name
    statuses = {tr.name: tr.status for tr in again.task_runs}
    assert {n for n, s in statuses.items() if s == "completed"} == set(targets)  # exactly the damaged ones
    assert {n for n, s in statuses.items() if s == "cached"} == set(TASKS) - set(targets)
    warned = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    for name in targets:
        (said,) = [w for w in warned if f"task {name!r}" in w]
        assert "recomputed" in said
        if KINDS[name][1]:  # an inline value is not described as a file
            assert "inline value" in said and "artifact file" not in said, said

    caplog.clear()
    third = values.run(seed=seed, size=size)
    assert {tr.status for tr in third.task_runs} == {"cached"}, "the store still holds damaged bytes"
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]
    for name in TASKS:
        assert same(store.load(ids[name]), clean.value[name]), name
    assert not marker.exists()
    return len(targets)


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize(("size", "seed"), tiers((1, 1), [(20, 2), (40, 3)]))
def test_damaged_artifacts_are_found_before_loading_and_recomputed(tmp_path, caplog, how, size, seed):
    targets = sorted(KINDS)
    if how == "missing":  # an inline value has no file to lose; its row losing the bytes is "empty"
        targets = [t for t in targets if not KINDS[t][1]]
    found = damage_and_rerun(tmp_path, caplog, how, seed, size, targets)
    tally("damage", corruptions_detected=found, runs=3, **{f"damage_{how}": found})


@pytest.mark.parametrize(("size", "seed"), tiers((1, 7), [(30, 10)]))
def test_random_damage_to_random_artifacts(tmp_path, caplog, size, seed):
    """``size`` rounds on one store: a few artifacts, drawn at random, each damaged one way drawn at random,
    the values of each round another size (so other bytes)."""
    rng = random.Random(seed)
    for r in range(size):
        how = rng.choice(sorted(DAMAGE))
        pool = [t for t in KINDS if not (how == "missing" and KINDS[t][1])]
        targets = rng.sample(pool, rng.randint(2, len(pool)))
        found = damage_and_rerun(tmp_path, caplog, how, seed * 1000 + r, 1 + r % 4, targets)
        tally("damage", corruptions_detected=found, runs=3, **{f"damage_{how}": found})
