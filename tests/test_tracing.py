"""Tracing a flow body: refs, nesting, indexing, nout, maps, subflows, misuse."""

from __future__ import annotations

import pytest

import flowkit as fk
from conftest import CALLS, add, inc, one, total


@fk.task
def pair(n: int) -> tuple[int, list[int]]:
    return n, list(range(n))


@fk.task(nout=2)
def two(n: int) -> tuple[int, int]:
    return n, n * 10


@fk.task
def echo(x):
    return x


@fk.task
def square(x: int, offset: int = 0) -> int:
    return x * x + offset


def test_task_call_in_flow_returns_ref_and_records_a_node():
    seen = {}

    @fk.flow
    def f():
        seen["ref"] = one()
        return seen["ref"]

    g = f.graph()
    assert isinstance(seen["ref"], fk.Ref)
    assert seen["ref"].node == "one"
    assert list(g.nx.nodes) == ["one"] and g.nx.nodes["one"]["task"] == "one"
    assert CALLS == []  # tracing runs nothing


def test_refs_nested_in_lists_tuples_dicts_and_sets_reach_the_task_as_values():
    @fk.flow
    def f():
        a, b = one(), inc(one())
        return echo({"list": [a, b, 3], "tuple": (a,), "set": {a}, "dict": {"k": [b]}, "plain": "x"})

    assert f() == {"list": [1, 2, 3], "tuple": (1,), "set": {1}, "dict": {"k": [2]}, "plain": "x"}


def test_indexing_a_ref_by_position_and_key():
    @fk.task
    def record():
        return {"a": [10, 20], "b": 2}

    @fk.flow
    def f():
        r = record()
        return add(r["a"][1], r["b"]), r["a"]

    assert f() == (22, [10, 20])
    assert f.graph().nx.number_of_nodes() == 2  # indexing adds no node


def test_nout_lets_a_task_result_be_unpacked():
    @fk.flow
    def f():
        a, b = two(4)
        return add(a, b)

    assert f() == 44


def test_static_map_fans_out_over_a_list_known_at_trace_time():
    @fk.flow
    def f():
        squares = square.map([1, 2, 3], offset=one())
        return total(squares), squares[0], squares

    g = f.graph()
    assert [n for n in g.nodes if n.startswith("square")] == ["square[0]", "square[1]", "square[2]", "square"]
    assert g.nx.nodes["square"]["kind"] == "map"
    assert f() == (17, 2, [2, 5, 10])


def test_map_over_a_ref_expands_when_the_value_arrives():
    @fk.flow
    def f(n: int):
        items = pair(n)[1]
        squares = square.map(items, offset=one())
        return total(squares), squares

    g = f.graph(3)
    assert g.nx.nodes["square"]["kind"] == "dynamic_map"
    run = f.run(4)
    assert run.result() == (18, [1, 2, 5, 10])
    assert {tr.node for tr in run.task_runs if tr.name == "square"} == {f"square[{k}]" for k in range(4)}
    assert run.graph.nx.has_edge("square[3]", "square")
    assert f.run(0).result() == (0, [])


def test_map_over_a_non_sequence_ref_and_over_a_map():
    @fk.task
    def letters():
        return {"x": 1, "y": 2}  # a dict iterates its keys

    @fk.flow
    def f():
        keys = echo.map(letters())
        return echo.map(square.map([1, 2])), keys

    assert f() == ([1, 4], ["x", "y"])


def test_map_over_something_not_iterable_fails_the_map_node_clearly():
    @fk.flow
    def f():
        return square.map(one())

    run = f.run()
    assert run.status == "failed"
    (failed,) = run.failed
    assert failed.node == "square" and "could not be iterated" in failed.error


def test_subflow_is_inlined_with_namespaced_node_ids():
    @fk.flow
    def prepare(x: int) -> int:
        return inc(inc(x))

    @fk.flow
    def main() -> int:
        a = prepare(one())
        return add(a, prepare(a))

    g = main.graph()
    assert set(g.nodes) == {"one", "prepare/inc", "prepare/inc#2", "prepare#2/inc", "prepare#2/inc#2", "add"}
    assert g.nx.has_edge("prepare/inc#2", "prepare#2/inc")
    assert main() == 3 + 5
    assert prepare(1) == 3  # still a flow of its own


def test_flow_may_return_a_constant_or_containers_of_refs_and_constants():
    @fk.flow
    def const():
        one()
        return "done"

    @fk.flow
    def nothing():
        one()

    @fk.flow
    def mixed():
        return {"a": [one(), 2], "b": (inc(one()), None)}

    assert const() == "done" and CALLS == ["one"]
    assert nothing() is None and CALLS == ["one"]  # same task, same inputs: shared through the cache
    assert mixed() == {"a": [1, 2], "b": (2, None)}


@pytest.mark.parametrize(
    ("misuse", "words"),
    [
        (lambda r: bool(r), "truth value"),
        (lambda r: [x for x in r], "iterated"),
        (lambda r: r + 1, "arithmetic"),
        (lambda r: 1 + r, "arithmetic"),
        (lambda r: r * 2, "arithmetic"),
        (lambda r: -r, "arithmetic"),
        (lambda r: len(r), "len()"),
        (lambda r: r == 1, "compared"),
        (lambda r: r < 1, "compared"),
        (lambda r: str(r), "str"),
        (lambda r: f"{r}", "formatted"),
        (lambda r: int(r), "int"),
        (lambda r: 1 in r, "`in`"),
        (lambda r: r.columns, "attribute access (`ref.columns`)"),
        (lambda r: r(), "called"),
    ],
)
def test_a_ref_used_as_a_plain_value_raises_a_type_error_naming_the_task(misuse, words):
    @fk.flow
    def f():
        misuse(inc(1))

    with pytest.raises(fk.RefUsageError) as info:
        f.graph()
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert "task 'inc'" in message and words in message and "Pass it to a task instead" in message


def test_ref_repr_works_for_debugging():
    @fk.flow
    def f():
        r = pair(2)
        assert repr(r[1]) == "<Ref pair[1]>"

    f.graph()


def test_a_ref_from_another_trace_is_refused():
    stash = {}

    @fk.flow
    def first():
        stash["ref"] = one()

    @fk.flow
    def second():
        return inc(stash["ref"])

    first.graph()
    with pytest.raises(fk.RefUsageError, match="another trace"):
        second.graph()


def test_task_called_with_wrong_arguments_fails_at_trace_time():
    @fk.flow
    def f():
        return add(1)

    with pytest.raises(fk.ParameterError, match=r"task 'add'.*missing a required argument: 'y'"):
        f.graph()
    assert CALLS == []


def test_tracing_leaves_the_cyclic_collector_as_it_found_it_even_when_the_body_raises():
    import gc

    @fk.task
    def step(x: int) -> int:
        return x

    @fk.flow
    def fine() -> int:
        assert not gc.isenabled()  # paused while the body records calls
        return step(1)

    @fk.flow
    def broken() -> int:
        raise RuntimeError("the body failed")

    assert gc.isenabled()
    fine.graph()
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="the body failed"):
        broken.graph()
    assert gc.isenabled()
    gc.disable()
    try:
        fine.graph()
        assert not gc.isenabled()  # a program that turned it off keeps it off
    finally:
        gc.enable()
