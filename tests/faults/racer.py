"""A process of the race scenarios (``tests/faults/test_races.py``), run as ``python racer.py MODE ARGS...``.

Every process starts, says it is ready (``<gate>.ready-<name>``), waits until the test opens the gate
(``<gate>`` exists), then races the others on the store at ``$FLOWKIT_HOME``, and prints one JSON
object of what it did and saw. Modes:

- ``flows NAME SIZE SEED``: run the ``shared`` flow (every process the same cache keys) SIZE times;
- ``small NAME SIZE SEED``: run ``small`` flows, some steps shared with every process, some its own;
- ``files NAME SIZE SEED``: write SIZE artifacts straight through the artifact store, all processes the same;
- ``reader NAME SIZE SEED``: until ``<gate>.done`` exists, read every cache entry's value and every
  artifact file, and count what it saw: whole and correct, absent, or wrong (torn, partial).

The values carry their own identity (``expected``), so a reader can tell a whole value from a torn one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import flowkit as fk
from flowkit.errors import CacheCorruptionError
from flowkit.hashing import digest
from flowkit.store import Store
from flowkit.store.protocols import DamagedArtifact


def expected(kind: str, i: int, seed: int) -> object:
    """The value a task of ``kind`` returns for ``i``: only ever this one, so any other is torn."""
    rng = np.random.default_rng([seed, i])
    if kind == "array":  # 64 KB and more: streamed to a file of its own
        return np.concatenate([[float(i)], rng.normal(size=8191)])
    if kind == "pickled":  # a pickle of some 40 KB: written to a file in one piece
        return {"i": i, "rows": rng.integers(0, 1 << 30, 5000).tolist()}
    return {"i": i, "small": rng.integers(0, 100, 20).tolist()}  # kept inline in the database


def same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


def identify(value: object) -> tuple[str, int] | None:
    """(kind, i) of a value made by :func:`expected`, from the value itself."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.size:
        return "array", int(value[0])
    if isinstance(value, dict) and isinstance(value.get("i"), int):
        return ("pickled" if "rows" in value else "small"), value["i"]
    return None


@fk.task
def array(i: int, seed: int) -> np.ndarray:
    return expected("array", i, seed)  # type: ignore[return-value]


@fk.task
def pickled(i: int, seed: int) -> dict:
    return expected("pickled", i, seed)  # type: ignore[return-value]


@fk.task
def small(i: int, seed: int) -> dict:
    return expected("small", i, seed)  # type: ignore[return-value]


@fk.task
def checksum(a: np.ndarray, p: dict, s: dict) -> float:
    return float(a.sum()) + sum(p["rows"]) + sum(s["small"])


@fk.flow
def shared(size: int = 2, seed: int = 1) -> list[float]:
    return [checksum(array(i, seed), pickled(i, seed), small(i, seed)) for i in range(size)]


@fk.task
def own(p: str, k: int) -> str:
    return f"{p}-{k}"


@fk.task
def joined(common: dict, mine: str) -> str:
    return f"{mine}:{common['i']}"


@fk.flow
def small_flow(p: str = "p0", k: int = 0, seed: int = 1) -> str:
    return joined(small(k, seed), own(p, k))


def _gate(gate: Path, name: str) -> None:
    Path(f"{gate}.ready-{name}").touch()
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: the gate {gate} never opened")
        time.sleep(0.002)


def run_flows(name: str, size: int, seed: int) -> dict:
    out = {"runs": [], "values": []}
    for _ in range(2):  # twice: the second run of each process races the others' first
        run = shared.run(size=size, seed=seed)
        out["runs"].append([run.id, run.status])
        out["values"].append(run.value)
    return out


def run_small(name: str, size: int, seed: int) -> dict:
    out = {"runs": [], "values": []}
    for k in range(size):
        run = small_flow.run(p=name, k=k, seed=seed)
        out["runs"].append([run.id, run.status])
        out["values"].append(run.value)
    return out


def write_files(name: str, size: int, seed: int) -> dict:
    files = Store.open().files
    written = []
    for i in range(size):
        data = np.random.default_rng([seed, i]).bytes(40_000 + 3_000 * (i % 7))
        d = digest(data)
        files.write(d, data)
        written.append(d)
    return {"digests": written}


def read_while_written(name: str, size: int, seed: int, gate: Path) -> dict:
    store = Store.open()
    seen = {"reads": 0, "whole": 0, "absent": 0, "torn": 0, "file_reads": 0, "polls": 0}
    problems: list[str] = []
    done = Path(f"{gate}.done")
    finished = False
    while not finished:
        finished = done.exists()  # one last full pass after the writers are done
        seen["polls"] += 1
        for entry in store.cache_entries():
            seen["reads"] += 1
            try:
                value = store.load(entry["artifact_id"])
            except CacheCorruptionError as exc:
                seen["torn"] += 1
                problems.append(f"{entry['task']}: {exc}")
                continue
            except KeyError:
                seen["absent"] += 1
                continue
            who = identify(value)
            if entry["task"] == "checksum" or entry["task"] in ("own", "joined"):
                seen["whole"] += 1  # no identity of their own; their bytes passed the digest check
            elif who is None or who[0] != entry["task"] or not same(value, expected(who[0], who[1], seed)):
                seen["torn"] += 1
                problems.append(f"{entry['task']}: {str(value)[:80]}")
            else:
                seen["whole"] += 1
        root = Path(store.files.root)
        for path in list(root.glob("??/*")) if root.exists() else []:
            if path.name.startswith(".tmp-"):
                continue
            seen["file_reads"] += 1
            try:
                store.files.read(path.name)
            except DamagedArtifact as exc:
                if exc.actual is None:
                    seen["absent"] += 1
                else:
                    seen["torn"] += 1
                    problems.append(str(exc))
    seen["problems"] = problems[:10]  # type: ignore[assignment]
    return seen


if __name__ == "__main__":
    mode, name, size, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    gate = Path(os.environ["RACE_GATE"])
    _gate(gate, name)
    started = time.monotonic()
    if mode == "flows":
        result = run_flows(name, size, seed)
    elif mode == "small":
        result = run_small(name, size, seed)
    elif mode == "files":
        result = write_files(name, size, seed)
    else:
        result = read_while_written(name, size, seed, gate)
    result["seconds"] = time.monotonic() - started
    print(json.dumps(result))
