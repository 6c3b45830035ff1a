"""flowkit on Dask against raw Dask on the same cluster: per-task overhead and CPU-bound speed-up.

One process starts one LocalCluster of 2 worker processes x 1 thread
(``fk.DaskExecutor(n_workers=2, threads_per_worker=1)`` as a context manager);
flowkit runs on it through the executor, raw Dask through the executor's ``.client``.

1. N no-op tasks (``--n``) as a chain (each takes the previous result) and a
   fan-out (N independent tasks, then one reduce taking all), in ms per task:
   ``flowkit store=False`` is ``flow.with_options(executor=ex, store=False).run(n)``
   (trace + engine, nothing stored); ``flowkit store`` the same with a fresh
   temporary store folder per repetition: the default path, store, cache and lineage on; ``raw submit`` is one
   ``client.submit(noop, *upstream_futures, pure=False, key=unique)`` per task,
   then ``.result()`` of the last; ``raw client.get`` runs the equivalent dict graph;
   ``raw + 2 events`` is raw submit of tasks that each send the two events flowkit's
   worker function sends (``start`` to the scheduler, ``done`` through it to the
   subscribed client, which the run waits for): the floor of how flowkit learns of a
   task on Dask.
2. four CPU-bound tasks of about ``--cpu-seconds`` each (a pure-Python loop
   calibrated in this process, holding the GIL), store=False, run sequentially
   in-process with ``fk.LocalExecutor()`` and on the 2 workers (ideal ratio 0.5).

Each time is the best of ``--repeat``, each run starting on an empty scheduler
(futures dropped, ``gc.collect()``, wait for the scheduler to forget them).
Targets are ratios of numbers taken in one process on one cluster minutes
apart: the machine's speed and load (2 cores shared by the scheduler, two
workers and this client) weigh on both sides alike, while absolute ms per task
on a shared machine mean little. Exit code is 0 whatever the numbers.

    python benchmarks/dask_overhead.py [--n 10000] [--repeat 2] [--cpu-seconds 1.0]
"""

from __future__ import annotations

import argparse
import gc
import platform
import tempfile
import threading
import time
import timeit
import uuid
from collections.abc import Callable
from typing import Any

import dask
import distributed

import flowkit as fk
from flowkit.executors._dask_client import leave_topics
from shapes import chain, fanout, noop, verdict

RATIO_TARGET = 1.25
STORE_TARGET = 1.1  # the default path (store, cache, lineage on) over raw client.submit (issue 18)
CPU_RATIO_TARGET = 0.60
CPU_TASKS = 4


def spin(iters: int, seed: int) -> int:
    """Pure-Python busy loop: holds the GIL the whole time."""
    total = seed
    for i in range(iters):
        total += i
    return total


spin_task = fk.task(spin)


@fk.flow
def cpu(iters: int) -> list[int]:
    return [spin_task(iters, k) for k in range(CPU_TASKS)]


def raw_chain(client: distributed.Client, n: int) -> None:
    tag = f"raw-chain-{uuid.uuid4().hex}"
    futures = [client.submit(noop, key=f"{tag}-0", pure=False)]
    for i in range(1, n):  # every future is held to the end, as flowkit holds every handle of a run
        futures.append(client.submit(noop, futures[-1], key=f"{tag}-{i}", pure=False))
    futures[-1].result()
    del futures


def raw_fanout(client: distributed.Client, n: int) -> None:
    tag = f"raw-fanout-{uuid.uuid4().hex}"
    futures = [client.submit(noop, key=f"{tag}-{i}", pure=False) for i in range(n)]
    client.submit(noop, *futures, key=f"{tag}-reduce", pure=False).result()
    del futures


def reporting(topic: str, node: str, *deps: Any) -> None:
    """A no-op task that reports as flowkit's worker function does: a ``start`` event to the scheduler (on a
    topic nobody subscribes to) and a ``done`` event on to the client."""
    worker = distributed.get_worker()
    key = worker.get_current_task()
    worker.log_event(f"{topic}-start", ("start", node, key, worker.address))
    started = time.time()
    worker.log_event(topic, ("done", node, key, worker.address, started, time.time(), None))


def raw_reported(client: distributed.Client, n: int, shape: str) -> None:
    """Raw submit of ``reporting`` tasks, done when the last result and every task's ``done`` event are in."""
    tag = f"raw-events-{shape}-{uuid.uuid4().hex}"
    tasks = n if shape == "chain" else n + 1
    done = threading.Event()
    seen = [0]

    def on_event(event: tuple[float, Any]) -> None:  # the client's event loop, as flowkit's handler
        if event[1][0] == "done":
            seen[0] += 1
            if seen[0] == tasks:
                done.set()

    client.subscribe_topic(tag, on_event)
    try:
        if shape == "chain":
            futures = [client.submit(reporting, tag, "0", key=f"{tag}-0", pure=False)]
            for i in range(1, n):
                futures.append(client.submit(reporting, tag, str(i), futures[-1], key=f"{tag}-{i}", pure=False))
            last = futures[-1]
        else:
            futures = [client.submit(reporting, tag, str(i), key=f"{tag}-{i}", pure=False) for i in range(n)]
            last = client.submit(reporting, tag, "reduce", *futures, key=f"{tag}-reduce", pure=False)
        last.result()
        assert done.wait(60), f"{tasks - seen[0]} done events did not arrive"
        del futures, last
    finally:
        leave_topics(client, tag, f"{tag}-start")


def get_chain(client: distributed.Client, n: int) -> None:
    tag = f"get-chain-{uuid.uuid4().hex}"
    dsk: dict[str, Any] = {f"{tag}-0": (noop,), **{f"{tag}-{i}": (noop, f"{tag}-{i - 1}") for i in range(1, n)}}
    client.get(dsk, f"{tag}-{n - 1}")


def get_fanout(client: distributed.Client, n: int) -> None:
    tag = f"get-fanout-{uuid.uuid4().hex}"
    dsk: dict[str, Any] = {f"{tag}-{i}": (noop,) for i in range(n)}
    client.get({**dsk, f"{tag}-reduce": (noop, *dsk)}, f"{tag}-reduce")


def scheduler_tasks(client: distributed.Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


LEAKS: list[str] = []  # runs after which the scheduler still held tasks


def best_seconds(name: str, fn: Callable[[str], Any], repeat: int, client: distributed.Client) -> float:
    """Best of ``repeat`` calls of ``fn(fresh temporary folder)``, each starting on an empty scheduler."""
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fk-dask-bench-") as home:
            gc.collect()
            deadline = time.monotonic() + 60
            while scheduler_tasks(client) and time.monotonic() < deadline:  # releases are asynchronous
                time.sleep(0.05)
            start = time.perf_counter()
            fn(home)
            best = min(best, time.perf_counter() - start)
        gc.collect()
        time.sleep(0.5)
        if left := scheduler_tasks(client):
            LEAKS.append(f"{name}: {left:,} tasks still on the scheduler 0.5 s after the run returned")
    return best


def runners(ex: fk.DaskExecutor, n: int) -> dict[str, dict[str, Callable[[str], Any]]]:
    out, client = {}, ex.client
    for shape, flow, raw, get in (("chain", chain, raw_chain, get_chain), ("fan-out", fanout, raw_fanout, get_fanout)):
        out[shape] = {
            "flowkit store=False": lambda home, f=flow: f.with_options(executor=ex, store=False).run(n).result(),
            "flowkit store": lambda home, f=flow: f.with_options(executor=ex, store=home).run(n).result(),
            "raw submit": lambda home, raw=raw: raw(client, n),
            "raw client.get": lambda home, get=get: get(client, n),
            "raw + 2 events": lambda home, shape=shape: raw_reported(client, n, shape),
        }
    return out


def calibrate(seconds: float, probe: int = 2_000_000) -> int:
    """Loop iterations of ``spin`` taking about ``seconds`` in this process (best of 3)."""
    took = min(timeit.repeat(lambda: spin(probe, 0), number=1, repeat=3))
    return max(1, int(probe * seconds / took))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="no-op tasks per flow (default 10000)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions per measurement; the best is kept")
    parser.add_argument("--cpu-seconds", type=float, default=1.0, help="duration of each CPU-bound task (default 1.0)")
    args = parser.parse_args()
    n = args.n
    print(f"flowkit {fk.__version__}, dask {dask.__version__}, distributed {distributed.__version__}, "
          f"Python {platform.python_version()} on {platform.machine()}; best of {args.repeat}")

    with fk.DaskExecutor(n_workers=2, threads_per_worker=1) as ex:
        client = ex.client
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        print(f"cluster: {client.scheduler.address}, {len(workers)} worker processes x "
              f"{'/'.join(str(w['nthreads']) for w in workers)} thread(s)\n")
        for fns in runners(ex, 50).values():  # imports, first pickles, first connections: not timed
            for fn in fns.values():
                with tempfile.TemporaryDirectory(prefix="fk-dask-bench-") as home:
                    fn(home)

        table = runners(ex, n)
        columns = list(table["chain"])
        print(f"1. no-op tasks, N = {n:,}: ms per task (wall time / tasks)")
        header = (f"  {'shape':<8} {'tasks':>7} " + " ".join(f"{c:>20}" for c in columns)
                  + f" {'store=False/submit':>19} {'store/submit':>13} {'events/submit':>14}")
        print(header + "\n  " + "-" * (len(header) - 2))
        ratios: dict[str, float] = {}
        store_ratios: dict[str, float] = {}
        floors: dict[str, float] = {}
        for shape, fns in table.items():
            tasks = n if shape == "chain" else n + 1
            ms = {c: best_seconds(f"{shape} {c}", fns[c], args.repeat, client) / tasks * 1e3 for c in columns}
            ratio = ratios[shape] = ms["flowkit store=False"] / ms["raw submit"]
            store_ratios[shape] = ms["flowkit store"] / ms["raw submit"]
            floors[shape] = ms["raw + 2 events"] / ms["raw submit"]
            print(f"  {shape:<8} {tasks:>7,} " + " ".join(f"{ms[c]:>20.3f}" for c in columns)
                  + f" {ratio:>18.2f}x {store_ratios[shape]:>12.2f}x {floors[shape]:>13.2f}x", flush=True)
        for leak in LEAKS:
            print(f"  warning: {leak}")

        iters = calibrate(args.cpu_seconds)
        cpu.with_options(executor=ex, store=False).run(1000).result()  # warm-up
        bodies: dict[str, list[float]] = {"local": [], "dask": []}

        def run_cpu(label: str, executor: Any) -> None:
            run = cpu.with_options(executor=executor, store=False).run(iters)
            assert run.result() == [k + iters * (iters - 1) // 2 for k in range(CPU_TASKS)]
            bodies[label] += [tr.ended - tr.started for tr in run.task_runs]

        t_local = best_seconds("cpu local", lambda _: run_cpu("local", fk.LocalExecutor()), args.repeat, client)
        t_dask = best_seconds("cpu dask", lambda _: run_cpu("dask", ex), args.repeat, client)
        cpu_ratio = t_dask / t_local
        print(f"\n2. {CPU_TASKS} CPU-bound tasks of ~{args.cpu_seconds:g} s ({iters:,} pure-Python loop iterations "
              f"each, calibrated in this process), store=False")
        for label, seconds, what in (("local", t_local, "fk.LocalExecutor(), sequential in-process"),
                                     ("dask", t_dask, "DaskExecutor, 2 workers x 1 thread")):
            print(f"  {what:<42} {seconds:6.2f} s wall; task bodies {min(bodies[label]):.2f}-"
                  f"{max(bodies[label]):.2f} s")
        print(f"  dask/local: {cpu_ratio:.2f} (ideal 0.50 on 2 workers)\n")

    print("targets")
    for shape, ratio in ratios.items():
        print(f"  {shape}: flowkit store=False wall time <= {RATIO_TARGET:g}x raw client.submit, N = {n:,}: "
              f"ratio {ratio:.3f} ({verdict(ratio <= RATIO_TARGET)})")
    for shape, ratio in store_ratios.items():
        print(f"  {shape}: flowkit with the defaults (store, cache, lineage) <= {STORE_TARGET:g}x raw client.submit, "
              f"N = {n:,}: ratio {ratio:.3f} ({verdict(ratio <= STORE_TARGET)}; the floor of two events per "
              f"task: {floors[shape]:.3f}x)")
    print(f"  {CPU_TASKS} CPU-bound tasks on 2 single-thread workers < {CPU_RATIO_TARGET:g}x sequential local: "
          f"ratio {cpu_ratio:.3f} ({verdict(cpu_ratio < CPU_RATIO_TARGET)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
