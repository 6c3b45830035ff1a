"""Per-task cost of flowkit's default path (store, cache, lineage on) against dask.get and the trace.

No-op tasks (benchmarks/shapes.py) in three shapes: a chain, a fan-out with a
reduce, and a two-level map (``grid``: N/100 groups whose items are known when
the group ran, ``cell`` mapped over each group's 100 items). Everything runs in
this one process; each time is the best of ``--repeat`` runs, ``gc.collect()``
before each, the columns of one row taken in turn, so the machine's load
weighs on each alike. Sections:

1. **The default path at N** (``--n``, default 10,000), chain and fan-out, in
   µs per task: ``dask.get`` on the same raw dict graph (building it included,
   as tracing is for flowkit); ``cold``: ``flow.run(n)`` with the defaults on a
   fresh store; ``cached``: the same again on that store (every task a hit);
   ``trace``: ``flow.graph(n)``; ``engine``: ``store=False`` (nothing kept);
   ``python``: the calls made directly.
2. **Scale**: cold and cached per-task time of each shape at each N of
   ``--scale`` (default 100 to 100,000), and its ratio to the figure at 1,000.
3. **Memory**: bytes per node a traced graph retains (100,000-node chain), and
   the peak ``tracemalloc`` sees during a cold run of ``--n`` chained tasks.
4. **Floors**, measured here: the cheapest SQLite insert of one row of a
   task-run-like table (WAL, ``synchronous = NORMAL``, one transaction, as the
   store writes), times the rows the cold run wrote per task; plus the engine
   alone. ``dask.get`` below their sum cannot be met by writing those rows.
   Then the run's own thread: the cold run with its records built and handed
   to the writer but not written, what a writer entirely beside the run would
   leave; what the cold run's thread waited for off the CPU: its hand-overs of the
   GIL to the busy writer (each a ``time.sleep(0)``, then the writer's turn) and
   the writer's last commit at its end; and rows written beside a thread that runs Python, row by row
   (``sqlite3``'s ``executemany``, which waits for the GIL after each row) and
   as the store's one statement (flowkit.store.sqlite_bulk). The least a cold
   task's records need, in plain Python (its value pickled and hashed, its
   content key, its task-run and cache rows, their JSON), with the engine and
   the keys: what is left of a cold run above that is the general path's own
   Python. For a cached rerun: the trace, the keys, the one batched lookup (the store's
   ``cache_lookup`` of every key) and one row per task run.

It ends with one PASS/FAIL line per target (issue 18). Exit code 0 whatever
the numbers: this is a benchmark, not a test.

    python benchmarks/overhead.py [--n 10000] [--scale 100 1000 10000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import dask

import flowkit as fk
from shapes import chain, fanout, grid, grid_tasks, noop, verdict

TRACE_N = 100_000
COLD_TARGET = 1.0  # x dask.get
CACHED_TARGET = 2.0  # x the trace
SCALE_TARGET = 1.25  # per task at the largest N over per task at 1,000
TRACE_SECONDS_TARGET = 0.5
BUSY_ROWS = 200  # rows written beside a busy thread (row by row, each waits up to a switch interval, 5 ms)


def dask_chain(n: int) -> None:
    dsk: dict[str, Any] = {"t0": (noop,)}
    for i in range(1, n):
        dsk[f"t{i}"] = (noop, f"t{i - 1}")
    dask.get(dsk, f"t{n - 1}")


def dask_fanout(n: int) -> None:
    dsk: dict[str, Any] = {f"t{i}": (noop,) for i in range(n)}
    dsk["reduce"] = (noop, *dsk)
    dask.get(dsk, "reduce")


def py_chain(n: int) -> None:
    x = noop()
    for _ in range(n - 1):
        x = noop(x)


def py_fanout(n: int) -> None:
    noop(*[noop() for _ in range(n)])


class Shape:
    """How to trace and run one shape at size n, and how many task runs that is."""

    def __init__(self, name: str, flow: fk.Flow[..., Any], args: Callable[[int], tuple[int, ...]],
                 tasks: Callable[[int], int]) -> None:
        self.name, self.flow, self.args, self.tasks = name, flow, args, tasks

    def trace(self, n: int) -> Any:
        return self.flow.graph(*self.args(n))

    def engine(self, n: int) -> Any:
        return self.flow.with_options(store=False).run(*self.args(n)).result()

    def cold_and_cached(self, n: int) -> tuple[float, float, int]:
        """(cold seconds, cached seconds, rows written per task) on a fresh store."""
        with tempfile.TemporaryDirectory() as home:
            flow = self.flow.with_options(store=home)
            cold = timed(lambda: flow.run(*self.args(n)).result())
            cached = timed(lambda: flow.run(*self.args(n)).result())
            rows = stored_rows(os.path.join(home, "flowkit.db"))
        return cold, cached, rows


SHAPES = {
    "chain": Shape("chain", chain, lambda n: (n,), lambda n: n),
    "fan-out": Shape("fan-out", fanout, lambda n: (n,), lambda n: n + 1),
    "grid": Shape("grid", grid, lambda n: (max(1, n // 100), 100), lambda n: grid_tasks(max(1, n // 100), 100)),
}
RAW = {"chain": (dask_chain, py_chain), "fan-out": (dask_fanout, py_fanout)}


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stored_rows(path: str) -> int:
    """Rows of the core tables the runs wrote (both runs; the first is what a cold run writes)."""
    with sqlite3.connect(path) as conn:
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("task_runs", "inputs", "cache", "artifacts"))


def cold_rows_per_task(shape: Shape, n: int) -> float:
    with tempfile.TemporaryDirectory() as home:
        shape.flow.with_options(store=home).run(*shape.args(n)).result()
        return stored_rows(os.path.join(home, "flowkit.db")) / shape.tasks(n)


def sqlite_row_floor(rows: int, repeat: int) -> float:
    """Seconds per row of the cheapest write of task-run-like rows: one executemany, one transaction."""
    best = float("inf")
    cols = ", ".join(f"c{i}" for i in range(13))
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as folder:
            conn = sqlite3.connect(os.path.join(folder, "floor.db"), isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"CREATE TABLE t (run_id TEXT NOT NULL, node TEXT NOT NULL, {cols}, "
                         "PRIMARY KEY (run_id, node)) WITHOUT ROWID")
            data = [(f"{r:032x}", f"noop-{i:x}", i, "noop", "completed", 1, 1.7e9 + i, 1.7e9 + i, f"{i:032x}",
                     f"{i:032x}", None, None, "MainThread", None, None) for i in range(rows)]
            gc.collect()
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * 15)})", data)
            conn.execute("COMMIT")
            best = min(best, (time.perf_counter() - start) / rows)
            conn.close()
    return best


def cold_essentials(n: int, repeat: int, with_input: bool) -> tuple[float, float]:
    """Seconds per task of the least a cold task's records need, in plain Python: (the run's part, the writer's JSON).

    The run's part: the value stored as the store stores a small result (``store_value``:
    pickled and hashed), the content key hashed over its input's digest (``with_input``),
    and the task-run and cache-entry rows built and kept. The writer's part: the JSON text
    of those rows that its one statement sends (flowkit.store.sqlite_bulk). The cache key is
    not in it: the keys are measured with the cached rerun's parts. What a cold run costs
    beyond the engine, the keys and these is the general path's own Python.
    """
    from xxhash import xxh3_128_hexdigest

    from flowkit._worker import store_value
    from flowkit.store.sqlite_bulk import _json

    run_id = "0" * 32

    def records() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        task_runs: list[tuple[Any, ...]] = []
        cache: list[tuple[Any, ...]] = []
        digest = None
        for i in range(n):
            node = f"noop-{i:x}"
            info = store_value(None, None, None)
            content = xxh3_128_hexdigest(f"fingerprint|{digest}".encode()) if with_input and digest else None
            column = f'[[0,"noop-{i - 1:x}"]]' if with_input and i else None
            digest = info[0]
            task_runs.append((run_id, node, i, "noop", "completed", 1, 1.7e9, 1.7e9, f"{i:032x}", digest, None,
                              None, None, None, None, column))
            cache.append((f"{i:032x}", digest, "noop", f"{run_id}/{node}", 1.7e9, run_id, False, None, content))
        return task_runs, cache

    made = min(timed(records) for _ in range(repeat))
    task_runs, cache = records()
    text = min(timed(lambda: (_json(task_runs), _json(cache))) for _ in range(repeat))
    return made / n, text / n


def run_thread_alone(shape: Shape, n: int, repeat: int) -> float:
    """Seconds per task of a cold run whose records are built and handed over but not written (its end is).

    What the run's own thread costs with the store's SQL taken out: the floor of a cold run
    with a writer that works entirely beside it.
    """
    from flowkit.store.sql import SQLMetadataStore

    write = SQLMetadataStore.flush

    def drop(self: SQLMetadataStore, batch: Any) -> None:
        end = batch.run_end
        batch.clear()
        batch.run_end = end
        if end is not None:
            write(self, batch)

    SQLMetadataStore.flush = drop  # type: ignore[method-assign]
    try:
        best = float("inf")
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as home:
                flow = shape.flow.with_options(store=home)
                best = min(best, timed(lambda: flow.run(*shape.args(n)).result()))
    finally:
        SQLMetadataStore.flush = write  # type: ignore[method-assign]
    return best / shape.tasks(n)


def writer_waits(shape: Shape, n: int, repeat: int) -> tuple[float, float, int, float, float, float]:
    """What the run's thread waited for in its fastest cold run, in seconds per task, and how often.

    (off the CPU in all: wall time less the thread's CPU time; in its hand-overs to the busy
    writer, ``BatchWriter.make_way``, each a ``time.sleep(0)`` in which the writer takes the
    GIL; how many hand-overs; seconds per hand-over; at its end, for the writer's last commit;
    the quickest ``time.sleep(0)`` alone, of 200). The rest of the time off the CPU is the GIL the
    writer held when a switch interval passed.
    """
    from flowkit.store.writer import BatchWriter

    make_way, drain = BatchWriter.make_way, BatchWriter.drain
    spent = {"make_way": 0.0, "drain": 0.0, "calls": 0}

    def timed_make_way(self: BatchWriter) -> None:
        if self.idle:  # nothing to hand over, nothing slept
            return make_way(self)
        start = time.perf_counter()
        make_way(self)
        spent["make_way"] += time.perf_counter() - start
        spent["calls"] += 1

    def timed_drain(self: BatchWriter) -> None:
        start = time.perf_counter()
        drain(self)
        spent["drain"] += time.perf_counter() - start

    BatchWriter.make_way, BatchWriter.drain = timed_make_way, timed_drain  # type: ignore[method-assign]
    best: tuple[float, float, int, float, float] | None = None
    try:
        for _ in range(repeat):
            spent.update(make_way=0.0, drain=0.0, calls=0)
            with tempfile.TemporaryDirectory() as home:
                flow = shape.flow.with_options(store=home)
                gc.collect()
                wall, cpu = time.perf_counter(), time.thread_time()
                flow.run(*shape.args(n)).result()
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            if best is None or wall < best[0]:
                best = (wall, wall - cpu, int(spent["calls"]), spent["make_way"], spent["drain"])
    finally:
        BatchWriter.make_way, BatchWriter.drain = make_way, drain  # type: ignore[method-assign]
    assert best is not None
    sleep0 = float("inf")
    for _ in range(200):
        start = time.perf_counter()
        time.sleep(0)
        sleep0 = min(sleep0, time.perf_counter() - start)
    tasks, calls = shape.tasks(n), best[2]
    return best[1] / tasks, best[3] / tasks, calls, best[3] / calls if calls else 0.0, best[4] / tasks, sleep0


def beside_busy_thread(by_row: int, at_once: int) -> tuple[float, float]:
    """Seconds per row to write task-run rows while another thread runs Python: row by row, and as one statement.

    Row by row (``by_row`` rows) is ``sqlite3``'s ``executemany``, which takes the GIL back
    after each row; one statement (``at_once`` rows) is what the store's connection makes of
    it (flowkit.store.sqlite_bulk). Row by row is linear in the rows, so fewer of them do.
    """
    import threading

    from flowkit.store.sqlite_bulk import BulkConnection

    took = []
    for write, rows in ((sqlite3.Connection.executemany, by_row), (BulkConnection.executemany, at_once)):
        data = [(f"{0:032x}", f"noop-{i:x}", i, "noop", "completed", 1, 1.7e9 + i, 1.7e9 + i, f"{i:032x}",
                 f"{i:032x}", None, None, "MainThread", None, None) for i in range(rows)]
        with tempfile.TemporaryDirectory() as folder:
            conn = sqlite3.connect(os.path.join(folder, "busy.db"), isolation_level=None, factory=BulkConnection,
                                   check_same_thread=False)
            conn.execute("CREATE TABLE t (run_id TEXT NOT NULL, node TEXT NOT NULL, "
                         f"{', '.join(f'c{i}' for i in range(13))}, PRIMARY KEY (run_id, node)) WITHOUT ROWID")
            stop = threading.Event()
            spent: list[float] = []

            def writer() -> None:
                start = time.perf_counter()
                write(conn, f"INSERT INTO t VALUES ({', '.join('?' * 15)})", data)
                spent.append(time.perf_counter() - start)
                stop.set()

            thread = threading.Thread(target=writer)
            thread.start()
            while not stop.is_set():  # the run's thread: Python, all the time
                sum(range(100))
            thread.join()
            conn.close()
            took.append(spent[0] / rows)
    return took[0], took[1]


def cached_parts(shape: Shape, n: int, repeat: int) -> tuple[float, float]:
    """Seconds per task of what a cached rerun cannot skip besides the trace: (the keys, the one lookup)."""
    from flowkit.cache import KeyMaker

    with tempfile.TemporaryDirectory() as home:
        shape.flow.with_options(store=home).run(*shape.args(n)).result()
        store = fk.Store(home)
        graph = shape.trace(n)
        keys = min(timed(lambda: KeyMaker("salt", store).keys(graph.nodes)) for _ in range(repeat))
        wanted = set(KeyMaker("salt", store).keys(graph.nodes).values())
        lookup = min(timed(lambda: store.db.cache_lookup(wanted)) for _ in range(repeat))
        store.db.close()
    tasks = shape.tasks(n)
    return keys / tasks, lookup / tasks


def run_memory(n: int) -> float:
    """Peak bytes per task that tracemalloc sees during a cold run of an n-task chain."""
    with tempfile.TemporaryDirectory() as home:
        flow = chain.with_options(store=home)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            flow.run(n).result()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return (peak - base) / n


def trace_memory(n: int) -> float:
    """Bytes per node a traced n-task chain retains (its networkx graph included)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        graph = chain.graph(n)
        graph.nx  # the networkx view is built on first use: count it too
        gc.collect()
        current = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (current - base) / len(graph.nodes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks in section 1 (default 10,000)")
    parser.add_argument("--scale", type=int, nargs="+", default=[100, 1000, 10_000, 100_000],
                        help="task counts of the scale curve (default 100 1000 10000 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per measurement; the best is kept")
    args = parser.parse_args()
    n, repeat = args.n, args.repeat
    print(f"flowkit {fk.__version__}, dask {dask.__version__}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version} on {platform.machine()}; best of {repeat}; µs per task\n")

    # 1. the default path at n
    columns = ["dask.get", "cold", "cached", "trace", "engine", "python"]
    print(f"1. the default path, {n:,} no-op tasks")
    header = f"{'shape':<8} " + " ".join(f"{c:>9}" for c in columns) + f" {'cold/dask':>10} {'cached/trace':>13}"
    print(header + "\n" + "-" * len(header))
    at_n: dict[str, dict[str, float]] = {}
    for name in ("chain", "fan-out"):
        shape, (raw, py) = SHAPES[name], RAW[name]
        best = dict.fromkeys(columns, float("inf"))
        for _ in range(repeat):
            cold, cached, _ = shape.cold_and_cached(n)
            took = {"dask.get": timed(lambda: raw(n)), "cold": cold, "cached": cached,
                    "trace": timed(lambda: shape.trace(n)), "engine": timed(lambda: shape.engine(n)),
                    "python": timed(lambda: py(n))}
            best = {c: min(best[c], took[c]) for c in columns}
        us = at_n[name] = {c: best[c] / shape.tasks(n) * 1e6 for c in columns}
        print(f"{name:<8} " + " ".join(f"{us[c]:>9.2f}" for c in columns)
              + f" {us['cold'] / us['dask.get']:>9.2f}x {us['cached'] / us['trace']:>12.2f}x")

    # 2. scale
    print("\n2. scale: cold and cached per task, and per task over that at 1,000")
    curve: dict[tuple[str, int], tuple[float, float]] = {}
    print(f"{'shape':<8} {'N':>8} {'tasks':>8} {'cold':>9} {'cached':>9} {'cold/1k':>8} {'cached/1k':>10}")
    for name, shape in SHAPES.items():
        for size in args.scale:
            cold = cached = float("inf")
            for _ in range(repeat if size < 100_000 else max(1, repeat - 1)):
                c, k, _ = shape.cold_and_cached(size)
                cold, cached = min(cold, c), min(cached, k)
            tasks = shape.tasks(size)
            curve[name, size] = (cold / tasks * 1e6, cached / tasks * 1e6)
        ref = curve.get((name, 1000))
        for size in args.scale:
            cold_us, cached_us = curve[name, size]
            rel = (f"{cold_us / ref[0]:>7.2f}x {cached_us / ref[1]:>9.2f}x" if ref else "")
            print(f"{name:<8} {size:>8,} {shape.tasks(size):>8,} {cold_us:>9.2f} {cached_us:>9.2f} {rel}")

    # 3. memory
    trace_seconds = min(timed(lambda: chain.graph(TRACE_N)) for _ in range(repeat))
    per_node = trace_memory(TRACE_N)
    peak = run_memory(n)
    print(f"\n3. memory: a traced {TRACE_N:,}-task chain retains {per_node:,.0f} B/node (networkx included); "
          f"a cold run of {n:,} peaks at {peak:,.0f} B/task (tracemalloc)")
    print(f"   tracing {TRACE_N:,} calls: {trace_seconds:.3f} s")

    # 4. floors
    rows = {name: cold_rows_per_task(SHAPES[name], n) for name in ("chain", "fan-out")}
    row_us = sqlite_row_floor(n, repeat) * 1e6
    print(f"\n4. floors: the cheapest SQLite insert of a task-run row here: {row_us:.2f} µs/row")
    for name in ("chain", "fan-out"):
        us = at_n[name]
        sql = rows[name] * row_us
        print(f"   {name:<8} {rows[name]:.2f} rows/task x {row_us:.2f} = {sql:.2f} µs of SQL; engine alone "
              f"{us['engine']:.2f}; sum {sql + us['engine']:.2f} vs dask.get {us['dask.get']:.2f} "
              f"(cold {us['cold']:.2f})")

    for name in ("chain", "fan-out"):
        us = at_n[name]
        alone = run_thread_alone(SHAPES[name], n, repeat) * 1e6
        print(f"   {name:<8} the run's thread alone (records built, not written): {alone:.2f}; that over dask.get: "
              f"{alone / us['dask.get']:.2f}x; the writer's share of the cold run: {us['cold'] - alone:.2f}")
        off, handing, calls, each, end, sleep0 = writer_waits(SHAPES[name], n, repeat)
        print(f"   {name:<8} what the cold run's thread waited for, µs/task: {off * 1e6:.2f} off the CPU; of it "
              f"{handing * 1e6:.2f} in {calls} hand-overs to the busy writer ({each * 1e6:.0f} µs "
              f"each: a sleep(0), {sleep0 * 1e6:.0f} µs alone, then the writer's turn with the GIL), "
              f"{end * 1e6:.2f} for the last commit" if calls else
              f"   {name:<8} what the cold run's thread waited for, µs/task: {off * 1e6:.2f} off the CPU, "
              f"{end * 1e6:.2f} for the last commit")
    by_row, at_once = (x * 1e6 for x in beside_busy_thread(BUSY_ROWS, n))
    print(f"   task-run rows written beside a thread running Python: row by row ({BUSY_ROWS}) {by_row:,.1f} µs/row, "
          f"as one statement ({n:,}) {at_once:.2f} µs/row ({by_row / at_once:,.0f}x)")

    parts = {name: tuple(x * 1e6 for x in cached_parts(SHAPES[name], n, repeat)) for name in ("chain", "fan-out")}
    for name in ("chain", "fan-out"):
        us = at_n[name]
        made, text = (x * 1e6 for x in cold_essentials(n, repeat, with_input=name == "chain"))
        least = us["engine"] + parts[name][0] + made + text
        print(f"   {name:<8} cold, the least its records need: engine {us['engine']:.2f} + keys {parts[name][0]:.2f} "
              f"+ value, content key and rows {made:.2f} + their JSON {text:.2f} = {least:.2f} µs "
              f"({least / us['dask.get']:.2f}x dask.get); the general path's Python on top: {us['cold'] - least:.2f}")

    for name in ("chain", "fan-out"):
        us = at_n[name]
        keys, lookup = parts[name]
        floor = us["trace"] + keys + lookup + row_us
        print(f"   {name:<8} cached: trace {us['trace']:.2f} + keys {keys:.2f} + the lookup {lookup:.2f} + one "
              f"row {row_us:.2f} = {floor:.2f} µs ({floor / us['trace']:.2f}x the trace; cached {us['cached']:.2f})")

    print("\ntargets")
    for name in ("chain", "fan-out"):
        us = at_n[name]
        ratio = us["cold"] / us["dask.get"]
        print(f"  {name}: cold {n:,} <= {COLD_TARGET:g}x dask.get: {ratio:.2f}x ({verdict(ratio <= COLD_TARGET)})")
        ratio = us["cached"] / us["trace"]
        print(f"  {name}: cached rerun <= {CACHED_TARGET:g}x the trace: {ratio:.2f}x "
              f"({verdict(ratio <= CACHED_TARGET)})")
    big = max(args.scale)
    if 1000 in args.scale and big > 1000:
        for name in SHAPES:
            ratio = curve[name, big][0] / curve[name, 1000][0]
            print(f"  {name}: cold per task at {big:,} <= {SCALE_TARGET:g}x at 1,000: {ratio:.2f}x "
                  f"({verdict(ratio <= SCALE_TARGET)})")
    print(f"  tracing {TRACE_N:,} calls < {TRACE_SECONDS_TARGET:g} s: {trace_seconds:.3f} s "
          f"({verdict(trace_seconds < TRACE_SECONDS_TARGET)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
