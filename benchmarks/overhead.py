"""Per-task overhead of flowkit against dask.get and plain Python calls.

For N no-op tasks in two shapes:

* chain:   t0 = noop(); t1 = noop(t0); ... (every task waits on the previous one)
* fan-out: N independent noop() calls, then one noop(*all_of_them) reduce (N + 1 tasks)

it times, each as the best of ``--repeat`` runs (gc.collect() before each):

* flowkit trace      ``flow.graph(n)``: the flow body traced into a FlowGraph
* flowkit trace+run  ``flow.run(n)`` with ``store=False``: trace, then the engine with the default
                     LocalExecutor (sequential, in-process)
* +store uncached    the same, recording into a fresh store (keys, artifacts, lineage);
                     informational: the target is stated for the engine alone
* dask.get           the same graph as a plain dict ``{"t1": (noop, "t0"), ...}``
                     built and run by Dask's synchronous scheduler (building the
                     dict is included, as tracing is for flowkit)
* python             the same calls made directly (the floor: no framework)

and reports microseconds per task. The task does nothing, so the numbers are
pure framework overhead. Absolute times depend on the machine and its load;
the ratio flowkit / dask.get on the same machine in the same process is what
the target is stated in, since both sides pay for the same CPU and interpreter.

It then traces a 100,000-task chain (timed without tracemalloc, best of
``--repeat``; then once more under tracemalloc) and reports seconds and bytes retained per node. Exit code
is 0 whatever the numbers: this is a benchmark, not a test.

    python benchmarks/overhead.py [--n 1000 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
import tempfile
import tracemalloc
from collections.abc import Callable
from typing import Any

import dask

import flowkit as fk
from shapes import chain, fanout, noop, verdict

TRACE_N = 100_000
RATIO_TARGET = 2.0
TRACE_SECONDS_TARGET = 2.0
TRACE_BYTES_TARGET = 2048




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


def with_fresh_store(flow: fk.Flow[..., Any]) -> Callable[[int], Any]:
    """Run ``flow`` uncached, recording into a new temporary store each time."""

    def run(n: int) -> Any:
        with tempfile.TemporaryDirectory() as home:
            return flow.with_options(store=home).run(n).result()

    return run


SHAPES: dict[str, dict[str, Callable[[int], Any]]] = {
    "chain": {
        "flowkit trace": chain.graph,
        "flowkit trace+run": lambda n: chain.with_options(store=False).run(n).result(),
        "+store uncached": with_fresh_store(chain),
        "dask.get": dask_chain,
        "python": py_chain,
    },
    "fan-out": {
        "flowkit trace": fanout.graph,
        "flowkit trace+run": lambda n: fanout.with_options(store=False).run(n).result(),
        "+store uncached": with_fresh_store(fanout),
        "dask.get": dask_fanout,
        "python": py_fanout,
    },
}
TASKS = {"chain": lambda n: n, "fan-out": lambda n: n + 1}


def best_seconds(fn: Callable[[int], Any], n: int, repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``fn(n)``, each after a full collection."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return best


def trace_memory(n: int) -> tuple[int, int, int]:
    """Trace a chain of ``n`` under tracemalloc: (node count, bytes retained, peak bytes)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        graph = chain.graph(n)
        graph.nx  # the networkx view is built on first use: count it too
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return len(graph.nodes), current - base, peak - base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="task counts (default: 1000 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per measurement; the best is kept")
    args = parser.parse_args()
    print(f"flowkit {fk.__version__}, dask {dask.__version__}, Python {platform.python_version()} "
          f"on {platform.machine()}; best of {args.repeat}; times in microseconds per task\n")

    columns = ["flowkit trace", "flowkit trace+run", "+store uncached", "dask.get", "python"]
    header = f"{'shape':<8} {'N':>7} " + " ".join(f"{c:>17}" for c in columns) + f" {'flowkit/dask':>13}"
    print(header)
    print("-" * len(header))
    ratios: dict[tuple[str, int], float] = {}
    for shape, runners in SHAPES.items():
        for n in args.n:
            per_task = {c: best_seconds(runners[c], n, args.repeat) / TASKS[shape](n) * 1e6 for c in columns}
            ratio = ratios[shape, n] = per_task["flowkit trace+run"] / per_task["dask.get"]
            print(f"{shape:<8} {n:>7} " + " ".join(f"{per_task[c]:>17.2f}" for c in columns) + f" {ratio:>12.2f}x")

    trace_seconds = best_seconds(chain.graph, TRACE_N, args.repeat)
    nodes, retained, peak = trace_memory(TRACE_N)
    per_node, peak_per_node = retained / nodes, peak / nodes
    print(f"\ntrace of a {TRACE_N:,}-task chain (flow.graph, best of repeats, no tracemalloc): {trace_seconds:.2f} s")
    print(f"memory of the resulting FlowGraph ({nodes:,} nodes, incl. its networkx graph), tracemalloc: "
          f"{per_node:,.0f} B/node retained, {peak_per_node:,.0f} B/node peak during tracing")

    print("\ntargets")
    big = max(args.n)
    for shape in SHAPES:
        ratio = ratios[shape, big]
        print(f"  {shape}: trace+run {big:,} per-task time <= {RATIO_TARGET:g}x dask.get: "
              f"ratio {ratio:.2f} ({verdict(ratio <= RATIO_TARGET)})")
    print(f"  trace of {TRACE_N:,} tasks < {TRACE_SECONDS_TARGET:g} s: {trace_seconds:.2f} s "
          f"({verdict(trace_seconds < TRACE_SECONDS_TARGET)})")
    print(f"  memory per traced node < {TRACE_BYTES_TARGET // 1024} KiB (retained): {per_node:,.0f} B "
          f"({verdict(per_node < TRACE_BYTES_TARGET)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
