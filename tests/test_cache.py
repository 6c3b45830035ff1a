"""Caching: keys, hits, invalidation by code / input / File edits, refresh, ttl, resume."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import flowkit as fk
from conftest import CALLS, add, failing, fan, inc, linear, one
from flowkit.tracing import canonical_call, plain_defaults

LOADS: list[str] = []


class Counted:
    """A value that notes every time it is unpickled, to see which cached values are loaded."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return (_load_counted, (self.name,))


def _load_counted(name: str) -> Counted:
    LOADS.append(name)
    return Counted(name)


@fk.task
def make(name: str) -> Counted:
    CALLS.append(f"make:{name}")
    return Counted(name)


@fk.task
def combine(a: Counted, b: Counted) -> str:
    CALLS.append("combine")
    return a.name + b.name


def test_rerun_with_same_inputs_runs_nothing():
    first = linear.run(3)
    assert CALLS == ["one", "inc", "inc", "inc"]
    CALLS.clear()
    second = linear.run(3)
    assert CALLS == []
    assert second.result() == first.result() == 4
    assert {tr.status for tr in second.task_runs} == {"cached"}
    assert [tr.cache_key for tr in second.task_runs] == [tr.cache_key for tr in first.task_runs]


def test_a_changed_parameter_invalidates_exactly_what_depends_on_it():
    @fk.flow
    def f(x: int, y: int):
        return add(inc(x), inc(y))

    f.run(1, 2)
    CALLS.clear()
    run = f.run(1, 5)
    assert {tr.node: tr.status for tr in run.task_runs} == {"inc": "cached", "inc#2": "completed",
                                                           "add": "completed"}
    assert run.result() == 8


def test_fully_cached_rerun_loads_no_intermediate_and_only_the_output():
    @fk.flow
    def f():
        return combine(make("a"), make("b"))

    assert f() == "ab"
    LOADS.clear()
    CALLS.clear()
    assert f() == "ab"
    assert CALLS == [] and LOADS == []  # the output is a str: nothing Counted was unpickled


def test_only_the_inputs_a_rerunning_task_needs_are_loaded():
    @fk.flow
    def f(suffix: str):
        return combine(make("a"), make("b")), make(suffix)

    f("c")
    LOADS.clear()
    CALLS.clear()
    f("d")  # only make("d") is new; combine is cached, so make("a") and make("b") stay on disk
    assert CALLS == ["make:d"]
    assert LOADS == []


def test_cache_version_invalidates_and_cache_false_always_runs():
    linear.run(1)
    CALLS.clear()
    bumped = inc.with_options(cache_version=2)

    @fk.flow
    def f():
        return bumped(one())

    f.run()
    assert CALLS == ["inc"]  # one is cached; the bumped task is not

    counter = {"n": 0}

    @fk.task(cache=False)
    def now():
        counter["n"] += 1
        return counter["n"]

    @fk.flow
    def g():
        return inc(now())

    assert (g(), g()) == (2, 3)  # now() reran, and inc downstream of it did not reuse a stale value


def test_cache_ttl_expires_entries_by_the_injected_clock():
    clock = fk.ManualClock(start=1000.0)
    fresh = inc.with_options(cache_ttl=60)

    @fk.flow(clock=clock)
    def f():
        return fresh(1)

    f()
    CALLS.clear()
    clock.advance(59)
    f()
    assert CALLS == []
    clock.advance(2)
    f()
    assert CALLS == ["inc"]


def test_refresh_all_and_refresh_by_task_name_with_downstream():
    @fk.flow
    def f():
        a = one()
        return add(inc(a), 10)

    f.run()
    CALLS.clear()
    f.run(refresh=True)
    assert sorted(CALLS) == ["add", "inc", "one"]
    CALLS.clear()
    run = f.run(refresh=["inc"])
    assert sorted(CALLS) == ["add", "inc"]  # inc and everything downstream of it
    assert run.task_run("one").status == "cached"
    with pytest.raises(fk.ParameterError, match="unknown task.*nope.*its tasks are: add, inc, one"):
        f.run(refresh=["nope"])


def test_untokenizable_argument_names_the_task_and_argument():
    @fk.flow
    def f():
        return add(1, threading.Lock())

    with pytest.raises(fk.CacheKeyError, match=r"task 'add', argument 'y'.*cache=False") as info:
        f.run()
    assert isinstance(info.value, TypeError)
    assert CALLS == []

    @fk.task(cache=False)
    def use_lock(lock):
        return type(lock).__name__

    @fk.flow
    def g():
        return use_lock(threading.Lock())

    assert g() == "lock"


def test_rerun_after_failure_skips_completed_tasks(tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("yes")

    @fk.task
    def fragile(x):
        CALLS.append("fragile")
        if flag.exists():
            raise RuntimeError("warehouse down")
        return x * 100

    @fk.flow
    def f():
        a = one()
        good = inc(a)
        return add(fragile(a), good)

    first = f.run()
    assert first.status == "failed"
    flag.unlink()
    CALLS.clear()
    second = f.run()
    assert second.result() == 102
    assert sorted(CALLS) == ["add", "fragile"]
    assert {tr.node: tr.status for tr in second.task_runs} == {"one": "cached", "inc": "cached",
                                                              "fragile": "completed", "add": "completed"}


def test_resume_reuses_what_cache_false_tasks_produced_in_that_run(tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("yes")
    pulls = []

    @fk.task(cache=False)
    def pull():
        pulls.append(1)
        return len(pulls) * 1000

    @fk.task
    def publish(x):
        if flag.exists():
            raise RuntimeError("publish failed")
        return x + 1

    @fk.flow
    def f():
        return publish(pull())

    failed = f.run()
    assert failed.status == "failed" and len(pulls) == 1
    flag.unlink()
    resumed = f.run(resume=failed.id[:8])
    assert resumed.result() == 1001 and len(pulls) == 1  # the pulled value of that run, not a new pull
    assert resumed.task_run("pull").status == "cached"
    fresh = f.run()
    assert fresh.result() == 2001 and len(pulls) == 2
    with pytest.raises(fk.ParameterError, match="cannot resume: no run 'nope'"):
        f.run(resume="nope")
    with pytest.raises(fk.ParameterError, match="is a run of flow 'f', not of this flow"):
        linear.run(1, resume=failed.id)


def test_failed_and_skipped_tasks_are_not_cached():
    failing.run()
    CALLS.clear()
    failing.run()
    assert sorted(CALLS) == ["boom"]  # one and the good inc are cached; boom runs again, fails again


def test_store_false_keeps_nothing(home):
    no_store = fan.with_options(store=False)
    assert no_store(3) == 6
    assert no_store(3) == 6
    assert CALLS.count("inc") == 6
    assert not home.exists()


def test_file_inputs_are_hashed_by_content(tmp_path):
    data = tmp_path / "raw.csv"
    data.write_text("a,b\n1,2\n")
    other = tmp_path / "other.csv"
    other.write_text("x\n")

    @fk.task
    def read(path):
        CALLS.append(f"read:{path.name}")
        return path.read_text()

    @fk.flow
    def f():
        return read(fk.File(data)), read(fk.File(other))

    assert f() == ("a,b\n1,2\n", "x\n")
    CALLS.clear()
    os.utime(data, (1, 1))  # a touch alone: new mtime, same bytes -> still cached
    f()
    assert CALLS == []
    data.write_text("a,b\n3,4\n")
    assert f()[0] == "a,b\n3,4\n"
    assert CALLS == ["read:raw.csv"]  # only the task that reads the edited file
    data.unlink()
    with pytest.raises(fk.CacheKeyError, match=r"task 'read', argument 'path': input file .*raw.csv does not exist"):
        f()


def _run_script(path, home):
    env = {**os.environ, "FLOWKIT_HOME": str(home)}
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, check=True,
                          cwd=path.parent).stdout


def test_editing_a_helper_function_invalidates_the_tasks_that_use_it(tmp_path, home):
    helpers = tmp_path / "helpers.py"
    helpers.write_text("def clean(x):\n    return x + 1\n")
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent("""
        import flowkit as fk
        import helpers
        from helpers import clean

        SCALE = 10

        def scale(x):
            return x * SCALE

        @fk.task
        def a(x):
            return clean(x)

        @fk.task
        def b(x):
            return scale(x)

        @fk.task
        def c(x):
            return helpers.clean(x) * 2

        @fk.flow
        def f():
            return a(1), b(1), c(1)

        run = f.run()
        print(run.result(), sorted((tr.node, tr.status) for tr in run.task_runs))
    """))
    assert _run_script(script, home).startswith("(2, 10, 4)")
    out = _run_script(script, home)
    assert "('a', 'cached'), ('b', 'cached'), ('c', 'cached')" in out
    helpers.write_text("# a comment changes nothing\ndef clean(x):\n    return x + 1  # same code\n")
    assert "('a', 'cached'), ('b', 'cached'), ('c', 'cached')" in _run_script(script, home)
    helpers.write_text("def clean(x):\n    return x + 2\n")
    out = _run_script(script, home)
    assert out.startswith("(3, 10, 6)")
    assert "('a', 'completed'), ('b', 'cached'), ('c', 'completed')" in out
    script.write_text(script.read_text().replace("SCALE = 10", "SCALE = 20"))
    out = _run_script(script, home)
    assert out.startswith("(3, 20, 6)") and "('a', 'cached'), ('b', 'completed'), ('c', 'cached')" in out


def test_decorator_options_do_not_change_the_code_fingerprint():
    from flowkit.hashing import fingerprint

    def f(x):
        return x + 1

    assert fingerprint(fk.task(retries=3)(f).fn) == fingerprint(fk.task(f).fn)
    assert fingerprint(one.fn) != fingerprint(inc.fn)


COUNTER = 0


def test_a_global_the_task_assigns_is_state_not_code():
    from flowkit.hashing import fingerprint

    def bump():
        global COUNTER
        COUNTER += 1
        return COUNTER

    before = fingerprint(bump)
    bump()
    assert fingerprint(bump) == before


def test_values_baked_into_a_task_by_a_factory_are_part_of_its_identity():
    def make(config):
        @fk.task(name="scale")
        def scale(x):
            return x * config["k"]

        return scale

    s2, s3 = make({"k": 2}), make({"k": 3})

    @fk.flow
    def two():
        return s2(10)

    @fk.flow
    def three():
        return s3(10)

    assert (two(), three()) == (20, 30)


def test_editing_a_base_class_invalidates_tasks_using_a_subclass(tmp_path, home):
    (tmp_path / "models.py").write_text("class Base:\n    def factor(self):\n        return 2\n")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import flowkit as fk
        from models import Base

        class Child(Base):
            def apply(self, x):
                return x * self.factor()

        @fk.task
        def fit(x):
            return Child().apply(x)

        @fk.flow
        def f():
            return fit(10)

        run = f.run()
        print(run.result(), run.task_run("fit").status)
    """))
    assert _run_script(script, home).split() == ["20", "completed"]
    assert _run_script(script, home).split() == ["20", "cached"]
    (tmp_path / "models.py").write_text("class Base:\n    def factor(self):\n        return 3\n")
    assert _run_script(script, home).split() == ["30", "completed"]


def test_two_lambdas_on_one_line_are_different_tasks():
    inc1, dbl = fk.task(name="inc1")(lambda x: x + 1), fk.task(name="dbl")(lambda x: x * 2)

    @fk.flow
    def f():
        return inc1(10), dbl(10)

    assert f() == (11, 20) and f() == (11, 20)


def test_frozenset_tokens_do_not_depend_on_the_hash_seed(tmp_path):
    code = "from flowkit.hashing import token; print(token(frozenset({'a', 'b', 'c', 'd', 'e'})))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert len(outs) == 1


def test_identical_calls_in_one_flow_are_all_served_from_the_cache():
    @fk.flow
    def f():
        return inc.map([1, 1, 2])

    assert f() == [2, 2, 3]
    run = f.run()
    assert {tr.status for tr in run.task_runs} == {"cached"}


def test_an_expired_ttl_recomputes_what_depends_on_it_too():
    clock = fk.ManualClock()
    price = {"now": 100}

    @fk.task(cache_ttl=60)
    def quote():
        return price["now"]

    @fk.task
    def describe(p):
        return f"price is {p}"

    @fk.flow(clock=clock)
    def f():
        return describe(quote())

    assert f() == "price is 100"
    price["now"] = 200
    clock.advance(61)
    assert f() == "price is 200"


def test_keyword_names_cannot_collide_with_the_key_format():
    @fk.task
    def opts(**kw):
        return sorted(kw.items())

    @fk.flow
    def f(weird: bool):
        return opts(**{"a=1,b": 2}) if weird else opts(a=1, b=2)

    assert f(False) == [("a", 1), ("b", 2)]
    assert f(True) == [("a=1,b", 2)]


def test_an_unconsumed_map_over_a_run_time_value_still_runs():
    @fk.task
    def upto(n):
        return list(range(n))

    @fk.flow
    def f(n: int):
        inc.map(upto(n))

    f(3)
    assert CALLS.count("inc") == 3
    CALLS.clear()
    f(3)
    assert CALLS == []  # the items were cached


def test_unchanged_file_inputs_are_not_read_again(tmp_path, monkeypatch):
    import flowkit.store as store_module

    data = tmp_path / "in.txt"
    data.write_text("hello")
    reads = []
    real = store_module.file_digest
    monkeypatch.setattr(store_module, "file_digest", lambda p: reads.append(p) or real(p))

    @fk.task
    def size(path, k):
        return len(path.read_text()) * k

    @fk.flow
    def f():
        return [size(fk.File(data), k) for k in range(4)]

    f()
    f()
    assert len(reads) == 1  # hashed once; then the size+mtime shortcut


@fk.task
def affine(x: int, factor: int, *, offset: int = 0, **extra: int) -> int:
    CALLS.append("affine")
    return x * factor + offset + sum(extra.values())


def test_one_call_spelled_with_positions_or_keywords_in_any_order_is_one_cache_entry():
    spellings = [
        lambda a: affine(a, 2, offset=1, z=3, y=4),
        lambda a: affine(x=a, factor=2, z=3, offset=1, y=4),
        lambda a: affine(a, factor=2, z=3, y=4, offset=1),
        lambda a: affine(offset=1, z=3, factor=2, x=a, y=4),  # **extra gets z, y in this order every time
    ]

    @fk.flow
    def f(spelling: int, factor: int = 2):
        a = inc(1)
        return spellings[spelling](a) if factor == 2 else affine(a, factor=factor, offset=1, z=3, y=4)

    runs = [f.run(i) for i in range(len(spellings))]
    assert [r.result() for r in runs] == [12] * 4
    assert CALLS.count("affine") == 1  # the first spelling ran; the others were hits
    assert {tr.status for r in runs[1:] for tr in r.task_runs} == {"cached"}
    assert f.run(0, factor=3).result() == 14 and CALLS.count("affine") == 2  # another value is another key


@fk.task
def ordered(x: int, **options: int) -> list[str]:
    return list(options)


@fk.task
def pair(x: int, y: int = 0, /, **rest: int) -> tuple[int, int, dict[str, int]]:
    return x, y, rest


def test_a_task_receives_its_call_as_written_whatever_the_key_spelling():
    @fk.flow
    def f():
        return ordered(0, b=1, a=2), ordered.map([0], b=1, a=2), ordered(0, a=2, b=1)

    direct, mapped, swapped = f()
    assert direct == ["b", "a"] and mapped == [["b", "a"]]  # **options sees the order of the call...
    assert swapped == ["a", "b"]  # ...so another order is another call, with its own key
    assert canonical_call(pair, (1,), {"y": 5}) == ((1,), {"y": 5})  # positional-only: y=5 goes to **rest


def test_a_map_item_and_the_same_direct_call_are_one_cache_entry():
    @fk.flow
    def direct():
        return add(1, y=5), add(2, 5)

    @fk.task
    def upto(n: int) -> list[int]:
        return list(range(1, n + 1))

    @fk.flow
    def mapped(n: int):
        return add.map([1, 2], y=5), add.map(upto(n), y=inc(4)), add.map(upto(n), y=inc(4))

    assert direct() == (6, 7)
    run = mapped.run(2)
    assert run.result() == ([6, 7], [6, 7], [6, 7])  # the map over a run-time list passes y on too
    assert run.task_run("add[0]").status == run.task_run("add[1]").status == "cached"
    again = mapped.run(2)
    assert again.result() == run.result() and {tr.status for tr in again.task_runs} == {"cached"}


@fk.task
def scaled(x: int, factor: float = 2.0, *, label: str | None = None) -> float:
    CALLS.append("scaled")
    return x * factor


_UNSET = object()


@fk.task
def marked(x: int, marker: object = _UNSET) -> bool:
    return marker is _UNSET


def test_leaving_out_a_plain_default_is_the_call_that_passes_it():
    spellings = [lambda a: scaled(a), lambda a: scaled(a, 2.0), lambda a: scaled(a, factor=2.0, label=None)]

    @fk.flow
    def f(spelling: int):
        return spellings[spelling](inc(1))

    assert [f(i) for i in range(3)] == [4.0] * 3 and CALLS.count("scaled") == 1
    # A default that is not a plain value is never filled in: the task can tell it was left out.
    assert canonical_call(marked, (1,), {}, plain_defaults(marked)) == ((1,), {})
    assert canonical_call(scaled, (1,), {}, plain_defaults(scaled)) == ((1, 2.0), {"label": None})


PRICES: dict[str, int] = {}  # read by the tasks below; a global, so not part of their code fingerprints


@fk.task
def symbols() -> list[str]:
    return sorted(PRICES)


@fk.task(cache_ttl=60)
def quote(symbol: str) -> int:
    return PRICES[symbol]


@fk.task
def portfolio(quotes: list[int]) -> int:
    CALLS.append("portfolio")
    return sum(quotes)


def test_a_stale_item_of_a_map_over_a_run_time_list_makes_what_was_computed_from_it_stale():
    clock = fk.ManualClock()
    PRICES.clear()
    PRICES.update(a=1, b=2)

    @fk.flow(clock=clock)
    def f():
        return portfolio(quote.map(symbols()))

    assert f() == 3
    PRICES["a"] = 10
    clock.advance(30)
    assert f() == 3 and CALLS == ["portfolio"]  # the quotes are fresh: nothing reran
    clock.advance(31)
    run = f.run()  # the quotes went stale, and so did the sum: both are computed again
    assert run.result() == 12 and CALLS == ["portfolio", "portfolio"]
    assert run.task_run("symbols").status == "cached"
    assert {run.task_run(f"quote[{i}]").status for i in range(2)} == {"completed"}


def provide_session(fn):
    """A wrapper that tells an argument left out from one passed, as some libraries' decorators do."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "session" in kwargs:
            return fn(*args, **kwargs)
        return fn(*args, session="default session", **kwargs)

    return wrapper


@fk.task
@provide_session
def fetch_with(url: str, session: str | None = None) -> str:
    return f"{url} via {session}"


@fk.task
def read_as(path: str, rows: int = 10) -> tuple[str, int]:
    return path, rows


def test_a_task_is_called_as_written_whatever_its_key_spelling():
    @fk.flow
    def f():
        return fetch_with("x"), fetch_with("y", session="mine"), read_as("p")

    assert f() == ("x via default session", "y via mine", ("p", 10))
    original = read_as.fn.__defaults__
    read_as.fn.__defaults__ = (99,)  # a default patched after decoration (a test's monkeypatch)
    try:
        assert f()[2] == ("p", 99)  # read when the flow runs: its key changed with it
    finally:
        read_as.fn.__defaults__ = original
    assert f()[2] == ("p", 10)


def test_a_changed_cache_ttl_counts_for_entries_already_stored():
    clock = fk.ManualClock()

    @fk.flow(clock=clock)
    def f(ttl: int):
        return inc.with_options(cache_ttl=ttl)(1)

    f(60)
    clock.advance(120)
    assert f(3600) == 2 and CALLS == ["inc"]  # stored under a 60 s ttl, still fresh under an hour


@fk.task
def _parts(n: int) -> list[int]:
    return list(range(n))


@fk.task
def _same(x: int) -> int:
    return 7  # every item's value has the same bytes


@fk.flow
def _mapped(n: int = 40) -> list[int]:
    return _same.map(_parts(n))


def test_a_cached_rerun_loads_the_small_values_of_a_maps_items_without_a_query_each(home, monkeypatch):
    from flowkit.store.sql import SQLMetadataStore

    assert _mapped.run().value == [7] * 40
    single: list[str] = []
    real = SQLMetadataStore.inline_data
    monkeypatch.setattr(SQLMetadataStore, "inline_data", lambda self, a: single.append(a) or real(self, a))
    again = _mapped.run()
    assert again.value == [7] * 40 and again.counts() == {"cached": 41}
    assert single == []  # prefetched with the map's expansion, one query for all of them


def test_a_cached_rerun_checks_the_entries_of_a_maps_items_in_one_query(home, monkeypatch):
    from flowkit.store.sql import SQLMetadataStore

    _mapped.run()
    asked: list[list[str]] = []
    real = SQLMetadataStore.unbound_entries
    monkeypatch.setattr(SQLMetadataStore, "unbound_entries", lambda self, keys: asked.append(list(keys)) or
                        real(self, keys))
    again = _mapped.run()
    assert again.value == [7] * 40 and again.counts() == {"cached": 41}
    assert [len(keys) for keys in asked] == [1, 40]  # the list's entry when planned, then every item's at once


@fk.task(checks=[fk.checks.no_nulls()], cache_version=3)
def _checked(x, items=None):
    return x


@fk.task(cache=False)
def _uncached(x):
    return x


@fk.flow
def _every_kind_of_call(n: int):
    first = add(1, 2)
    checked = _checked(first, items=[1, 2, {"k": 1}])
    fresh = _uncached(checked)
    return [inc.map([1, 2, 3]), inc.map(fresh), add(fresh, y=None), add(x=(1, 2), y=n), _checked(x=b"raw")]


def test_what_a_key_makes_once_per_task_gives_each_node_the_key_a_maker_of_its_own_gives():
    from flowkit.cache import KeyMaker

    graph = _every_kind_of_call.graph(4)
    kinds = {node.kind for node in graph.nodes.values()}
    assert {"task", "map", "dynamic_map"} <= kinds
    keys = KeyMaker("salt").keys(graph.nodes)  # one maker: a task's part made once, for all its nodes
    alone: dict[str, str] = {}
    for node_id, node in graph.nodes.items():  # a maker for each node: nothing carried over
        alone[node_id] = KeyMaker("salt").key(node, [alone[d] for d in node.deps])
    assert keys == alone
    assert len(set(keys.values())) == len(keys)  # the same task as a call, a map and with checks: other keys
