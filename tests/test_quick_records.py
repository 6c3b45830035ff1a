"""Quick task runs are recorded a batch at a time when no listener follows the run live (flowkit.driver).

The records and events must be those, in the order, of recording each task run as it completes;
held back at most a batch, and never past another event, a slow task or the loop's waiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flowkit as fk
from flowkit.cache import KeyMaker, value_token
from flowkit.context import current_task
from flowkit.driver import BATCH, Loop
from flowkit.events import RunPlanned, TaskFinished, TaskOutput, TaskRunning, TaskSubmitted
from flowkit.runner import run_flow
from flowkit.store import Store

seen: list[Any] = []  # the events a loop told, as a task of the flow finds them when it runs
told_when: dict[str, int] = {}  # node id -> how many events had been told when it ran
clock = fk.ManualClock()
failed_once: set[int] = set()


@fk.task
def step(x: int | None = None) -> int:
    told_when[current_task().node] = len(seen)  # type: ignore[union-attr]
    return 0 if x is None else x + 1


@fk.task
def slow(x: int) -> int:
    told_when[current_task().node] = len(seen)  # type: ignore[union-attr]
    clock.advance(1.0)  # a task of a second, by the run's clock
    return x + 1


@fk.task(retries=1)
def flaky(x: int) -> int:
    told_when[current_task().node] = len(seen)  # type: ignore[union-attr]
    if x not in failed_once:
        failed_once.add(x)
        raise RuntimeError("first attempt fails")
    return x + 1


@fk.task
def ingest(x: int, data: Path, label: str = "raw") -> int:
    told_when[current_task().node] = len(seen)  # type: ignore[union-attr]
    return x + len(data.read_bytes())


@fk.task
def rewrite(x: int, path: str) -> int:
    told_when[current_task().node] = len(seen)  # type: ignore[union-attr]
    Path(path).write_bytes(b"other bytes")  # the file a task before this one took as its input
    return x + 1


@fk.flow
def steps(n: int) -> int:
    ref = step()
    for _ in range(n):
        ref = step(ref)
    return ref


@fk.flow
def mixed(n: int, path: str) -> int:
    ref = step()
    for i in range(n):
        if i == 5:
            ref = slow(ref)
        elif i == 10:
            ref = ingest(ref, fk.File(path), label="first")
        elif i == 11:
            ref = rewrite(ref, path)
        elif i == 600:
            ref = flaky(ref)
        else:
            ref = step(ref)
    return ref


def _events(live: bool, n: int, path: Path, store: Store | None = None) -> tuple[list[Any], list[int]]:
    """The events of a run of ``mixed`` told as they were, and how many task runs each task found recorded."""
    seen.clear()
    told_when.clear()
    failed_once.clear()
    path.write_bytes(b"first bytes")
    graph = mixed.graph(n=n, path=str(path))
    keymaker = KeyMaker("salt", store) if store is not None else None
    with fk.LocalExecutor().session(clock) as session:
        loop = Loop(graph, session, clock, "run", store, keymaker, (), emit=seen.append, stream_output=live)
        loop.plan(keymaker.keys(graph.nodes) if keymaker is not None else {})
        loop.loop()
        assert len(loop.state.records) == n + 1
    recorded = [sum(1 for e in seen[:told_when[node]] if type(e) is TaskFinished) for node in graph.nodes]
    return [e for e in seen if type(e) not in (RunPlanned, TaskSubmitted, TaskRunning, TaskOutput)], recorded


def _comparable(event: Any) -> Any:
    """An event as held and live runs must both tell it: everything but the task run's timings and worker."""
    if type(event) is not TaskFinished:
        return event
    tr = event[0]
    return ((tr.id, tr.node, tr.name, tr.status, tr.attempts, tr.cache_key, tr.artifact_id, tr.error, tr.logs),
            *event[1:])


def test_held_back_records_come_out_as_they_would_one_by_one(tmp_path):
    n = 2 * BATCH + 100
    path = tmp_path / "input.txt"
    held, recorded = _events(live=False, n=n, path=path, store=Store.open(tmp_path / "held"))
    one_by_one, recorded_live = _events(live=True, n=n, path=path, store=Store.open(tmp_path / "live"))
    assert len(held) == len(one_by_one) == n + 2  # a TaskFinished per task, and one TaskRetrying
    # The same events in the same order: task runs, artifacts, lineage (the file as it was when the
    # task that read it ended, not as a later task left it), cache entries and content keys.
    assert [_comparable(e) for e in held] == [_comparable(e) for e in one_by_one]
    nodes = list(mixed.graph(n=n, path=str(path)).nodes)
    assert [e[0].node for e in held if type(e) is TaskFinished] == nodes
    ingested = next(e for e in held if type(e) is TaskFinished and e[0].name == "ingest")
    param = {row[5]: row for row in ingested.inputs if row[3] == "param"}
    assert param["data"][6] is not None and param["label"][7] == "'first'"
    assert recorded_live == list(range(n + 1))  # live: each task finds every task before it recorded
    assert recorded[3] == 0  # held back: the fourth task ran before the first three were recorded...
    assert all(0 <= at - before < BATCH for at, before in enumerate(recorded))  # ...never a batch of them
    assert recorded[7] == 7  # nor past a slow task (the seventh): all of them were recorded when it ended


def test_the_file_a_task_read_is_recorded_as_it_read_it(tmp_path):
    path = tmp_path / "input.txt"
    held, _ = _events(live=False, n=20, path=path, store=Store.open(tmp_path / "held"))
    ingested = next(e for e in held if type(e) is TaskFinished and e[0].name == "ingest")
    token = {row[5]: row[6] for row in ingested.inputs if row[3] == "param"}["data"]
    node = mixed.graph(n=20, path=str(path)).nodes[ingested[0].node]
    args = node.canon[0] if node.canon is not None else node.args
    (value,) = [a for a in args if type(a) is not fk._template.Slot and "File" in repr(a)]
    assert token != value_token(value, Store.open(tmp_path / "later"))  # the bytes a later task of the run wrote
    path.write_bytes(b"first bytes")
    assert token == value_token(value, Store.open(tmp_path / "first"))  # the bytes it read


@pytest.mark.parametrize("where", ["building", "telling"])
def test_ctrl_c_while_held_records_are_made_loses_none_and_repeats_none(tmp_path, monkeypatch, where):
    told: list[Any] = []

    def listener(event: Any) -> None:
        told.append(event)
        if where == "telling" and type(event) is TaskFinished and event[0].node == "step#4" and \
                sum(1 for e in told if type(e) is TaskFinished and e[0].node == "step#4") == 1:
            raise KeyboardInterrupt  # once: as the recorder takes step#4's task run

    if where == "building":
        completed = Loop.completed

        def interrupted(self: Loop, key: str, *args: Any) -> Any:
            if key == "step#4" and not getattr(self, "_interrupted", False):
                self._interrupted = True  # type: ignore[attr-defined]
                raise KeyboardInterrupt
            return completed(self, key, *args)

        monkeypatch.setattr(Loop, "completed", interrupted)
    graph = steps.graph(n=8)
    with fk.LocalExecutor().session(clock) as session:
        loop = Loop(graph, session, clock, "run", None, None, (), emit=listener, stream_output=False)
        loop.plan({})
        with pytest.raises(KeyboardInterrupt):
            loop.loop()
        loop.cancel()  # as run_graph does
    finished = [e[0].node for e in told if type(e) is TaskFinished]
    assert finished == list(graph.nodes)  # each once, in order: none lost, none told twice
    assert [tr.node for tr in loop.state.records] == list(graph.nodes)
    assert {tr.status for tr in loop.state.records} == {"completed"}


@pytest.mark.parametrize("live", [False, True])
def test_the_store_holds_the_same_records_either_way(tmp_path, live):
    store = Store.open(tmp_path / "store")

    class Listener:
        def on_event(self, event: Any) -> None:
            pass

    failed_once.clear()
    path = tmp_path / "input.txt"
    path.write_bytes(b"first bytes")
    flow = mixed.with_options(store=store, clock=clock)
    run = run_flow(flow, {"n": BATCH + 10, "path": str(path)}, listeners=[Listener()] if live else ())
    assert run.status == "completed"
    rows = store.db.task_runs(run.id)
    assert [r.node for r in rows] == [tr.node for tr in run.task_runs] == list(run.graph.nodes)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.status == "completed" for r in rows)
    assert all(r.inputs is not None for r in rows[1:])  # each one's inputs: the task run before it
    path.write_bytes(b"first bytes")
    again = run_flow(flow, {"n": BATCH + 10, "path": str(path)})
    assert {tr.status for tr in again.task_runs} == {"cached"}
