"""A flow of 201 small tasks run on a local Dask cluster while its worker processes are SIGKILLed.

``python tests/faults/dask_chaos.py SEEDS KILLS`` runs it once per seed (0 .. SEEDS-1), each on a
fresh store, with up to KILLS kills a run, and prints per run: its status, value, kills,
time, and what the store holds (task runs, cache entries, values that load and are right).
``tests/faults/test_dask_faults.py`` runs two seeds of it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any

from distributed.core import Status

import flowkit as fk

#: Leaves (and pairs) in the flow: ``N`` leaves, ``N`` pairs and one total.
N = 100


@fk.task
def leaf(i: int) -> int:
    time.sleep(0.02)
    return i * i


@fk.task
def pair(a: int, b: int) -> int:
    time.sleep(0.02)
    return a + b


@fk.task
def total(xs: list[int]) -> int:
    return sum(xs)


@fk.flow
def chaos(n: int = N) -> int:
    leaves = [leaf(i) for i in range(n)]
    return total([pair(leaves[i], leaves[(i + 1) % n]) for i in range(n)])


def expected(n: int = N) -> dict[str, Any]:
    """The value of every task node of ``chaos(n)``, by node id, as a clean run computes them."""
    values: dict[str, Any] = {}
    for node_id, node in chaos.graph(n).nodes.items():  # in the order they were traced: inputs first
        inputs = [values[d] for d in node.deps]
        if node.task is leaf:
            values[node_id] = node.args[0] ** 2
        elif node.task is pair:
            values[node_id] = sum(inputs)
        elif node.task is total:
            values[node_id] = sum(inputs)
    return values


class Killer(threading.Thread):
    """SIGKILLs a random worker process of a ``LocalCluster`` every so often; its nanny restarts it.

    Only workers that are up (registered with the scheduler) are killed; the gaps and the
    choices come from ``random.Random(seed)``.
    """

    def __init__(self, cluster: Any, seed: int, kills: int, gap: tuple[float, float] = (0.2, 0.8)) -> None:
        super().__init__(daemon=True, name=f"killer-{seed}")
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.kills = kills
        self.gap = gap
        self.stopped = threading.Event()
        self.killed: list[str] = []

    def run(self) -> None:
        seen: dict[str, float] = {}  # worker -> when it was first seen up; those up before the run count as old
        first = True
        while len(self.killed) < self.kills and not self.stopped.wait(self.rng.uniform(*self.gap)):
            now = time.monotonic()
            # A worker killed while its nanny is still starting it can leave that nanny stuck for good
            # (a limitation of distributed's Nanny): kill only workers fully up for a second.
            registered = set(self.cluster.scheduler.workers)
            up = []
            for nanny in list(self.cluster.workers.values()):
                process = nanny.process
                if process is None or process.status != Status.running or nanny.pid is None:
                    continue
                address = process.worker_address
                if address in registered:
                    up.append((address, nanny.pid))
                    seen.setdefault(address, now - 1.0 if first else now)
            first = False
            live = sorted((address, pid) for address, pid in up if now - seen[address] >= 1.0)
            if not live:
                continue
            address, pid = self.rng.choice(live)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.append(address)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def run_under_kills(executor: fk.DaskExecutor, home: str, seed: int, kills: int) -> tuple[fk.Run, list[str], float]:
    """Run ``chaos`` on an open executor's local cluster with a killer going: the run, the workers killed, seconds."""
    flow = chaos.with_options(executor=executor, store=home)
    killer = Killer(executor.cluster, seed, kills)
    start = time.monotonic()
    killer.start()
    try:
        run = flow.run()
    finally:
        killer.stop()
    return run, killer.killed, time.monotonic() - start


def audit(home: str, run: fk.Run) -> dict[str, int]:
    """What the store holds for ``run``: counts of records, and of values missing, wrong, duplicated."""
    store = chaos.with_options(store=home).store()
    want = expected()
    records = store.task_runs(run.id)
    nodes = [tr.node for tr in records]
    entries = store.cache_entries()
    keys = [e["key"] for e in entries]
    wrong = 0
    for tr in records:
        if tr.status != "completed" or tr.artifact_id is None or store.load(tr.artifact_id) != want[tr.node]:
            wrong += 1
    by_key = {tr.cache_key: tr.artifact_id for tr in records}
    return {
        "task_runs": len(records),
        "duplicated_task_runs": len(nodes) - len(set(nodes)),
        "lost": len(set(want) - set(nodes)) + sum(1 for tr in records if tr.status != "completed"),
        "wrong_or_torn": wrong,
        "cache_entries": len(entries),
        "duplicated_entries": len(keys) - len(set(keys)),
        "entries_not_of_the_run": sum(1 for e in entries if by_key.get(e["key"]) != e["artifact_id"]),
        "retried": sum(1 for tr in records if tr.attempts > 1),
    }


if __name__ == "__main__":
    import tempfile

    seeds, kills = int(sys.argv[1]), int(sys.argv[2])
    with fk.DaskExecutor(n_workers=2, threads_per_worker=1, no_workers_timeout=60) as executor:
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as home:
                run, killed, seconds = run_under_kills(executor, home, seed, kills)
                report = {"seed": seed, "status": run.status, "value": run.value, "kills": len(killed),
                          "seconds": round(seconds, 1), **audit(home, run)}
                if run.status != "completed":
                    report["error"] = str(run.error)
                rerun = chaos.with_options(executor=executor, store=home).run()
                report["rerun_computed"] = sum(1 for tr in rerun.task_runs if tr.status == "completed")
                print(json.dumps(report), flush=True)
            executor.client.wait_for_workers(2, timeout=60)
