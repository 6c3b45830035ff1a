"""Per-task time with PostgreSQL metadata against SQLite, in the same process run.

For 10,000 no-op tasks (chain, fan-out, and the grid: N/100 groups whose 100
items each are mapped, benchmarks/shapes.py), the default
path (store, cache and lineage on; the default LocalExecutor), it times each as
the best of ``--repeat`` runs:

* a cold run into a fresh store: SQLite (``<home>/flowkit.db``) and PostgreSQL
  (a fresh database on a server this benchmark starts, tests/pg_server.py, with
  PostgreSQL's durable defaults: ``fsync`` and ``synchronous_commit`` on);
* a fully cached rerun of the same flow on each.

Target (issue 16): PostgreSQL at most 1.5x SQLite's per-task time. The ratio is
what counts: both sides run on the same machine in the same minutes. The server
runs on the same 2 cores as the benchmark, so its own CPU time is paid here too.

    python benchmarks/postgres.py [--n 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pg_server  # noqa: E402

import flowkit as fk  # noqa: E402
from shapes import chain, fanout, grid, grid_tasks, verdict  # noqa: E402

TARGET = 1.5


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def floor(server: pg_server.Postgres, n: int, repeat: int) -> None:
    """What a cached rerun's records cost at least on each database: ``n`` cached task-run rows, one transaction.

    SQLite: one ``executemany`` in-process. PostgreSQL: a ``COPY`` (the cheapest way in), and
    flowkit's own upsert of the same rows (one statement over arrays).
    """
    import sqlite3

    import psycopg

    from flowkit.store import open_store
    from flowkit.store.protocols import Batch

    columns = "run_id, node, seq, task, status, cache_key, artifact_id, source, attempts"
    rows = [(f"n{i}", i, "noop", "cached", f"{i:032x}", f"{i:032x}", f"r0/n{i}", 0) for i in range(n)]
    best = {"sqlite executemany": float("inf"), "postgresql COPY": float("inf"),
            "postgresql flowkit flush": float("inf")}
    with tempfile.TemporaryDirectory() as home:
        lite = open_store(Path(home))
        url = server.database()
        pg = open_store(url)
        try:
            raw = sqlite3.connect(Path(home) / "flowkit.db")
            with psycopg.connect(url) as conn:
                for r in range(repeat):
                    run = f"floor{r}"
                    with raw:
                        t = time.perf_counter()
                        raw.executemany(f"INSERT INTO task_runs ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                        [(run, *row) for row in rows])
                    best["sqlite executemany"] = min(best["sqlite executemany"], time.perf_counter() - t)
                    t = time.perf_counter()
                    with conn.cursor().copy(f"COPY task_runs ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row((run, *row))
                    conn.commit()
                    best["postgresql COPY"] = min(best["postgresql COPY"], time.perf_counter() - t)
                    pg.start_run({"id": run + "f", "flow": "floor", "status": "running", "started": time.time()})
                    batch = Batch()
                    batch.cached.extend((run + "f", node, seq, task, key, art, src)
                                        for node, seq, task, _, key, art, src, _ in rows)
                    t = time.perf_counter()
                    pg.flush(batch)
                    best["postgresql flowkit flush"] = min(best["postgresql flowkit flush"], time.perf_counter() - t)
            raw.close()
        finally:
            pg.close()
            lite.close()
            server.drop(url)
    print(f"floor: {n} cached task-run rows in one transaction, µs per row (best of {repeat}):")
    for what, seconds in best.items():
        print(f"  {what:26} {seconds / n * 1e6:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = pg_server.start(durable=True)
    try:
        print(f"{args.n} no-op tasks, best of {args.repeat}; PostgreSQL: {server.version}, durable defaults")
        print(f"{'shape':8} {'run':8} {'SQLite µs/task':>15} {'PostgreSQL µs/task':>19} {'ratio':>6}  target")
        ok = True
        outer = max(1, args.n // 100)
        for name, flow, params, tasks in (("chain", chain, {"n": args.n}, args.n),
                                          ("fan-out", fanout, {"n": args.n}, args.n + 1),
                                          ("grid", grid, {"outer": outer, "inner": 100}, grid_tasks(outer, 100))):
            best: dict[tuple[str, str], float] = {}
            for _ in range(args.repeat):
                for backend in ("sqlite", "postgresql"):
                    with tempfile.TemporaryDirectory() as home:
                        url = server.database() if backend == "postgresql" else None
                        store = fk.Store(home, db_url=url)
                        cold = timed(lambda: fk.run_flow(flow, params, store=store))
                        cached = timed(lambda: fk.run_flow(flow, params, store=store))
                        assert fk.run_flow(flow, params, store=store).counts() == {"cached": tasks}
                        store.db.close()
                        if url is not None:
                            server.drop(url)
                    for run, seconds in (("cold", cold), ("cached", cached)):
                        key = (backend, run)
                        best[key] = min(best.get(key, float("inf")), seconds)
            for run in ("cold", "cached"):
                lite, pg = (best[(b, run)] / tasks * 1e6 for b in ("sqlite", "postgresql"))
                ratio = pg / lite
                ok &= ratio <= TARGET
                print(f"{name:8} {run:8} {lite:15.1f} {pg:19.1f} {ratio:6.2f}  <= {TARGET}: {verdict(ratio <= TARGET)}")
        print(f"overall: {verdict(ok)}")
        floor(server, args.n, args.repeat)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
