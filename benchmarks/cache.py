"""What the store costs and what it saves: cached reruns, artifact I/O, recording.

All in one process, on fresh temporary stores (under ``--dir``, default the
current directory, where the default ``./.flowkit`` would be); each number is
the best of ``--repeat`` runs with ``gc.collect()`` before each:

1. cached rerun vs uncached run of N no-op tasks (N = 10,000) as a chain
   (``noop(prev)``) and as a fan-out with reduce (N ``noop(i)``, then
   ``noop(*all)``). Each repetition times a first run on a fresh store (every
   task runs, its result is stored, the run recorded), then the same flow again
   on that store (trace, keys, one batched lookup, recording ``cached`` task
   runs, loading the output), and the flow with ``store=False`` (the engine
   alone), and the flow body traced alone (``flow.graph(n)``, the floor of any
   run). It asserts that the rerun ran no task body and recorded all as cached.
2. the same with each task returning a distinct 64 KiB numpy array (N = 1,000),
   so each result is an artifact file written with fsync (informational).
3. artifact throughput for a DataFrame of about ``--mb`` MB (10^6 bytes in
   memory): flowkit's ``store_value`` (Arrow IPC streamed to the file, xxh3
   digest, atomic fsynced write) and ``load_artifact`` (read, check the digest,
   deserialize) against ``pyarrow.feather.write_feather`` / ``read_feather`` (no
   digest, no fsync: the target's anchor), the same with an fsync (like for
   like), and the artifact's bytes written with one fsynced ``write`` (the disk:
   no durable store writes faster).
4. store + lineage recording per task run: N no-op tasks with a constant
   argument each, uncached with a store minus ``store=False``, over N. An upper
   bound on lineage recording: it also covers keys, the lookup and storing results.

Targets are ratios or differences of numbers taken in the same process on the
same machine, so the machine's speed and load, the disk and the interpreter
cancel out; absolute times on a shared machine mean little. Exit code is 0
whatever the numbers: this is a benchmark, not a test.

    python benchmarks/cache.py [--n 10000] [--mb 200] [--repeat 3] [--dir .]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

import flowkit as fk
from shapes import verdict
from flowkit._worker import store_value
from flowkit.store.serializers import load_artifact
from flowkit.store.artifacts import ArtifactFiles

ARRAY_N = 1000
RATIO_TARGET = 20.0
CACHED_US_TARGET = 20.0
THROUGHPUT_TARGET = 0.80
RECORDING_US_TARGET = 100.0

CALLS = [0]  # task bodies run; a list, so it is not part of the tasks' code fingerprint


@fk.task
def noop(*args: Any) -> None:
    CALLS[0] += 1


@fk.task
def block(seed: int, *inputs: np.ndarray) -> np.ndarray:
    CALLS[0] += 1  # a distinct 64 KiB array (8192 float64), plus its inputs
    out = np.full(8192, float(seed))
    for x in inputs:
        out += x
    return out


@fk.flow
def chain(n: int) -> Any:
    ref = noop(0)
    for _ in range(n - 1):
        ref = noop(ref)
    return ref


@fk.flow
def fanout(n: int) -> Any:
    return noop(*[noop(i) for i in range(n)])


@fk.flow
def array_chain(n: int) -> Any:
    ref = block(0)
    for i in range(1, n):
        ref = block(i, ref)
    return ref


@fk.flow
def array_fanout(n: int) -> Any:
    return block(n, *[block(i) for i in range(n)])


@fk.flow
def constants(n: int) -> Any:
    return [noop(i) for i in range(n)]


def warm_up(where: str) -> None:
    """Run every flow once, small, so that imports and first-call costs are not timed."""
    with tempfile.TemporaryDirectory(prefix=".fk-bench-", dir=where) as home:
        store = fk.Store(home)
        for flow in (chain, fanout, array_chain, array_fanout, constants):
            for option in (store, store, False):
                flow.with_options(store=option).run(3)
        store.db.close()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_counted(flow: fk.Flow[..., Any], n: int, tasks: int, status: str) -> tuple[float, fk.Run]:
    """Time ``flow.run(n)``; check every task run has ``status`` and how many bodies ran."""
    before = CALLS[0]
    seconds, run = timed(lambda: flow.run(n))
    ran = CALLS[0] - before
    statuses = {tr.status for tr in run.task_runs}
    expected = tasks if status == "completed" else 0
    assert run.status == "completed" and len(run.task_runs) == tasks and statuses == {status} and ran == expected, \
        f"{flow.name}: {run}, statuses {statuses}, {ran} task bodies ran, expected {expected}"
    return seconds, run


def cache_rows(flow: fk.Flow[..., Any], n: int, tasks: int, repeat: int, where: str) -> dict[str, float]:
    """Best uncached, cached, store=False and trace-only times of ``flow.run(n)`` in µs per task, and the ratio."""
    best = {"tasks": tasks, "uncached": float("inf"), "cached": float("inf"), "store=False": float("inf"),
            "trace": float("inf")}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix=".fk-bench-", dir=where) as home:
            store = fk.Store(home)
            uncached, first = run_counted(flow.with_options(store=store), n, tasks, "completed")
            cached, again = run_counted(flow.with_options(store=store), n, tasks, "cached")
            assert len(store.task_runs(again.id)) == tasks, "cached task runs were not all recorded"
            assert not isinstance(first.value, np.ndarray) or np.array_equal(first.value, again.value)
            store.db.close()
        off, _ = run_counted(flow.with_options(store=False), n, tasks, "completed")
        traced, graph = timed(lambda: flow.graph(n))  # the flow body alone: no keys, no store, no engine
        assert sum(1 for node in graph.nodes.values() if node.kind == "task") == tasks, graph
        for name, seconds in (("uncached", uncached), ("cached", cached), ("store=False", off), ("trace", traced)):
            best[name] = min(best[name], seconds / tasks * 1e6)
    best["ratio"] = best["uncached"] / best["cached"]
    return best


def cache_table(title: str, chain_flow: fk.Flow[..., Any], fanout_flow: fk.Flow[..., Any], n: int, repeat: int,
                where: str) -> dict[str, dict[str, float]]:
    rows = {"chain": cache_rows(chain_flow, n, n, repeat, where),
            "fan-out": cache_rows(fanout_flow, n, n + 1, repeat, where)}
    header = (f"  {'shape':<8} {'tasks':>7} {'uncached':>10} {'cached':>10} {'store=False':>12} {'trace only':>11} "
              f"{'uncached/cached':>16}")
    print(f"{title}\n{header}\n  " + "-" * (len(header) - 2))
    for shape, r in rows.items():
        print(f"  {shape:<8} {r['tasks']:>7,} {r['uncached']:>10.2f} {r['cached']:>10.2f} "
              f"{r['store=False']:>12.2f} {r['trace']:>11.2f} {r['ratio']:>15.1f}x")
    print()
    return rows


def make_frame(mb: float) -> pd.DataFrame:
    """About ``mb`` MB: 9 float64 columns of random numbers and one int64 column."""
    rows = max(1, int(mb * 1e6 / (10 * 8)))
    rng = np.random.default_rng(0)
    df = pd.DataFrame({f"x{i}": rng.standard_normal(rows) for i in range(9)})
    df["id"] = rng.integers(0, 1 << 40, rows, dtype=np.int64)
    return df


def write_synced(path: str, write: Callable[[Any], Any]) -> None:
    """``write(file)`` into a new file at ``path``, then fsync it: the data is on disk when this returns."""
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def throughput(df: pd.DataFrame, repeat: int, where: str) -> tuple[dict[str, list[float]], int]:
    """Best [write, read] seconds of flowkit and of the anchors; flowkit's artifact size.

    ``anchor`` is ``write_feather`` + ``read_feather`` as they come (the data may
    still be in the page cache when the write returns); ``anchor+fsync`` the
    same with the file fsynced, as flowkit does; ``disk`` the artifact's bytes,
    already in memory, written with one ``write`` and an fsync: what any durable
    write of them costs, whatever the format (it has no read).
    """
    best = {name: [float("inf")] * 2 for name in ("flowkit", "anchor", "anchor+fsync", "disk")}
    with tempfile.TemporaryDirectory(prefix=".fk-bench-", dir=where) as tmp:
        files, path = ArtifactFiles(os.path.join(tmp, "artifacts")), os.path.join(tmp, "anchor.feather")
        raw: list[bytes] = []
        ways = {"flowkit": (lambda: store_value(files, df, None),
                            lambda info: load_artifact(files, info.digest, info.serializer, None),
                            lambda info: files.delete(info.digest)),
                "anchor": (lambda: feather.write_feather(df, path), lambda _: feather.read_feather(path),
                           lambda _: os.unlink(path)),
                "anchor+fsync": (lambda: write_synced(path, lambda f: feather.write_feather(df, f)),
                                 lambda _: feather.read_feather(path), lambda _: os.unlink(path)),
                "disk": (lambda: write_synced(path, lambda f: f.write(raw[0])), None, lambda _: os.unlink(path))}
        for rep in range(repeat):
            for name, (write, read, remove) in ways.items():
                w, info = timed(write)
                if name == "flowkit":
                    assert info.uri is not None and info.serializer == "feather", info
                    size = info.size
                    if not raw:
                        raw.append(bytes(files.read(info.digest)))
                if read is not None:
                    r, back = timed(lambda: read(info))
                    if rep == 0:
                        pd.testing.assert_frame_equal(back, df)
                    del back
                    best[name][1] = min(best[name][1], r)
                remove(info)  # so that the next write really writes
                best[name][0] = min(best[name][0], w)
    best["disk"][1] = 0.0
    return best, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="no-op tasks per flow (default 10000)")
    parser.add_argument("--mb", type=float, default=200, help="size of the DataFrame in MB (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per measurement; the best is kept")
    parser.add_argument("--dir", default=".", help="where the temporary stores go (default: current directory)")
    args = parser.parse_args()
    n = args.n
    print(f"flowkit {fk.__version__}, pyarrow {pa.__version__}, pandas {pd.__version__}, "
          f"Python {platform.python_version()} on {platform.machine()}; best of {args.repeat}; "
          f"temporary stores under {os.path.abspath(args.dir)}\n")

    warm_up(args.dir)
    noops = cache_table(f"1. no-op tasks, N = {n:,}: µs per task (wall time / tasks)", chain, fanout, n,
                        args.repeat, args.dir)
    arrays = cache_table(f"2. tasks returning a distinct 64 KiB numpy array (an fsynced artifact file each), "
                         f"N = {ARRAY_N:,}: µs per task (informational)", array_chain, array_fanout, ARRAY_N,
                         args.repeat, args.dir)

    df = make_frame(args.mb)
    mb = df.memory_usage(deep=True).sum() / 1e6
    best, size = throughput(df, args.repeat, args.dir)
    print(f"3. artifact throughput, DataFrame {len(df):,} rows x {df.shape[1]} columns = {mb:,.1f} MB in memory "
          f"(flowkit artifact: {size / 1e6:,.1f} MB); MB/s")
    header = f"  {'path':<62} {'write':>8} {'read':>8} {'write+read':>11}"
    print(header + "\n  " + "-" * (len(header) - 2))
    labels = {"flowkit": "flowkit store_value + load_artifact (digest, fsync)",
              "anchor": "anchor: pyarrow.feather write_feather + read_feather",
              "anchor+fsync": "like for like: write_feather + fsync + read_feather",
              "disk": "the disk: the artifact's bytes, one write + fsync"}
    for name, (w, r) in best.items():
        read = f"{mb / r:>8,.0f}" if r else f"{'-':>8}"
        print(f"  {labels[name]:<62} {mb / w:>8,.0f} {read} {mb / (w + r):>11,.0f}")
    total = {name: sum(wr) for name, wr in best.items()}
    io_ratio = total["anchor"] / total["flowkit"]  # throughput ratio = inverse time ratio
    synced_ratio = total["anchor+fsync"] / total["flowkit"]
    # A store that must have the bytes on disk before it returns writes no faster than the
    # disk, even if it had no format, digest or read cost of its own beyond the anchor's read.
    ceiling = total["anchor"] / (best["disk"][0] + best["anchor"][1])
    print(f"  flowkit / anchor, write+read: {io_ratio:.2f}; flowkit / like for like: {synced_ratio:.2f}; "
          f"the most any fsynced write reaches against the anchor here: {ceiling:.2f}\n")

    rec = cache_rows(constants, n, n, args.repeat, args.dir)  # its "cached" column is not used
    recording = rec["uncached"] - rec["store=False"]
    print(f"4. {n:,} no-op tasks with a constant argument each, uncached: {rec['uncached']:.2f} µs per task with a "
          f"store, {rec['store=False']:.2f} with store=False\n  store + lineage recording per task run: "
          f"{recording:.2f} µs (an upper bound on lineage recording: it also includes cache keys, the lookup, "
          f"and serializing and storing each result)\n")

    print("targets")
    for shape, r in noops.items():
        print(f"  {shape}: cached rerun of {r['tasks']:,} tasks >= {RATIO_TARGET:g}x faster than uncached: "
              f"{r['ratio']:.1f}x ({verdict(r['ratio'] >= RATIO_TARGET)}; it needs <= "
              f"{r['uncached'] / RATIO_TARGET:.2f} µs per cached task, tracing the flow body alone takes "
              f"{r['trace']:.2f})")
        print(f"  {shape}: cached rerun <= {CACHED_US_TARGET:g} µs per task: {r['cached']:.2f} µs "
              f"({verdict(r['cached'] <= CACHED_US_TARGET)})")
    print(f"  artifact write+read throughput >= {THROUGHPUT_TARGET:.2f}x pyarrow.feather: {io_ratio:.2f}x "
          f"({verdict(io_ratio >= THROUGHPUT_TARGET)}; an fsynced write can reach at most {ceiling:.2f}x here, "
          f"flowkit reaches {synced_ratio:.2f}x of write_feather + fsync)")
    print(f"  store + lineage recording <= {RECORDING_US_TARGET:g} µs per task run (upper bound): {recording:.2f} µs "
          f"({verdict(recording <= RECORDING_US_TARGET)})")
    print("  informational, no target: 64 KiB arrays, uncached/cached: "
          + ", ".join(f"{shape} {r['ratio']:.1f}x" for shape, r in arrays.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
