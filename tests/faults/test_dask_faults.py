"""Dask workers that die: real LocalCluster processes on 127.0.0.1, killed with SIGKILL.

1. random kills of worker processes (a nanny restarts them) during a flow of 201 small tasks:
   the run ends, nothing committed is lost, torn or duplicated, two seeds give the same value,
   and a rerun is fully cached;
2. a task that kills its worker every time fails naming itself, its attempts and the workers
   that died, while independent branches finish and are committed; a death is blamed on the
   task running, not on those queued beside it;
3. no worker ever, or every worker gone for good: the run ends within ``no_workers_timeout``
   with a ``DaskClusterError`` naming the scheduler, never hangs;
4. a result lost with its worker after it finished is waited for, not reported as a timeout
   of a task that has none; with no worker left it is a cluster error;
5. the attempts a record counts are the ones its error names.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import dask
import distributed
import pytest

import flowkit as fk
from flowkit.events import TaskFinished
from flowkit.executors.dask import DaskClusterError, KilledWorkersError
from faults import dask_chaos

pytestmark = pytest.mark.dask

ADDRESS = re.compile(r"tcp://127\.0\.0\.1:\d+")


def _cluster(n_workers: int, **kwargs) -> distributed.LocalCluster:
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=":0", **kwargs)


# --- 1. random kills --------------------------------------------------------------------------------

def test_random_worker_kills_lose_tear_and_duplicate_nothing_and_a_rerun_is_cached(tmp_path):
    values, killed = [], 0
    with fk.DaskExecutor(n_workers=2, threads_per_worker=1, no_workers_timeout=60) as executor:
        for seed in (1, 2):
            home = str(tmp_path / f"home-{seed}")
            run, kills, seconds = dask_chaos.run_under_kills(executor, home, seed, kills=5)
            assert run.status == "completed", run.error
            assert seconds < 60
            audit = dask_chaos.audit(home, run)
            tasks = len(dask_chaos.expected())
            assert audit == {**audit, "task_runs": tasks, "duplicated_task_runs": 0, "lost": 0, "wrong_or_torn": 0,
                             "cache_entries": tasks, "duplicated_entries": 0, "entries_not_of_the_run": 0}
            for tr in run.task_runs:  # 5. the record's attempts are its history, lost ones named
                assert tr.attempts == len(tr.history)
                assert all("was lost during the attempt" in a.error for a in tr.history[:-1])
            values.append(run.value)
            killed += len(kills)
            rerun = dask_chaos.chaos.with_options(executor=executor, store=home).run()
            assert rerun.value == run.value
            assert not [tr.node for tr in rerun.task_runs if tr.status not in ("cached", "unneeded")]
            executor.client.wait_for_workers(2, timeout=60)
    assert values == [dask_chaos.expected()["total"]] * 2
    assert killed >= 6  # the kills did happen, during the runs


# --- 2. a task that kills its worker every time -----------------------------------------------------

def test_a_task_killing_every_worker_is_named_with_its_attempts_and_workers_and_the_rest_is_committed(tmp_path):
    cured = tmp_path / "cured"

    @fk.task
    def poison() -> int:
        if not cured.exists():
            time.sleep(0.2)  # it works a little, then takes its worker down (as running out of memory does)
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    @fk.task
    def base() -> int:
        return 0

    @fk.task
    def steady(i: int, b: int) -> int:
        time.sleep(0.1)
        return i + b

    @fk.flow
    def mixed():
        b = base()  # the steady tasks wait for it, then are handed to the workers at once: bystanders
        return poison(), [steady(i, b) for i in range(8)]

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), _cluster(2) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        flow = mixed.with_options(executor=fk.DaskExecutor(client=client))
        run = flow.run()
        assert run.status == "failed"
        tr = run.task_run("poison")
        assert tr.status == "failed" and isinstance(tr.exception, KilledWorkersError)
        workers = ADDRESS.findall(tr.error)
        assert tr.attempts == 2 == len(tr.history) == len(workers)  # allowed-failures + 1
        assert f"task 'poison' kept killing Dask workers: {tr.attempts} attempts died" in tr.error
        assert [w for a in tr.history[:-1] for w in ADDRESS.findall(a.error)] == workers[:-1]
        assert tr.worker == workers[-1]
        stored = {t.node: t for t in flow.store().task_runs(run.id)}["poison"]
        assert stored.attempts == tr.attempts and stored.error == tr.error
        # The tasks beside it were not blamed: every steady task finished.
        steadies = [t for t in run.task_runs if t.name == "steady"]
        assert len(steadies) == 8 and {t.status for t in steadies} == {"completed"}
        keys = {e["key"] for e in flow.store().cache_entries()}
        assert all(t.cache_key in keys for t in run.task_runs if t.name == "steady")
        cured.write_text("yes")
        client.wait_for_workers(2, timeout=60)
        rerun = flow.run()
    assert rerun.value == (0, list(range(8)))
    assert rerun.task_run("poison").status == "completed"
    assert {t.status for t in rerun.task_runs if t.name == "steady"} == {"cached"}


def test_a_death_is_blamed_on_the_task_running_not_on_those_queued_beside_it(tmp_path):
    """Dask counts a death against every task the worker held; only the running one should pay."""
    started = tmp_path / "started"

    @fk.task
    def base() -> int:
        return 1

    @fk.task
    def hold(b: int) -> int:
        with open(started, "a") as f:
            f.write("x")
        time.sleep(30)  # killed long before
        return b

    @fk.task
    def queued(i: int, b: int) -> int:
        return i + b

    @fk.flow
    def crowded():
        b = base()
        return hold(b), [queued(i, b) for i in range(4)]  # one thread: the queued ones wait behind hold

    def kill_when_hold_runs(cluster, times: int) -> None:
        for n in range(1, times + 1):
            deadline = time.monotonic() + 60
            while (not started.exists() or len(started.read_text()) < n) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # hold's start has reached the scheduler
            (nanny,) = cluster.workers.values()
            os.kill(nanny.pid, signal.SIGKILL)

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), _cluster(1) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        killer = threading.Thread(target=kill_when_hold_runs, args=(cluster, 2), daemon=True)
        killer.start()
        run = crowded.with_options(executor=fk.DaskExecutor(client=client)).run()
        killer.join()
    tr = run.task_run("hold")
    assert tr.status == "failed" and isinstance(tr.exception, KilledWorkersError) and tr.attempts == 2
    for t in run.task_runs:
        if t.name == "queued":  # held by both dead workers, blamed for neither
            assert t.status == "completed", t.error
            assert t.attempts == len(t.history) and all("was lost" in a.error for a in t.history[:-1])
    assert any(t.attempts > 1 for t in run.task_runs if t.name == "queued")


# --- 3. no worker, or none left ---------------------------------------------------------------------

def test_a_cluster_without_workers_fails_the_run_within_the_timeout_naming_the_scheduler(tmp_path):
    with _cluster(0) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        start = time.monotonic()
        run = dask_chaos.chaos.with_options(
            executor=fk.DaskExecutor(client=client, no_workers_timeout=1.0), store=str(tmp_path / "h")).run(n=3)
        seconds = time.monotonic() - start
    assert run.status == "failed"
    assert seconds < 15
    failed = [tr for tr in run.task_runs if tr.status == "failed"]
    assert failed and all(isinstance(tr.exception, DaskClusterError) for tr in failed)
    assert f"the Dask cluster at {cluster.scheduler_address} has had no worker for 1 s" in failed[0].error
    assert "no_workers_timeout" in str(run.error)


def test_no_workers_timeout_must_be_positive():
    with pytest.raises(ValueError, match=r"DaskExecutor\(no_workers_timeout=0\)"):
        fk.DaskExecutor(no_workers_timeout=0)


class _Worker:
    """A `dask worker` process with no nanny (two threads): once killed, it is gone for good."""

    def __init__(self, address: str, tmp_path) -> None:
        self.log = open(tmp_path / "worker.log", "w")
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "dask"), "worker", address, "--no-nanny", "--nthreads",
             "2", "--host", "127.0.0.1", "--no-dashboard"], stdout=self.log, stderr=subprocess.STDOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


class _KillWhenDone:
    """A run listener: once ``gate`` is recorded and ``slow``'s result exists, kill the worker holding it.

    It runs on the thread that drives the run, so the run reads ``slow``'s completion only
    after the result is gone: the case where a finished result is lost with its worker.
    """

    def __init__(self, client: distributed.Client, kill) -> None:
        self.client = client
        self.kill = kill
        self.done = False

    def on_event(self, event) -> None:
        if self.done or not isinstance(event, TaskFinished) or event.task_run.node != "gate":
            return
        self.done = True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = [k for k, f in self.client.futures.items() if str(k).startswith("slow-") and f.status == "finished"]
            if keys:
                break
            time.sleep(0.02)
        assert keys, "slow never finished"
        for worker in self.client.who_has()[keys[0]]:  # a copy may have gone to the other worker already
            self.kill(worker)
        state = self.client.futures[keys[0]]
        while state.status == "finished" and time.monotonic() < deadline:
            time.sleep(0.02)  # until the client hears the result was lost


@fk.task
def slow() -> int:
    time.sleep(0.5)
    return 21


@fk.task
def gate() -> int:
    return 1


@fk.task
def double(x: int, y: int) -> int:
    return 2 * x * y


@fk.flow
def lose_a_result() -> int:
    return double(slow(), gate())


def test_a_result_lost_after_it_finished_is_computed_again_not_reported_as_a_timeout(tmp_path):
    with _cluster(2) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        def kill(address: str) -> None:
            pid = client.run(os.getpid, workers=[address])[address]  # the worker process itself, by its address
            os.kill(pid, signal.SIGKILL)  # the nanny starts a new worker: Dask computes `slow` again

        run = fk.run_flow(lose_a_result.with_options(executor=fk.DaskExecutor(client=client)),
                          listeners=[_KillWhenDone(client, kill)])
    # Before, this run waited 30 s for a reply that could not come, then failed with a TimeoutError.
    assert run.status == "completed", run.error
    assert run.value == 42
    assert run.task_run("slow").status == "completed"


def test_a_result_lost_with_the_last_worker_is_a_cluster_error_and_the_rest_is_kept(tmp_path):
    with _cluster(0) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        worker = _Worker(cluster.scheduler_address, tmp_path)
        try:
            client.wait_for_workers(1, timeout=60)
            flow = lose_a_result.with_options(executor=fk.DaskExecutor(client=client, no_workers_timeout=1.0))
            start = time.monotonic()
            run = fk.run_flow(flow, listeners=[_KillWhenDone(client, lambda address: worker.proc.kill())])
            seconds = time.monotonic() - start
        finally:
            worker.close()
    assert run.status == "failed" and seconds < 20
    tr = run.task_run("slow")
    assert tr.status == "failed" and isinstance(tr.exception, DaskClusterError)
    assert not isinstance(tr.exception, TimeoutError) and "timed out" not in tr.error
    assert cluster.scheduler_address in tr.error and "no worker" in tr.error
    assert run.task_run("gate").status == "completed"
    rerun = lose_a_result.with_options(executor=fk.LocalExecutor()).run()
    assert rerun.value == 42 and rerun.task_run("gate").status == "cached"

