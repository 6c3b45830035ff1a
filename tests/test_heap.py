"""A run freezes what the process held before it (flowkit.heap), and gives it back at its end."""

from __future__ import annotations

import gc
import weakref

import pytest

import flowkit as fk


class Node:
    """An object that can be part of a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


BEFORE: list[Node] = []  # made before a run: frozen while it goes on


@fk.task
def frozen_now() -> int:
    return gc.get_freeze_count()


@fk.task
def collector_sees_before() -> bool:
    """Whether the collector walks the objects made before the run (gc.get_objects leaves frozen ones out)."""
    ids = {id(o) for o in gc.get_objects()}
    return any(id(node) in ids for node in BEFORE)


@fk.flow
def looks() -> bool:
    return collector_sees_before()


@fk.flow
def inside() -> int:
    return frozen_now()


@fk.task
def run_inside() -> tuple[int, int]:
    fk.run_flow(inside, store=False)
    return gc.get_freeze_count(), inside.with_options(store=False).run().result()


@fk.flow
def outer() -> tuple[int, int]:
    return run_inside()


@fk.task
def drop_a_cycle() -> bool:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    return gone() is None


@fk.flow
def cycles() -> bool:
    return drop_a_cycle()


@pytest.fixture(autouse=True)
def nothing_frozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_during_a_run_what_was_there_before_is_frozen_and_after_it_nothing_is():
    BEFORE[:] = [Node() for _ in range(1000)]  # objects of the process the run's collections need not walk
    try:
        assert looks.with_options(store=False).run().result() is False
        assert gc.get_freeze_count() == 0
        ids = {id(o) for o in gc.get_objects()}
        assert all(id(node) in ids for node in BEFORE)  # given back to the collector
    finally:
        BEFORE.clear()


@pytest.mark.parametrize("workers", [None, 2], ids=["in the run's thread", "on a worker thread"])
def test_a_run_inside_a_task_shares_the_freeze_of_the_run_around_it(workers):
    after_inner, inner_saw = outer.with_options(store=False, executor=fk.LocalExecutor(max_workers=workers)).run().result()
    assert after_inner > 0 and inner_saw > 0  # the inner run's end did not unfreeze the outer's objects
    assert gc.get_freeze_count() == 0


def test_cycles_a_run_makes_and_drops_are_still_collected_while_it_goes_on():
    assert cycles.with_options(store=False).run().result() is True


def test_what_the_process_froze_itself_stays_frozen_and_the_run_freezes_nothing():
    gc.freeze()
    mine = gc.get_freeze_count()
    assert inside.with_options(store=False).run().result() <= mine
    assert gc.get_freeze_count() > 0


def test_with_the_collector_off_nothing_is_frozen():
    gc.disable()
    try:
        assert inside.with_options(store=False).run().result() == 0
    finally:
        gc.enable()


def test_a_failed_or_interrupted_run_gives_the_frozen_objects_back(home):
    @fk.task
    def interrupt() -> None:
        raise KeyboardInterrupt

    @fk.task
    def fail() -> None:
        raise ValueError("no")

    @fk.flow
    def interrupted() -> None:
        interrupt()

    @fk.flow
    def failed() -> None:
        fail()

    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert gc.get_freeze_count() == 0
    assert failed.run().status == "failed" and gc.get_freeze_count() == 0
