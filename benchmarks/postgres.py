"""Per-task time with PostgreSQL metadata against SQLite, in the same process run.

For 10,000 no-op tasks (chain and fan-out, benchmarks/shapes.py), the default
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
from shapes import chain, fanout, verdict  # noqa: E402

TARGET = 1.5


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
        for name, flow in (("chain", chain), ("fan-out", fanout)):
            best: dict[tuple[str, str], float] = {}
            for _ in range(args.repeat):
                for backend in ("sqlite", "postgresql"):
                    with tempfile.TemporaryDirectory() as home:
                        url = server.database() if backend == "postgresql" else None
                        store = fk.Store(home, db_url=url)
                        cold = timed(lambda: fk.run_flow(flow, {"n": args.n}, store=store))
                        cached = timed(lambda: fk.run_flow(flow, {"n": args.n}, store=store))
                        assert fk.run_flow(flow, {"n": 2}, store=store).status == "completed"
                        store.db.close()
                        if url is not None:
                            server.drop(url)
                    for run, seconds in (("cold", cold), ("cached", cached)):
                        key = (backend, run)
                        best[key] = min(best.get(key, float("inf")), seconds)
            for run in ("cold", "cached"):
                lite, pg = (best[(b, run)] / args.n * 1e6 for b in ("sqlite", "postgresql"))
                ratio = pg / lite
                ok &= ratio <= TARGET
                print(f"{name:8} {run:8} {lite:15.1f} {pg:19.1f} {ratio:6.2f}  <= {TARGET}: {verdict(ratio <= TARGET)}")
        print(f"overall: {verdict(ok)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
