"""What the web view costs the server: the runs page and a run page over a big store.

In one process, with starlette's TestClient (no network): a fresh store holds a
real run of a 1,002-node flow (``total(square.map(items(1000)))``: every item
is a task run with its row on the page, the map one box of the graph, a bar
each on the timeline up to its cap) and 10,000 synthetic run rows (written in
one transaction, the way the UI tests fill a store). Each figure is the best of
``--repeat`` requests after one warm-up:

1. the runs page (``/``), the first page of 10,001 runs, and a filtered deep
   page (``/?status=failed&page=20``);
2. the run page of the 1,002-node run (graph, timeline, task table);
3. its JSON (``/api/runs/{id}``), informational.

Target: under 200 ms for each of the pages of 1 and 2. Exit code is 0 whatever
the numbers: this is a benchmark, not a test.

    python benchmarks/ui.py [--runs 10000] [--nodes 1000] [--repeat 5] [--dir .]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

TARGET = 0.200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=".")
    args = parser.parse_args()

    from starlette.testclient import TestClient

    import flowkit as fk
    from flowkit.store import Store
    from flowkit.ui.app import create_app

    @fk.task
    def items(n: int) -> list[int]:
        return list(range(n))

    @fk.task
    def square(x: int) -> int:
        return x * x

    @fk.task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @fk.flow
    def wide(n: int = 1000) -> int:
        return total(square.map(items(n)))

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fk-ui-bench-") as tmp:
        home = os.path.join(tmp, "home")
        os.environ["FLOWKIT_HOME"] = home
        store = Store.open(home)
        started = time.perf_counter()
        big = wide.run(n=args.nodes)  # into $FLOWKIT_HOME, the store above
        took_run = time.perf_counter() - started
        rows = [(f"{i:032x}", f"flow{i % 5}", "completed" if i % 7 else "failed", "{}", 1_000_000.0 + i,
                 1_000_002.0 + i, "cli") for i in range(args.runs)]
        started = time.perf_counter()
        store.db.write(lambda c: c.executemany(
            "INSERT INTO runs (id, flow, status, params, started, ended, trigger) VALUES (?, ?, ?, ?, ?, ?, ?)", rows))
        took_fill = time.perf_counter() - started
        print(f"store: a run of {len(big.task_runs)} task runs ({took_run:.1f} s), {args.runs} run rows "
              f"({took_fill:.2f} s)")

        failures = 0
        with TestClient(create_app(store)) as client:
            def best(url: str) -> float:
                r = client.get(url)
                assert r.status_code == 200, (url, r.status_code)
                times = []
                for _ in range(args.repeat):
                    gc.collect()
                    t = time.perf_counter()
                    r = client.get(url)
                    times.append(time.perf_counter() - t)
                    assert r.status_code == 200
                return min(times)

            for label, url, target in (("runs page, first of 10,001 runs", "/", True),
                                       ("runs page, status=failed page 20", "/?status=failed&page=20", True),
                                       (f"run page, {len(big.task_runs)} task runs", f"/runs/{big.id}", True),
                                       ("run JSON", f"/api/runs/{big.id}", False)):
                t = best(url)
                verdict = ("PASS" if t < TARGET else "FAIL") if target else "info"
                failures += verdict == "FAIL"
                print(f"{label:<40} {t * 1000:8.1f} ms   target < {TARGET * 1000:.0f} ms: {verdict}")
        print("PASS" if not failures else f"FAIL ({failures} over target)")


if __name__ == "__main__":
    main()
