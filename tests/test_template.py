"""Argument templates: how they are filled, and that their tokens (so cache keys) stay put.

The pinned values below were computed before the templates got a module of
their own and before frozensets stopped being registered in dask's global
tokenizer; a change to any of them would silently invalidate every user's cache.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap


import flowkit as fk
from flowkit._template import Item, Nested, Slot, execute, fill, resolve_path
from flowkit.cache import KeyMaker
from flowkit.files import File
from flowkit.hashing import token


@fk.task
def src() -> int:
    return 3


@fk.task(nout=2)
def pair(x: int) -> tuple[list[int], dict[str, int]]:
    return [x, x + 1], {"z": x * 2}


@fk.task
def use(x, opts=None, seed=0):
    return (x, opts, seed)


@fk.flow
def templated():
    a = src()
    b, c = pair(a)
    first = use(b[0], opts={"lr": a, "tags": frozenset({"x", "y"})}, seed=0)
    second = use(a, opts=[a, {"k": c["z"]}], seed=frozenset({1, 2}))
    fixed = use.map([1, 2], opts=a)
    items = use.map(b, opts={"a": a, "s": {frozenset({"p", "q"})}})
    return first, second, fixed, items


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    labels: frozenset[str]


PINNED_TOKENS = {
    'frozenset': 'b8dad0c8c3692239d06ae37d9bd782e0',
    'nested containers': 'aa44b1abe4451b2f027577105fa8f0b6',
    'set of frozensets': '05dac77f3d981399e2f8ac05d71ac6b0',
    'dataclass': '85acdd515f455435e18342fed3a5b1fa',
    'template': 'c696949dce6398823f0947fe5f9184b2',
}

PINNED_GRAPH_KEYS = {
    'src': 'a9b2960e6de2390d2578cbc919459f54',
    'pair': 'ba744c5bb7262773fe04de0640f6664f',
    'use': 'e234baa27ca6ba173bcfa80f0edb534e',
    'use#2': '35cd2b9188f42843bb69a22a605dd6d2',
    'use#3[0]': '25336cccc5e87c83814cd1e9c1129f97',
    'use#3[1]': '55e51e3439a2fc3967e22850c0797c4e',
    'use#3': '1db0d9434bd2aafab38426b30a655635',
    'use#4': '53a8f3f08a52c35aa1a19e7459b5781a',
}

PINNED_RUN_KEYS = {
    'src': 'a9b2960e6de2390d2578cbc919459f54',
    'pair': 'ba744c5bb7262773fe04de0640f6664f',
    'use#3[0]': '25336cccc5e87c83814cd1e9c1129f97',
    'use#3[1]': '55e51e3439a2fc3967e22850c0797c4e',
    'use': 'e234baa27ca6ba173bcfa80f0edb534e',
    'use#2': '35cd2b9188f42843bb69a22a605dd6d2',
    'use#4[0]': '1c0788f5d016c6e5b6d2857cb81939fe',
    'use#4[1]': 'c4f59bb2161925315f736e08de002f64',
}


def _values() -> dict[str, object]:
    return {
        "frozenset": frozenset({"b", "a", "c"}),
        "nested containers": {"k": [frozenset({3, 1, 2}), {frozenset({"x", "y"}): (1, frozenset({"u", "v"}))}]},
        "set of frozensets": {frozenset({"p", "q"}), frozenset({"r"})},
        "dataclass": Config("c", frozenset({"m", "n", "o"})),
        "template": ((Slot(0, ()), Nested([Slot(1, ("k", Item(2))), frozenset({"s", "t"})])),
                     {"opts": Nested({"lr": Slot(2, (0,))}), "seed": 0}),
    }


def _graph_keys() -> dict[str, str]:
    return KeyMaker("salt").keys(templated.graph().nodes)


def _run_keys() -> dict[str, str]:
    run = templated.run()
    assert run.status == "completed", run
    return {tr.node: tr.cache_key for tr in run.task_runs}


def test_tokens_of_templates_and_frozensets_are_those_of_earlier_releases():
    assert {name: token(value) for name, value in _values().items()} == PINNED_TOKENS


def test_node_keys_are_those_of_earlier_releases():
    assert _graph_keys() == PINNED_GRAPH_KEYS
    assert _run_keys() == PINNED_RUN_KEYS


def test_frozenset_tokens_ignore_order_at_any_depth():
    small, big = frozenset(range(3)), frozenset(range(2000, -1, -1))  # different insertion orders
    assert token({"s": [small, {big: 1}]}) == token({"s": [frozenset([2, 1, 0]), {frozenset(range(2001)): 1}]})
    assert token(Nested([Slot(0), small])) == token(Nested([Slot(0), frozenset([2, 0, 1])]))
    assert token(frozenset({"a"})) != token(frozenset({"b"})) != token({"b"})


def test_dask_tokenize_in_the_users_process_is_left_as_dask_makes_it(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent("""
        import dask.base
        values = frozenset({"a", "b", "c"}), {"k": frozenset({1, 2})}
        before = [dask.base.tokenize(v) for v in values]
        dispatch = dask.base.normalize_token.dispatch(frozenset)

        import flowkit as fk

        @fk.task
        def size(s):
            return len(s)

        @fk.flow
        def f():
            return size(frozenset({"x", "y"})), size([frozenset({"z"})])

        assert f() == (2, 1)
        assert [dask.base.tokenize(v) for v in values] == before
        assert dask.base.normalize_token.dispatch(frozenset) is dispatch
        print("ok")
    """))
    env = {**os.environ, "FLOWKIT_HOME": str(tmp_path / "home"), "PYTHONHASHSEED": "0"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.strip() == "ok", out.stderr


def test_fill_puts_upstream_values_into_the_template():
    values = [{"k": [10, 20, 30]}, "b"]
    template = [Slot(1), Nested({"x": Slot(0, ("k", Item(2)))}), File("data.csv"), 5]
    assert fill(Nested(template), values) == ["b", {"x": 30}, File("data.csv").path, 5]
    assert resolve_path({"a": (c for c in "xyz")}, ("a", Item(1))) == "y"  # any iterable, by position


def test_execute_calls_the_function_with_its_filled_arguments():
    def f(*args, **kwargs):
        return args, kwargs

    assert execute(f, (Slot(0), 1), {"o": Nested({"v": Slot(1, (0,))})}, "a", [7]) == (("a", 1), {"o": {"v": 7}})
    assert execute(f, (), None) == ((), {})


def test_templates_pickle_as_themselves():
    import pickle

    template = Nested([Slot(1, ("k", Item(2))), 3])
    copy = pickle.loads(pickle.dumps(template))
    assert repr(copy) == repr(template) and token(copy) == token(template)
