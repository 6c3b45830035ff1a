"""What tracking and the model registry cost: ``fk.log_metric`` against MLflow, registry queries and reads.

All flowkit numbers come from this process, on fresh temporary stores (under
``--dir``), each the best of ``--repeat`` runs with ``gc.collect()`` before each:

1. ``fk.log_metric`` from a task. A flow of ``--tasks`` tasks (default 20) each
   calling ``fk.log_metric("loss", v, step=s)`` ``--steps`` times (default
   1,000), against the same flow whose tasks log nothing (steps = 0), both
   uncached on a fresh store; the difference over the number of calls is the
   cost of a call, amortized: appending to the task call, the entries
   travelling back with the task's record, and the rows written in the
   recorder's batch at the end of the run. It checks that every value reached
   the store. The same for ``--many`` tasks (default 1,000) logging one metric
   each (informational: it adds what one more row per task costs).

   The anchor is ``mlflow.log_metric`` to a local ``file://`` store (a
   ``sqlite:///`` one if the installed MLflow has no file store), run by
   ``benchmarks/mlflow_anchor.py`` in a separate virtualenv (``--mlflow-venv``,
   default ``/tmp/flowkit-mlflow-venv``; made with ``python3 -m venv`` and
   ``pip install mlflow-skinny`` the first time, which is not part of the
   timed budget), never in the project's. Its runs play the tasks, with the
   same shapes; only its ``log_metric`` calls are timed, since MLflow writes
   each one before the call returns. If MLflow cannot be installed, the
   output says so and the anchor is a plain SQLite insert per call (one
   ``INSERT`` in autocommit, so one transaction per metric, in WAL mode with
   flowkit's pragmas), which is always measured and printed too.

2. ``fk.Model`` and ``fk.registry.load`` (``flowkit.ml.registry``; "registry not
   available" when it is missing). A model of 256 KiB (a file, not inline in
   the database) is registered and promoted to ``production`` in a child
   process, so this process starts with nothing memoized. Here, with
   ``SQLiteMetadataStore.query`` and the artifact store's ``read`` wrapped to
   count calls: two uncached runs of a task taking
   ``fk.Model("<name>@production")`` against the same runs with a plain string in
   its place (the difference is what the model input costs: resolving it,
   loading it), then ``registry.load("<name>@production")`` ``--loads`` times.
   Targets: one metadata query per resolution or load of a cached model, and
   one artifact read in the whole process (memoized by artifact id).

Targets are differences and ratios of numbers taken on the same machine in the
same run, so its speed and load cancel out as far as they can; absolute times
on a shared machine mean little. Exit code is 0 whatever the numbers: this is a
benchmark, not a test.

    python benchmarks/mlops.py [--quick] [--tasks 20] [--steps 1000] [--many 1000] [--repeat 5]
                               [--mlflow-venv /tmp/flowkit-mlflow-venv | --no-mlflow] [--dir .]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import importlib
import inspect
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import flowkit as fk
from shapes import verdict
from flowkit.store.sqlite import SQLiteMetadataStore
from flowkit.store.sqlite_tracking import INSERT_TRACKED

try:
    registry: Any = importlib.import_module("flowkit.ml.registry")
except ModuleNotFoundError as exc:  # the registry is built on another branch: this part waits for it
    if exc.name != "flowkit.ml.registry":
        raise
    registry = None

METRIC_US_TARGET = 20.0
MLFLOW_RATIO_TARGET = 5.0
QUERIES_TARGET = 1
READS_TARGET = 1

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_NAME = "bench-model"
MODEL_SIZE = 32768  # float64s: 256 KiB, above the 32 KiB kept inline in the database


# --- 1. log_metric ------------------------------------------------------------------------------

@fk.task
def log_steps(i: int, steps: int) -> int:
    for step in range(steps):
        fk.log_metric("loss", 1.0 / (step + 1), step=step)
    return i


@fk.flow
def logging_flow(tasks: int, steps: int) -> Any:
    return [log_steps(i, steps) for i in range(tasks)]


def run_seconds(tasks: int, steps: int, where: str) -> float:
    """One uncached run of ``logging_flow`` on a fresh store; checks the metrics all got there."""
    with tempfile.TemporaryDirectory(prefix=".fk-bench-", dir=where) as home:
        store = fk.Store(home)
        flow = logging_flow.with_options(store=store)
        gc.collect()
        start = time.perf_counter()
        run = flow.run(tasks, steps)
        seconds = time.perf_counter() - start
        stored = len(store.db.tracked([run.id], kind="metric"))
        assert run.status == "completed" and stored == tasks * steps, f"{run}: {stored} metrics stored"
        store.db.close()
    return seconds


def flowkit_per_call(tasks: int, steps: int, repeat: int, where: str) -> dict[str, float]:
    """Best run times without and with the metrics, and their difference per call in µs.

    The two runs alternate, so ``median`` (the median of each pair's difference, per call)
    shows how much the machine's load moved the best-of figure ``us``.
    """
    off, on = [], []
    for _ in range(repeat):
        off.append(run_seconds(tasks, 0, where))
        on.append(run_seconds(tasks, steps, where))
    calls = tasks * steps
    return {"off": min(off), "on": min(on), "us": (min(on) - min(off)) / calls * 1e6,
            "median": statistics.median(b - a for a, b in zip(off, on)) / calls * 1e6}


def sqlite_per_call(calls: int, repeat: int, where: str) -> float:
    """µs per metric inserted one ``INSERT`` (one transaction) at a time, WAL, synchronous=NORMAL."""
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix=".fk-bench-", dir=where) as folder:
            conn = sqlite3.connect(os.path.join(folder, "anchor.db"), isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("CREATE TABLE tracked (run_id TEXT NOT NULL, node TEXT NOT NULL, seq INTEGER NOT NULL, "
                         "kind TEXT NOT NULL, name TEXT NOT NULL, step INTEGER, value REAL, text TEXT, "
                         "time REAL NOT NULL)")
            conn.execute("CREATE INDEX tracked_task_run ON tracked(run_id, node)")
            gc.collect()
            start = time.perf_counter()
            for step in range(calls):
                conn.execute(INSERT_TRACKED, ("run", "log_steps-0", step, "metric", "loss", step,
                                              1.0 / (step + 1), None, time.time()))
            best = min(best, time.perf_counter() - start)
            conn.close()
    return best / calls * 1e6


def mlflow_python(venv: str) -> tuple[str | None, str]:
    """The Python of a virtualenv with MLflow, made if need be: (path or None, what happened)."""
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import mlflow, sys; sys.stdout.write(mlflow.__version__)"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python, f"MLflow virtualenv {venv} (already there)"
    start = time.perf_counter()
    steps = [["python3", "-m", "venv", venv], [python, "-m", "pip", "install", "--quiet", "mlflow-skinny"]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"cannot install MLflow ({' '.join(step)}: {exc})"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            return None, f"cannot install MLflow ({' '.join(step)} failed: {tail[0][:200]})"
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return None, f"cannot install MLflow (installed in {venv}, but `import mlflow` fails)"
    return python, f"MLflow virtualenv {venv} (made now, in {time.perf_counter() - start:.0f} s, not timed)"


def mlflow_per_call(python: str, tasks: int, steps: int, many: int) -> dict[str, Any] | str:
    """The anchor's figures from ``mlflow_anchor.py`` (a dict), or why there are none (a str)."""
    cmd = [python, os.path.join(HERE, "mlflow_anchor.py"), "--tasks", str(tasks), "--steps", str(steps),
           "--many", str(many)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return f"mlflow_anchor.py failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- 2. the registry ------------------------------------------------------------------------------

def make_model() -> dict[str, Any]:
    return {"coef": np.random.default_rng(0).standard_normal(MODEL_SIZE), "intercept": 0.5}


def store_arg(fn: Callable[..., Any], store: fk.Store) -> dict[str, Any]:
    """``store=`` for a registry function that takes it (``FLOWKIT_HOME`` names the store anyway)."""
    return {"store": store} if "store" in inspect.signature(fn).parameters else {}


def register_model(home: str) -> int:
    """In a child process: register the model and point ``production`` at it; its version."""
    os.environ["FLOWKIT_HOME"] = home
    store = fk.Store.open(home)
    mv = registry.register(MODEL_NAME, make_model(), **store_arg(registry.register, store))
    registry.promote(MODEL_NAME, mv.version, to="production", **store_arg(registry.promote, store))
    return int(mv.version)


def model_value(model: Any) -> Any:
    """A task's model input: the value, or a handle that loads it (whichever the registry passes)."""
    return model.load() if hasattr(model, "load") else model


@fk.task
def predict(model: Any, i: int) -> float:
    if isinstance(model, str):  # the plain-argument twin: same flow, no model
        return float(i)
    value = model_value(model)
    return float(value["coef"][i] + value["intercept"])


@fk.flow
def model_flow(i: int) -> Any:
    return predict(Model(f"{MODEL_NAME}@production"), i)


@fk.flow
def plain_flow(i: int) -> Any:
    return predict(f"{MODEL_NAME}@production", i)


Model: Any = getattr(fk, "Model", None) or getattr(registry, "Model", None)


class Counter:
    """Counts metadata queries (``SQLiteMetadataStore.query``) and artifact reads while it is open.

    The methods are wrapped on the classes, so every store object of this process is
    counted, including those the runner opens or unpickles itself.
    """

    def __init__(self, files_type: type) -> None:
        self.files_type = files_type
        self.queries: list[str] = []
        self.reads: list[str] = []

    @contextlib.contextmanager
    def counting(self) -> Iterator[Counter]:
        query, read = SQLiteMetadataStore.query, self.files_type.read
        queries, reads = self.queries, self.reads

        def counted_query(db: Any, sql: str, params: Any = ()) -> Any:
            queries.append(" ".join(sql.split()))
            return query(db, sql, params)

        def counted_read(files: Any, digest: str) -> Any:
            reads.append(digest)
            return read(files, digest)

        SQLiteMetadataStore.query = counted_query  # type: ignore[method-assign]
        self.files_type.read = counted_read  # type: ignore[method-assign]
        try:
            yield self
        finally:
            SQLiteMetadataStore.query = query  # type: ignore[method-assign]
            self.files_type.read = read  # type: ignore[method-assign]

    def since(self, mark: tuple[int, int]) -> tuple[list[str], list[str]]:
        return self.queries[mark[0]:], self.reads[mark[1]:]

    def mark(self) -> tuple[int, int]:
        return len(self.queries), len(self.reads)


def registry_section(loads: int, where: str) -> list[str]:
    """Section 2; its target lines."""
    with tempfile.TemporaryDirectory(prefix=".fk-bench-", dir=where) as home:
        old_home = os.environ.get("FLOWKIT_HOME")
        os.environ["FLOWKIT_HOME"] = home
        try:
            return registry_counts(home, loads)
        finally:
            if old_home is None:
                os.environ.pop("FLOWKIT_HOME", None)
            else:
                os.environ["FLOWKIT_HOME"] = old_home


def registry_counts(home: str, loads: int) -> list[str]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # nothing of it memoized here
        version = pool.apply(register_model, (home,))
    store = fk.Store.open(home)
    expected = make_model()
    counter = Counter(type(store.files))
    spec = f"{MODEL_NAME}@production"
    extra_queries, runs = [], []
    with counter.counting():
        for i in (1, 2):  # two uncached runs each: the second one must not read the model again
            mark = counter.mark()
            plain = plain_flow.with_options(store=store).run(i)
            plain_queries, _ = counter.since(mark)
            mark = counter.mark()
            start = time.perf_counter()
            run = model_flow.with_options(store=store).run(i)
            seconds = time.perf_counter() - start
            model_queries, model_reads = counter.since(mark)
            assert plain.status == run.status == "completed", (plain, run)
            assert run.value == float(expected["coef"][i] + expected["intercept"]), run.value
            extra = collections.Counter(model_queries) - collections.Counter(plain_queries)
            extra_queries.append(extra)
            runs.append((len(model_queries) - len(plain_queries), len(model_reads), seconds))
        mark = counter.mark()
        start = time.perf_counter()
        for _ in range(loads):
            value = registry.load(spec, **store_arg(registry.load, store))
        load_us = (time.perf_counter() - start) / loads * 1e6
        load_queries, load_reads = counter.since(mark)
        assert np.array_equal(value["coef"], expected["coef"]), "registry.load returned another model"
    reads = len(counter.reads)

    print(f"   {spec} is version {version} (a {MODEL_SIZE * 8 // 1024} KiB artifact file), registered in a "
          f"child process")
    header = f"   {'':<56} {'queries':>8} {'reads':>6} {'time':>10}"
    print(header + "\n   " + "-" * (len(header) - 3))
    for n, (queries, run_reads, seconds) in enumerate(runs, 1):
        print(f"   {f'run {n}: task with fk.Model (minus plain twin)':<56} {queries:>8} {run_reads:>6} "
              f"{seconds * 1e3:>7.1f} ms")
    print(f"   {f'registry.load({spec!r}) x {loads}, per call':<56} {len(load_queries) / loads:>8.2f} "
          f"{len(load_reads):>6} {load_us:>7.1f} µs")
    print(f"   artifact reads in this process in all: {reads}")
    for n, extra in enumerate(extra_queries, 1):
        for sql, times in extra.items():
            print(f"   run {n}, query the model input added{f' (x{times})' if times > 1 else ''}: {sql[:110]}")
    print()

    per_run = max(q for q, _, _ in runs)
    per_load = len(load_queries) / loads
    return [
        f"  fk.Model resolution: {QUERIES_TARGET} metadata query per run: {per_run} "
        f"({verdict(per_run <= QUERIES_TARGET)})",
        f"  registry.load of a cached model: {QUERIES_TARGET} metadata query per call: {per_load:.2f} "
        f"({verdict(per_load <= QUERIES_TARGET)})",
        f"  model artifact read {READS_TARGET} time per process (2 runs + {loads} loads): {reads} "
        f"({verdict(reads <= READS_TARGET)})",
    ]


# --- the report ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run: 10 x 200 steps, 200 x 1, repeat 3")
    parser.add_argument("--tasks", type=int, default=20, help="tasks logging --steps metrics each (default 20)")
    parser.add_argument("--steps", type=int, default=1000, help="log_metric calls per task (default 1000)")
    parser.add_argument("--many", type=int, default=1000, help="tasks logging one metric each (default 1000)")
    parser.add_argument("--loads", type=int, default=100, help="registry.load calls (default 100)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per flowkit measurement; the best is kept")
    parser.add_argument("--mlflow-venv", default="/tmp/flowkit-mlflow-venv", help="virtualenv with MLflow")
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow: the anchor is the SQLite insert")
    parser.add_argument("--dir", default=".", help="where the temporary stores go (default: current directory)")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.steps, args.many, args.loads, args.repeat = 10, 200, 200, 20, 3
    tasks, steps, many = args.tasks, args.steps, args.many

    python, setup = (None, "MLflow skipped (--no-mlflow)") if args.no_mlflow else mlflow_python(args.mlflow_venv)
    began = time.perf_counter()
    print(f"flowkit {fk.__version__}, numpy {np.__version__}, SQLite {sqlite3.sqlite_version}, Python "
          f"{platform.python_version()} on {platform.machine()}; best of {args.repeat}; temporary stores under "
          f"{os.path.abspath(args.dir)}\n{setup}\n")

    run_seconds(3, 3, args.dir)  # imports and first calls are not timed
    batch = flowkit_per_call(tasks, steps, args.repeat, args.dir)
    single = flowkit_per_call(many, 1, args.repeat, args.dir)
    sqlite_us = sqlite_per_call(tasks * steps, args.repeat, args.dir)
    anchor = mlflow_per_call(python, tasks, steps, many) if python else setup
    if isinstance(anchor, str):
        name, anchor_batch, anchor_single = "SQLite insert per call", sqlite_us, sqlite_us
        print(f"MLflow: {anchor}; the anchor is a plain SQLite INSERT + commit per metric instead\n")
    else:
        name, anchor_batch, anchor_single = (f"mlflow.log_metric ({anchor['store']} store)", anchor["batch_us"],
                                             anchor["many_us"])
        print(f"anchor: MLflow {anchor['mlflow']} (mlflow-skinny), mlflow.log_metric to {anchor['uri']} "
              f"(a temporary folder), synchronous logging; one repetition\n")

    print("1. fk.log_metric from a task: µs per call, amortized (the run's time with the metrics minus without, "
          "over the calls; includes writing the rows)")
    header = (f"   {'shape':<26} {'calls':>7} {'run, none':>10} {'run, logged':>12} {'flowkit':>8} "
              f"{'(median)':>9} {'anchor':>9} {'anchor/flowkit':>15}")
    print(header + "\n   " + "-" * (len(header) - 3))
    for label, r, calls, anchor_us in ((f"{tasks} tasks x {steps:,} steps", batch, tasks * steps, anchor_batch),
                                       (f"{many:,} tasks x 1 metric", single, many, anchor_single)):
        print(f"   {label:<26} {calls:>7,} {r['off'] * 1e3:>7.1f} ms {r['on'] * 1e3:>9.1f} ms {r['us']:>8.2f} "
              f"{r['median']:>9.2f} {anchor_us:>9.1f} {anchor_us / r['us']:>14.1f}x")
    print("   flowkit: best run with the metrics minus best run without, per call; (median): the median of the "
          "paired differences")
    print(f"   anchor: {name}; for reference, one SQLite INSERT + commit per metric (WAL, synchronous=NORMAL): "
          f"{sqlite_us:.1f} µs\n")

    print("2. fk.Model and registry.load: metadata queries and artifact reads")
    if registry is None:
        print("   registry not available (flowkit.ml.registry is missing): skipped\n")
        registry_lines = ["  fk.Model / registry.load: registry not available (skipped)"]
    else:
        try:
            registry_lines = registry_section(args.loads, args.dir)
        except Exception as exc:  # noqa: BLE001 - the registry's API may still move: report it, go on
            print(f"   the registry part failed: {type(exc).__name__}: {exc}\n")
            registry_lines = [f"  fk.Model / registry.load: could not be measured ({type(exc).__name__}) (FAIL)"]

    ratio = anchor_batch / batch["us"]
    print("targets")
    print(f"  fk.log_metric <= {METRIC_US_TARGET:g} µs per call amortized ({tasks} x {steps:,}): "
          f"{batch['us']:.2f} µs ({verdict(batch['us'] <= METRIC_US_TARGET)}; {many:,} x 1, informational: "
          f"{single['us']:.2f} µs)")
    print(f"  fk.log_metric >= {MLFLOW_RATIO_TARGET:g}x cheaper than {name}: {ratio:.1f}x "
          f"({verdict(ratio >= MLFLOW_RATIO_TARGET)}; {many:,} x 1: {anchor_single / single['us']:.1f}x)")
    for line in registry_lines:
        print(line)
    print(f"\n{time.perf_counter() - began:.0f} s (without the MLflow setup)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
