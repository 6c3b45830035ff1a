"""Quick task runs are recorded a batch at a time when no listener follows the run live (flowkit.driver).

The records and events must be those, in the order, of recording each task run as it completes;
held back at most a batch, and never past another event, a slow task or the loop's waiting.
"""

from __future__ import annotations

from typing import Any

import pytest

import flowkit as fk
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


@fk.flow
def mixed(n: int) -> int:
    ref = step()
    for i in range(n):
        ref = slow(ref) if i == 5 else flaky(ref) if i == 600 else step(ref)
    return ref


def _events(live: bool, n: int) -> tuple[list[Any], list[int]]:
    """The events of a run of ``mixed(n)`` told as they were, and how many task runs each task found recorded."""
    seen.clear()
    told_when.clear()
    failed_once.clear()
    graph = mixed.graph(n=n)
    with fk.LocalExecutor().session(clock) as session:
        loop = Loop(graph, session, clock, "run", None, None, (), emit=seen.append, stream_output=live)
        loop.plan({})
        loop.loop()
        assert len(loop.state.records) == n + 1
    recorded = [sum(1 for e in seen[:told_when[node]] if type(e) is TaskFinished) for node in graph.nodes]
    return [e for e in seen if type(e) not in (RunPlanned, TaskSubmitted, TaskRunning, TaskOutput)], recorded


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is TaskFinished:
        ta, tb = a[0], b[0]
        return (ta.node, ta.status, ta.attempts, ta.artifact_id) == (tb.node, tb.status, tb.attempts, tb.artifact_id)
    return a == b


def test_held_back_records_come_out_as_they_would_one_by_one():
    n = 2 * BATCH + 100
    held, recorded = _events(live=False, n=n)
    one_by_one, recorded_live = _events(live=True, n=n)
    assert len(held) == len(one_by_one) == n + 2  # a TaskFinished per task, and one TaskRetrying
    assert all(_same(a, b) for a, b in zip(held, one_by_one))
    assert [e[0].node for e in held if type(e) is TaskFinished] == list(mixed.graph(n=n).nodes)
    assert recorded_live == list(range(n + 1))  # live: each task finds every task before it recorded
    assert recorded[3] == 0  # held back: the fourth task ran before the first three were recorded...
    assert all(0 <= at - before < BATCH for at, before in enumerate(recorded))  # ...never a batch of them
    assert recorded[7] == 7  # nor past a slow task (the seventh): all of them were recorded when it ended
    assert recorded[602] == 601  # nor past another event: the flaky task's retry came after the records before it


@pytest.mark.parametrize("live", [False, True])
def test_the_store_holds_the_same_records_either_way(tmp_path, live):
    store = Store.open(tmp_path / ("live" if live else "held"))

    class Listener:
        def on_event(self, event: Any) -> None:
            pass

    failed_once.clear()
    run = run_flow(mixed.with_options(store=store, clock=clock), {"n": BATCH + 10}, listeners=[Listener()] if live else ())
    assert run.status == "completed"
    rows = store.db.task_runs(run.id)
    assert [r.node for r in rows] == [tr.node for tr in run.task_runs] == list(run.graph.nodes)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.status == "completed" for r in rows)
    assert all(r.inputs is not None for r in rows[1:])  # each one's inputs: the task run before it
    again = mixed.with_options(store=store, clock=clock).run(n=BATCH + 10)
    assert {tr.status for tr in again.task_runs} == {"cached"}
