"""The Dask executor on real clusters on 127.0.0.1: a LocalCluster with processes, and
`dask scheduler` + `dask worker --nanny` subprocesses for the address case and worker faults."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import flowkit as fk
from conftest import add, chain_of, diamond, failing, fan, inc, linear, one
from flowkit.executors.dask import DaskConnectionError
from flowkit.executors._dask_client import client_state
from flowkit.executors._dask_deaths import LOST_TOPIC

pytestmark = pytest.mark.dask

CLIENT_LOADS: list[str] = []


class Heavy:
    """A value that notes when it is unpickled in *this* (the client's) process."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return (_rebuild_heavy, (self.name, os.getpid()))


def _rebuild_heavy(name: str, pid: int) -> Heavy:
    if os.getpid() == CLIENT_PID:
        CLIENT_LOADS.append(name)
    return Heavy(name)


CLIENT_PID = os.getpid()


@pytest.fixture(scope="module")
def dask_executor():
    with fk.DaskExecutor(n_workers=2, threads_per_worker=1, processes=True) as executor:
        yield executor


def test_shapes_compute_the_same_values_on_a_local_cluster(dask_executor):
    for flow, params, value in [(linear, {"n": 3}, 4), (diamond, {}, 4), (fan, {"n": 5}, 15)]:
        run = flow.with_options(executor=dask_executor).run(**params)
        assert run.status == "completed" and run.result() == value
        assert all(tr.worker.startswith("tcp://127.0.0.1:") for tr in run.task_runs if tr.status == "completed")


def test_failures_skip_downstream_and_independent_branches_finish_on_dask(dask_executor):
    run = failing.with_options(executor=dask_executor).run()
    assert {tr.node: tr.status for tr in run.task_runs} == {"one": "completed", "boom": "failed",
                                                           "inc": "completed", "inc#2": "skipped",
                                                           "add": "skipped"}
    with pytest.raises(fk.FlowRunError, match="task 'boom'") as info:
        run.result()
    assert isinstance(info.value.__cause__, ValueError)


@fk.task
def heavy(name: str) -> Heavy:
    return Heavy(name)


@fk.task
def names(a: Heavy, b: Heavy) -> str:
    return a.name + b.name


def test_intermediate_values_stay_on_the_workers(dask_executor):
    @fk.flow(store=False)
    def f():
        return names(heavy("a"), heavy("b"))

    CLIENT_LOADS.clear()
    assert f.with_options(executor=dask_executor)() == "ab"
    assert CLIENT_LOADS == []  # the Heavy values moved worker to worker, never through the client


def test_dynamic_map_and_static_map_on_dask(dask_executor):
    @fk.task
    def upto(n):
        return list(range(n))

    @fk.task
    def total(xs):
        return sum(xs)

    @fk.flow
    def f(n: int):
        return total(inc.map(upto(n))), inc.map([10, 20])

    assert f.with_options(executor=dask_executor)(4) == (10, [11, 21])


def test_one_cache_is_shared_by_the_local_and_the_dask_executor(dask_executor, home):
    first = fan.run(4)
    assert first.status == "completed"
    on_dask = fan.with_options(executor=dask_executor).run(4)
    assert {tr.status for tr in on_dask.task_runs} == {"cached"}
    fresh = fan.with_options(executor=dask_executor).run(6)
    assert fresh.counts() == {"cached": 4, "completed": 3}
    # the workers wrote the new artifacts into the store, the client recorded them
    store = fk.Store.open()
    for tr in fresh.task_runs:
        assert store.artifact(tr.artifact_id) is not None
    assert fan.run(6).counts() == {"cached": 7}


def test_big_artifacts_are_written_by_workers(dask_executor, home):
    import numpy as np

    @fk.task
    def big(n):
        return np.ones(n)

    @fk.flow
    def f():
        return big(100_000)

    run = f.with_options(executor=dask_executor).run()
    record = fk.Store.open().artifact(run.artifact_id("big"))
    assert record["serializer"] == "npy" and record["size"] > 800_000
    assert os.path.exists(record["uri"])
    assert f.run().result().sum() == 100_000


def test_retries_and_timeouts_behave_the_same_on_dask(dask_executor, tmp_path):
    marker = tmp_path / "attempts"

    @fk.task(retries=3, retry_delay=2, backoff=3)
    def flaky():
        with open(marker, "a") as fh:
            fh.write("x")
        if len(marker.read_text()) < 3:
            raise ConnectionError("try again")
        return "ok"

    @fk.task(timeout=0.5)
    def hang():
        time.sleep(20)

    clock = fk.ManualClock()

    @fk.flow(clock=clock, executor=dask_executor)
    def f():
        return flaky(), hang()

    run = f.run()
    assert run.task_run("flaky").status == "completed" and run.task_run("flaky").attempts == 3
    assert clock.sleeps == [2, 6]
    tr = run.task_run("hang")
    assert tr.status == "failed" and tr.error.startswith("TaskTimeoutError: task 'hang' timed out after 0.5s")


def test_tags_name_the_dask_keys_and_missing_resources_fail_clearly(dask_executor):
    @fk.task(tags=("ml", "nightly"))
    def whoami():
        from distributed import get_worker

        return get_worker().get_current_task()

    @fk.task(resources={"GPU": 1})
    def needs_gpu():
        return 1

    @fk.flow(executor=dask_executor, store=False)
    def f():
        return whoami(), needs_gpu()

    run = f.run()
    assert run.status == "failed" and run.task_run("whoami").status == "completed"
    assert run.task_run("needs_gpu").error.startswith(
        "RuntimeError: task 'needs_gpu' needs resources {'GPU': 1}, but no worker of the cluster offers them")

    @fk.flow(executor=dask_executor, store=False)
    def g():
        return whoami()

    assert g().startswith("whoami(ml,nightly)-")


def test_resources_map_to_dask_worker_resources():
    @fk.task(resources={"GPU": 1})
    def on_gpu():
        from distributed import get_worker

        return get_worker().state.total_resources

    @fk.flow(store=False)
    def f():
        return on_gpu()

    with fk.DaskExecutor(n_workers=1, threads_per_worker=1, processes=False, resources={"GPU": 2}) as executor:
        assert f.with_options(executor=executor)() == {"GPU": 2}


def test_flows_from_a_module_the_workers_cannot_import_run_on_the_cluster(dask_executor, tmp_path, monkeypatch):
    (tmp_path / "userpipe.py").write_text(textwrap.dedent("""
        import flowkit as fk

        def helper(x):
            return x * 3

        @fk.task
        def triple(x):
            return helper(x)

        @fk.flow
        def pipe(n: int):
            return triple(n)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import userpipe

    assert userpipe.pipe.with_options(executor=dask_executor)(5) == 15



def test_what_was_shipped_is_kept_per_client_and_a_new_client_ships_again(tmp_path, monkeypatch):
    from flowkit.executors.dask import _CLIENTS

    (tmp_path / "otherpipe.py").write_text(textwrap.dedent("""
        import flowkit as fk

        @fk.task
        def double(x):
            return x * 2

        @fk.flow
        def pipe(n: int):
            return double(n)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import otherpipe

    states = []
    for _ in range(2):
        with fk.DaskExecutor(n_workers=1, threads_per_worker=1, processes=False) as executor:
            assert otherpipe.pipe.with_options(executor=executor).run(4, refresh=True).result() == 8
            state = _CLIENTS[executor.client]
            assert "otherpipe" in state.modules and otherpipe.double.fn in state.fns
            states.append(state)
    assert states[0] is not states[1]

# --- a scheduler and workers started as processes -------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`dask scheduler` and `dask worker --nanny` subprocesses on 127.0.0.1, always cleaned up."""

    def __init__(self, tmp_path, workers: int = 2, env: dict | None = None) -> None:
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        # The test modules (conftest's tasks) must be importable there, as an installed project would be.
        tests = os.path.dirname(os.path.abspath(__file__))
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
                    **(env or {})}
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []
        self.scheduler = self._start(["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--dashboard-address", ":0"])
        self.workers = [self.start_worker() for _ in range(workers)]
        self.wait_for_workers(workers)

    def _start(self, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp_path / f"dask-{len(self.procs)}.log", "w")
        proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "dask"), *args],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_worker(self) -> subprocess.Popen:
        return self._start(["worker", self.address, "--nanny", "--nthreads", "1", "--host", "127.0.0.1",
                            "--no-dashboard", "--death-timeout", "20"])

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout)

    def kill_scheduler(self) -> None:
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"})
    try:
        yield c
    finally:
        c.close()


def test_connect_to_a_scheduler_by_address_and_leave_it_running(cluster, tmp_path):
    executor = fk.DaskExecutor(address=cluster.address)
    assert fan.with_options(executor=executor)(3) == 6
    assert cluster.scheduler.poll() is None  # still running
    assert linear.with_options(executor=executor)(2) == 3


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"address": "tcp://127.0.0.1:1", "n_workers": 2}, "address=...): n_workers would be ignored"),
    ({"address": "tcp://127.0.0.1:1", "processes": False, "memory_limit": "1GB"},
     "processes, memory_limit would be ignored"),
    ({"client": object(), "threads_per_worker": 2}, "client=...): threads_per_worker would be ignored"),
    ({"client": object(), "timeout": 3}, "timeout would be ignored"),
    ({"address": "tcp://127.0.0.1:1", "client": object()}, "give address= or client=, not both"),
])
def test_local_cluster_options_beside_an_existing_cluster_are_refused(kwargs, words):
    with pytest.raises(ValueError) as info:
        fk.DaskExecutor(**kwargs)
    assert words in str(info.value)


def test_unreachable_address_is_a_clear_error():
    executor = fk.DaskExecutor(address=f"tcp://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(DaskConnectionError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:"):
        linear.with_options(executor=executor).run(1)


def test_a_killed_worker_does_not_fail_the_run(cluster, tmp_path):
    flag = tmp_path / "killed-once"

    @fk.task
    def fragile(x):
        if not flag.exists():
            flag.write_text("done")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task
        return x * 10

    @fk.flow(executor=fk.DaskExecutor(address=cluster.address))
    def f():
        return add(fragile(1), one())

    run = f.run()
    assert run.result() == 11
    tr = run.task_run("fragile")
    assert tr.status == "completed" and tr.attempts == 2
    assert "was lost during the attempt" in tr.history[0].error


def test_a_task_that_keeps_killing_workers_fails_naming_it_while_other_branches_finish(cluster, tmp_path):
    @fk.task
    def poison():
        os.kill(os.getpid(), signal.SIGKILL)

    @fk.flow(executor=fk.DaskExecutor(address=cluster.address))
    def f():
        return poison(), inc(1)

    run = f.run()
    assert run.status == "failed"
    tr = run.task_run("poison")
    assert tr.status == "failed" and "kept killing Dask workers" in tr.error and "tcp://127.0.0.1:" in tr.error
    assert tr.attempts >= 2
    assert run.task_run("inc").status == "completed"


def test_a_lost_scheduler_fails_the_run_clearly_and_a_rerun_resumes(tmp_path, home):
    cluster = Cluster(tmp_path)
    try:
        flag, release = tmp_path / "started", tmp_path / "release"

        @fk.task
        def slow(x):
            flag.write_text("yes")
            deadline = time.time() + 30
            while not release.exists() and time.time() < deadline:
                time.sleep(0.05)
            return x

        @fk.flow
        def f():
            return inc(slow(one()))  # slow starts once one is done and recorded

        import threading

        def kill_when_started():
            deadline = time.monotonic() + 60
            while not flag.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            cluster.kill_scheduler()

        killer = threading.Thread(target=kill_when_started)
        killer.start()
        start = time.monotonic()
        run = f.with_options(executor=fk.DaskExecutor(address=cluster.address)).run()
        killer.join()
        assert run.status == "failed"
        assert "Dask scheduler" in str(run.error)
        assert run.task_run("one").status == "completed" and run.task_run("slow").status == "failed"
        assert time.monotonic() - start < 60
    finally:
        cluster.close()
    release.write_text("go")
    rerun = f.with_options(store=None).run()  # locally now: `one` comes from the cache
    assert rerun.task_run("one").status == "cached"


def test_workers_write_artifacts_to_an_fsspec_url(dask_executor, tmp_path):
    import numpy as np

    shared = f"file://{tmp_path}/shared-artifacts"
    store = fk.Store(tmp_path / "meta", artifacts=shared)

    @fk.task
    def big(n):
        return np.arange(n)

    @fk.flow(store=store, executor=dask_executor)
    def f():
        return big(50_000)

    run = f.run()
    assert run.result().sum() == sum(range(50_000))
    assert store.artifact(run.artifact_id("big"))["uri"].startswith(shared)
    assert list((tmp_path / "shared-artifacts").rglob("*"))
    assert f.run().task_run("big").status == "cached"


def test_a_retried_input_and_its_dependents_on_dask(dask_executor, tmp_path):
    marker = tmp_path / "tries"

    @fk.task(retries=2)
    def shaky():
        with open(marker, "a") as fh:
            fh.write("x")
        if len(marker.read_text()) < 2:
            raise ConnectionError("once")
        return 5

    @fk.flow(executor=dask_executor, store=False, clock=fk.ManualClock())
    def f():
        return add(inc(shaky()), one())

    run = f.run()
    assert run.result() == 7 and run.task_run("shaky").attempts == 2


def test_fail_fast_on_dask_takes_back_tasks_handed_over_early(dask_executor):
    @fk.task
    def slow(x):
        time.sleep(1.0)
        return x

    @fk.task
    def explode():
        raise ValueError("boom")

    @fk.flow(executor=dask_executor, store=False)
    def f():
        return add(inc(inc(slow(1))), explode())

    run = f.run(fail_fast=True)
    statuses = {tr.node: tr.status for tr in run.task_runs}
    assert statuses["explode"] == "failed" and statuses["inc"] == statuses["inc#2"] == "skipped"
    assert statuses["add"] == "skipped"


@fk.task
def hold(i: int, *inputs: bytes) -> bytes:
    return bytes(1 << 20)  # 1 MiB that lives on a worker


def test_futures_are_released_once_their_consumers_finished(dask_executor):
    client = dask_executor.client
    held: list[int] = []

    class Watch:
        def on_event(self, event):  # futures of `hold` the client keeps when a task run ends
            if not isinstance(event, fk.events.TaskFinished):
                return
            # A dropped future is uncounted on the client's event loop: let it get there first.
            client.sync(asyncio.sleep, 0)
            held.append(sum(1 for key in client.refcount if str(key).startswith("hold-")))

    @fk.flow(store=False)
    def holding(n: int):
        return chain_of(hold, n)

    run = fk.run_flow(holding.with_options(executor=dask_executor), {"n": 8}, listeners=[Watch()])
    assert len(run.result()) == 1 << 20
    # Every node is handed over at once (8 futures; on a loaded machine the first task may end before
    # the last is handed over); when hold(k) ends, hold(k-2) is gone: the workers free its data.
    assert max(held) == 8 and held[-6:] == [7, 6, 5, 4, 3, 2]


def test_early_cutoff_on_dask_runs_only_the_new_item_and_nothing_below_an_unchanged_upstream(dask_executor):
    from test_cutoff import _flow_with_source, pipeline, v1, v2

    flow = pipeline.with_options(executor=dask_executor)
    first = flow.run(rows=5)
    grown = flow.run(rows=6)
    assert (first.result(), grown.result()) == (20.0, 30.0)
    got = {tr.node: tr.status for tr in grown.task_runs}
    assert [got[f"scale[{k}]"] for k in range(6)] == ["cached"] * 5 + ["completed"]
    assert got["load"] == got["total"] == "completed"
    _flow_with_source(v1).with_options(executor=dask_executor).run()
    edited = _flow_with_source(v2).with_options(executor=dask_executor).run()
    assert edited.result() == "mean 1.5"
    assert {tr.node: tr.status for tr in edited.task_runs} == {"source": "completed", "mean": "cached",
                                                                "describe": "cached"}


def test_tasks_are_reported_running_when_a_worker_begins_them(dask_executor):
    order: list[tuple[str, str]] = []

    class Watch:
        def on_event(self, event):
            kind = type(event).__name__
            if kind in ("TaskSubmitted", "TaskRunning"):
                order.append((kind, event.node))
            elif kind == "TaskFinished":
                order.append((kind, event.task_run.node))

    run = fk.run_flow(diamond.with_options(executor=dask_executor, store=False), listeners=[Watch()])
    assert run.result() == 4
    for node in ("one", "inc", "inc#2", "add"):
        events = [kind for kind, n in order if n == node]
        assert events == ["TaskSubmitted", "TaskRunning", "TaskFinished"], (node, order)


def test_a_failed_tasks_traceback_starts_at_the_users_frame_on_dask(dask_executor):
    run = failing.with_options(executor=dask_executor, store=False).run()
    tb = run.failed[0].traceback
    assert tb.splitlines()[0] == "Traceback (most recent call last):"
    assert tb.splitlines()[1].endswith(", in boom") and tb.rstrip().endswith("ValueError: boom on 1")
    assert "flowkit/" not in tb and "distributed/" not in tb


def _run_topics(dask_scheduler=None):
    broker = getattr(dask_scheduler, "_broker", None)
    return sorted(t for t in getattr(broker, "_topics", {}) if t.startswith("flowkit-") and t != LOST_TOPIC)


def _late_event(topic, dask_scheduler=None):
    """What the scheduler does with the done event of a task still running when its run ended."""
    dask_scheduler.log_event(topic, ("done", "node", "key", "tcp://127.0.0.1:1", 0.0, 0.0, None))


def test_the_scheduler_keeps_no_topic_of_a_finished_run(dask_executor):
    client = dask_executor.client
    assert diamond.with_options(executor=dask_executor, store=False).run().result() == 4  # starts unsubscribed
    live = Recorded()
    assert fk.run_flow(diamond.with_options(executor=dask_executor, store=False), listeners=[live]).result() == 4
    assert sorted(live.running) == ["add", "inc", "inc#2", "one"]  # its start events came, by their own topic
    assert client.run_on_scheduler(lambda dask_scheduler: hasattr(dask_scheduler, "_broker"))  # what forget_topic uses
    assert client.run_on_scheduler(_run_topics) == []
    # A late event makes a topic again on the scheduler, which drops it; the client ignores it.
    left = list(client_state(client).left)
    assert len(left) >= 3  # the first run's topic, the second's two
    for topic in left[-3:]:
        client.run_on_scheduler(_late_event, topic)
    assert client.run_on_scheduler(_run_topics) == []
    # The client keeps a finished run's topic only with a handler that holds nothing of the run.
    handlers = {t: h for t, h in client._event_handlers.items() if t.startswith("flowkit-") and t != LOST_TOPIC}
    assert set(handlers) == set(left) and {h.__name__ for h in handlers.values()} == {"_ignore"}


class Recorded:
    """A live listener: the run streams task starts (and so subscribes to its start events)."""

    def __init__(self):
        self.running = []

    def on_event(self, event):
        if type(event).__name__ == "TaskRunning":
            self.running.append(event.node)
