"""A team's setup, every part its own process: ``dask scheduler``, two ``dask worker``s, PostgreSQL, an S3 server.

A client process runs a flow on the cluster with ``FLOWKIT_DB`` on PostgreSQL and ``FLOWKIT_ARTIFACTS``
on S3: the workers compute the values and write them to the bucket, the client records the run in the
database. A second client process, which shares nothing with the first but the two URLs, reruns the
flow fully cached and follows the lineage of its result back to the first run's task runs.
This is what ``docs/deploy.md`` tells a team to run on real hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg_server

pytestmark = pytest.mark.dask

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0

FLOW = '''
import os
import numpy as np
import pandas as pd
import flowkit as fk


@fk.task
def shard(i: int) -> pd.DataFrame:
    """A table big enough (about 80 KB) to be an artifact on S3 rather than a value in the database."""
    rng = np.random.default_rng(i)
    return pd.DataFrame({"x": rng.normal(size=5000), "shard": i, "pid": os.getpid()})


@fk.task
def summary(tables: list[pd.DataFrame]) -> dict:
    both = pd.concat(tables)
    return {"rows": len(both), "mean": float(both["x"].mean()), "pids": sorted(set(both["pid"].tolist()))}


@fk.flow
def pipeline(n: int = 6) -> dict:
    return summary([shard(i) for i in range(n)])
'''

#: what a client reads back from the store after its run, printed as JSON
REPORT = '''
import json, sys
import flowkit as fk
from flowkit.lineage import lineage

run = fk.runs(limit=1)[0]
tasks = [{"node": t.node, "name": t.name, "status": t.status, "worker": t.worker, "artifact": t.artifact_id,
          "source": t.source} for t in run.task_runs]
final = run.task_run("summary")
g = lineage(final)
json.dump({"run": run.id, "status": run.status, "tasks": tasks, "value": fk.Store.open().load(final.artifact_id),
           "lineage_runs": sorted({d["run_id"] for _, d in g.nodes(data=True) if d.get("kind") == "task_run"}),
           "lineage_tasks": sorted({d["task"] for _, d in g.nodes(data=True) if d.get("kind") == "task_run"})},
          sys.stdout)
'''


def _wait_for(path: Path, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture
def team(tmp_path: Path, s3_server) -> Iterator[dict]:
    """The services' URLs and the environment every host gets; the processes stop at the end."""
    try:
        server = pg_server.server()
    except pg_server.Unavailable as exc:
        pytest.skip(f"no PostgreSQL server for the cluster test: {exc}")
    db_url = server.database("cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWKIT_", "AWS_", "DASK_"))}
    env.update(s3_server.env)
    env.update(FLOWKIT_DB=db_url, FLOWKIT_ARTIFACTS=f"s3://{s3_server.bucket()}/flowkit",
               FLOWKIT_HOME=str(tmp_path / "client-home"), PYTHONPATH=str(ROOT), NO_COLOR="1")
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []

    def spawn(name: str, args: list[str]) -> subprocess.Popen:
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", *args], env=env, cwd=tmp_path, stdout=out,
                                    stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    scheduler_file = tmp_path / "scheduler.json"
    try:
        scheduler = spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                        "--no-dashboard", "--scheduler-file", str(scheduler_file)])
        _wait_for(scheduler_file, scheduler, "dask scheduler", logs[-1])
        address = json.loads(scheduler_file.read_text())["address"]
        for i in (1, 2):
            spawn(f"worker{i}", ["distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                 "--no-dashboard", "--name", f"worker{i}",
                                 "--local-directory", str(tmp_path / f"worker{i}")])
        from distributed import Client

        with Client(address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
            workers = sorted(client.scheduler_info()["workers"])
        (tmp_path / "flows.py").write_text(textwrap.dedent(FLOW))
        yield {"env": env, "address": address, "workers": workers, "dir": tmp_path, "db_url": db_url,
               "s3": s3_server, "bucket_url": env["FLOWKIT_ARTIFACTS"]}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.drop(db_url)


def _client(team: dict, home: str) -> dict:
    """Run the flow on the cluster from a fresh process with its own home, then read the store back."""
    env = {**team["env"], "FLOWKIT_HOME": str(team["dir"] / home)}
    ran = subprocess.run([sys.executable, "-m", "flowkit", "run", "flows.py:pipeline", "--address", team["address"]],
                         env=env, cwd=team["dir"], capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = subprocess.run([sys.executable, "-c", REPORT], env=env, cwd=team["dir"], capture_output=True, text=True,
                            timeout=60)
    assert report.returncode == 0, report.stderr
    return json.loads(report.stdout)


def test_a_flow_on_a_cluster_writes_s3_from_the_workers_and_a_second_client_reruns_it_cached(team):
    first = _client(team, "alice")
    assert first["status"] == "completed"
    shards = [t for t in first["tasks"] if t["name"] == "shard"]
    assert len(shards) == 6 and all(t["status"] == "completed" for t in shards)
    # computed on the two worker processes, not in the client
    assert {t["worker"] for t in first["tasks"]} <= set(team["workers"])
    assert len(first["value"]["pids"]) == 2
    # every shard is an object in the bucket, under the artifact id the database recorded
    fs = team["s3"].fs
    stored = {Path(p).name for p in fs.find(team["bucket_url"].removeprefix("s3://"))}
    assert {t["artifact"] for t in shards} <= stored
    assert first["value"]["rows"] == 6 * 5000

    second = _client(team, "bob")
    assert second["run"] != first["run"] and second["value"] == first["value"]
    assert all(t["status"] == "cached" for t in second["tasks"]), second["tasks"]
    # the lineage of bob's result leads back to the task runs of alice's run that computed it
    assert first["run"] in second["lineage_runs"]
    assert second["lineage_tasks"] == ["shard", "summary"]
