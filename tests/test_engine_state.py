"""The engine's transitions, one at a time: a small RunState by hand, its values before and after.

No executor, store or clock: each test builds the state a run would be in and
compares the fields a transition changes (as dask's ``test_local.py`` does for
``start_state_from_dask`` and ``finish_task``).
"""

from __future__ import annotations

from collections import deque

import pytest

import flowkit as fk
from flowkit._template import Slot
from flowkit.engine import (
    RELEASED,
    Eager,
    Release,
    RunState,
    attempted,
    complete,
    defer,
    done_with,
    expand,
    fail,
    fire_timers,
    forget,
    halt,
    make_available,
    materialize,
    plan_retry,
    release,
    retire_idle,
    schedule,
    skip,
    succeed,
    undefer,
)
from flowkit.executors import Completion
from flowkit.graph import Node
from flowkit.records import Attempt
from flowkit.store.protocols import CacheHit


@fk.task
def t(*xs: int) -> int:
    return sum(xs)


@fk.task(retries=3, retry_delay=1.0, backoff=2.0, jitter=0.5)
def flaky(*xs: int) -> int:
    return sum(xs)


def node(node_id: str, *deps: str, kind: str = "task", task: fk.Task = t) -> Node:
    return Node(node_id, task, kind, tuple(Slot(i) for i in range(len(deps))), None, deps)


def hit(node_id: str) -> CacheHit:
    return CacheHit(f"art-{node_id}", 0.0, "pickle", None, 1, None, f"old/{node_id}", False)


def state_of(*nodes: Node, hits: tuple[str, ...] = (), keep: tuple[str, ...] = (), eager: bool = False) -> RunState:
    state = RunState("r", {n.id: n for n in nodes}, release=Release(keep=set(keep)), eager=Eager(enabled=eager))
    state.keys = {n.id: f"key-{n.id}" for n in nodes}
    state.hits = {h: hit(h) for h in hits}
    return state


def diamond(**kw) -> RunState:
    return state_of(node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c"), keep=("d",), **kw)


def failure(key: str, error: BaseException | None = None, started: float = 1.0, ended: float = 2.0,
            lost: tuple[str, ...] = ()) -> Completion:
    return Completion(key, None, error or OSError("flaky"), started, ended, "w", lost=lost)


def never_cut(key: str, node: Node) -> bool:
    return False


# --- the module docstring's example ------------------------------------------------------------


def test_the_worked_example_of_the_module_docstring():
    state = diamond()
    assert schedule(state, ["d"]) == ([], [])
    assert (state.plan.waiting, list(state.plan.ready)) == ({"a": 0, "b": 1, "c": 1, "d": 2}, ["a"])
    assert state.plan.dependents == {"a": ["b", "c"], "b": ["d"], "c": ["d"]}
    assert state.release.consumers == {"a": 2, "b": 1, "c": 1}
    assert state.plan.scheduled == {"a", "b", "c", "d"} and state.plan.loads == set()

    state.plan.ready.popleft()
    assert succeed(state, "a", "A") == ()
    assert state.handles == {"a": "A"} and list(state.plan.ready) == ["b", "c"]
    assert state.plan.waiting == {"a": 0, "b": 0, "c": 0, "d": 2} and state.release.done == {"a"}

    assert fail(state, "b") == ["d"]  # d is to be recorded skipped
    assert state.failed == ["b"] and state.skipped == {"d"} and state.release.done == {"a", "b", "d"}
    assert state.release.consumers == {"a": 1, "b": 0, "c": 0}

    succeed(state, "c", "C")
    assert state.handles == {"a": RELEASED, "c": RELEASED}
    assert state.release.consumers == {"a": 0, "b": 0, "c": 0}
    assert list(state.plan.ready) == ["b", "c"]  # not d: it was skipped


def test_the_rerun_of_the_worked_example_loads_the_hits_that_running_tasks_need():
    state = diamond(hits=("a", "c"))
    assert schedule(state, ["d"]) == ([], [])
    assert state.plan.loads == {"a", "c"} and state.plan.scheduled == {"a", "b", "c", "d"}
    assert list(state.plan.ready) == ["a", "c"]
    assert state.plan.waiting == {"b": 1, "d": 2}


# --- planning ----------------------------------------------------------------------------------


def test_schedule_records_hits_and_tasks_nobody_needs_without_scheduling_them():
    state = state_of(node("a"), node("b", "a"), node("c", "b"), hits=("b", "c"), keep=("c",))
    assert schedule(state, ["c"]) == (["b"], ["a"])  # b: cached, never loaded; a: unneeded
    assert state.plan.scheduled == {"c"} and state.plan.loads == {"c"} and list(state.plan.ready) == ["c"]


def test_an_idle_hit_stops_pinning_a_value_that_a_running_task_shares():
    state = state_of(node("x"), node("y", "x"), node("h", "x"), hits=("h",), keep=("y",))
    assert schedule(state, ["y"]) == (["h"], [])
    assert state.release.consumers == {"x": 1} and state.release.done == {"h"}  # only y takes x now


def test_an_idle_hit_that_feeds_a_load_keeps_its_inputs_in_case_the_load_fails():
    state = state_of(node("x"), node("u", "x"), node("h", "u"), node("y", "x"), hits=("u", "h"), keep=("h", "y"))
    assert schedule(state, ["h", "y"]) == (["u"], [])
    retire_idle(state)  # again: nothing changes
    assert state.release.consumers == {"x": 2, "u": 1} and state.release.done == set()


def test_materialize_schedules_what_a_node_needs_first():
    state = state_of(node("a"), node("b", "a"), node("c", "b", "a"))
    assert materialize(state, "c") == []
    assert state.plan.scheduled == {"a", "b", "c"} and list(state.plan.ready) == ["a"]
    assert state.plan.dependents == {"a": ["b", "c"], "b": ["c"]} and state.plan.waiting == {"a": 0, "b": 1, "c": 2}
    assert materialize(state, "c") == [] and list(state.plan.ready) == ["a"]  # once only


def test_materialize_skips_a_node_whose_input_failed():
    state = state_of(node("a"), node("b", "a"), node("c", "b"))
    state.failed = ["a"]
    state.plan.scheduled = {"a"}
    state.release.consumers = {"a": 1, "b": 1}
    assert materialize(state, "c") == ["b", "c"]  # to be recorded skipped
    assert state.skipped == {"b", "c"} and list(state.plan.ready) == [] and state.plan.waiting == {"b": 0, "c": 0}
    assert state.release.consumers == {"a": 0, "b": 0}


# --- completing and releasing ------------------------------------------------------------------


def test_complete_readies_only_dependents_with_every_input_and_not_skipped_or_submitted():
    state = state_of(node("a"), node("b", "a"), node("c", "a"), node("d", "a", "b"))
    state.plan.waiting = {"b": 1, "c": 1, "d": 2}
    state.plan.dependents = {"a": ["b", "c", "d"]}
    state.skipped = {"c"}
    complete(state, "a", 1)
    assert state.handles == {"a": 1} and list(state.plan.ready) == ["b"]
    assert state.plan.waiting == {"b": 0, "c": 0, "d": 1} and state.plan.dependents == {}


def test_done_with_counts_each_input_once_per_use_and_only_once_per_node():
    state = state_of(node("a"), node("b", "a", "a"), node("c", "a"))
    state.release.consumers = {"a": 3}
    state.handles = {"a": 1}
    done_with(state, "b")
    assert state.release.consumers == {"a": 1} and state.handles == {"a": 1}  # c still takes it
    done_with(state, "b")
    assert state.release.consumers == {"a": 1}
    done_with(state, "c")
    assert state.release.consumers == {"a": 0} and state.handles == {"a": RELEASED}
    assert state.release.done == {"b", "c"}


def test_release_drops_only_an_unconsumed_value_the_flow_does_not_return():
    state = state_of(node("a"), node("b"), node("c"), keep=("b",))
    state.handles = {"a": 1, "b": 2}
    state.release.consumers = {"a": 1}
    for key in ("a", "b", "c"):
        release(state, key)
    assert state.handles == {"a": 1, "b": 2}
    state.release.consumers["a"] = 0
    release(state, "a")
    assert state.handles == {"a": RELEASED, "b": 2}


def test_succeed_releases_a_value_nothing_takes_unless_the_flow_returns_it():
    state = state_of(node("a"), node("b"), keep=("b",))
    succeed(state, "a", 1)
    succeed(state, "b", 2)
    assert state.handles == {"a": RELEASED, "b": 2} and state.release.done == {"a", "b"}


# --- failing and skipping ----------------------------------------------------------------------


def test_skip_marks_everything_downstream_and_returns_the_tasks_to_record():
    state = state_of(node("a"), node("m", "a", kind="map"), node("b", "m"), node("c", "b", "a"))
    state.plan.dependents = {"a": ["m", "c"], "m": ["b"], "b": ["c"]}
    state.release.consumers = {"a": 2, "m": 1, "b": 1}
    state.eager.deferred = {"b": failure("b")}
    assert skip(state, ["m"]) == ["b", "c"]  # not the map: only tasks are recorded
    assert state.skipped == {"m", "b", "c"} and state.eager.deferred == {}
    assert state.release.consumers == {"a": 0, "m": 0, "b": 0} and state.release.done == {"m", "b", "c"}
    assert skip(state, ["b"]) == []


def test_a_node_with_a_value_is_skipped_without_a_record():
    state = state_of(node("a"))
    state.handles = {"a": 1}
    assert skip(state, ["a"]) == [] and state.skipped == {"a"}


def test_fail_skips_the_dependents_and_frees_the_inputs():
    state = diamond()
    schedule(state, ["d"])
    complete(state, "a", 1)
    assert fail(state, "c") == ["d"]
    assert state.failed == ["c"] and state.skipped == {"d"} and state.release.consumers == {"a": 1, "b": 0, "c": 0}


def test_forget_turns_a_load_that_failed_into_a_run():
    state = state_of(node("a"), node("b", "a"), hits=("a", "b"), keep=("b",))
    schedule(state, ["b"])
    state.plan.ready.popleft()
    state.submitted = {"b"}  # the load was submitted, and failed
    assert forget(state, "b") == []
    assert "b" not in state.hits and state.submitted == set() and state.plan.loads == {"a"}
    assert state.plan.scheduled == {"a", "b"} and list(state.plan.ready) == ["a"]  # b now needs a: loaded
    assert state.plan.waiting == {"b": 1} and state.plan.dependents == {"a": ["b"]}


def test_halt_gives_up_retries_takes_back_early_handovers_and_skips_the_rest():
    state = state_of(node("a"), node("b"), node("c", "a"), node("d", "b"), node("e", "c"), eager=True)
    schedule(state, ["d", "e"])
    state.plan.ready.clear()
    state.submitted = {"a", "c"}  # a runs; c was handed over early (a has no value yet)
    state.eager.inflight = {"a": "fa", "c": "fc"}
    earlier = Attempt(1, 1.0, 2.0, "OSError: flaky")
    state.retry.attempts = {"b": [earlier]}
    state.retry.timers = [(5.0, 0, "b")]
    state.plan.ready = deque(["x"])
    given_up, early, skipped = halt(state)
    assert given_up == [("b", (earlier,))] and early == ["c"] and sorted(skipped) == ["c", "d", "e"]
    assert state.stopped and state.failed == ["b"] and state.skipped == {"c", "d", "e"}
    assert state.retry.timers == [] and state.retry.attempts == {} and list(state.plan.ready) == []


# --- retrying ----------------------------------------------------------------------------------


def test_plan_retry_files_the_attempt_and_sets_a_timer_from_the_policy_and_the_clock():
    state = state_of(node("b", task=flaky))
    state.submitted = {"b"}
    state.plan.ready = deque(["b"])
    history, delay = plan_retry(state, failure("b"), flaky.options, now=10.0, spread=0.0)
    first = Attempt(1, 1.0, 2.0, "OSError: flaky")
    assert (history, delay) == ((first,), 1.0)
    assert state.retry.attempts == {"b": [first]} and state.retry.timers == [(11.0, 0, "b")]
    assert state.submitted == set() and list(state.plan.ready) == []

    assert fire_timers(state, 10.5) == 0 and list(state.plan.ready) == []
    assert fire_timers(state, 11.0) == 1 and list(state.plan.ready) == ["b"] and state.retry.timers == []

    history, delay = plan_retry(state, failure("b", started=12.0, ended=13.0), flaky.options, now=20.0, spread=0.5)
    assert delay == 2.0 + 2.0 * 0.5 * 0.5  # retry_delay * backoff ** 1, plus half the jitter
    assert [a.number for a in history] == [1, 2] and state.retry.timers == [(22.5, 0, "b")]


def test_fire_timers_fires_in_due_order():
    state = state_of(node("a"), node("b"), node("c"))
    state.retry.timers = [(1.0, 0, "c"), (3.0, 1, "a"), (2.0, 2, "b")]
    assert fire_timers(state, 2.5) == 2
    assert list(state.plan.ready) == ["c", "b"] and state.retry.timers == [(3.0, 1, "a")]


def test_attempted_counts_attempts_lost_with_their_worker():
    state = state_of(node("a"))
    done = Completion("a", 1, None, 5.0, 6.0, "w2", lost=("w1",))
    assert attempted(state, done) == (Attempt(1, None, None, "worker w1 was lost during the attempt"),
                                      Attempt(2, 5.0, 6.0, None))
    assert state.retry.attempts == {}


# --- eager hand-over ---------------------------------------------------------------------------


def test_make_available_readies_a_dependent_once_every_input_is_available():
    state = state_of(node("a"), node("b"), node("c"), node("r", "a", "b", "c"), eager=True)
    schedule(state, ["r"])
    state.plan.ready.clear()
    make_available(state, "a", never_cut)
    make_available(state, "a", never_cut)  # once only
    make_available(state, "b", never_cut)
    assert state.eager.missing == {"r": 1} and list(state.plan.ready) == []
    make_available(state, "c", never_cut)
    assert state.eager.missing == {"r": 0} and list(state.plan.ready) == ["r"]
    assert state.eager.available == {"a", "b", "c"}


@pytest.mark.parametrize("kind, hits, cut", [("dynamic_map", (), False), ("task", ("r",), False),
                                             ("task", (), True)], ids=["dynamic map", "load", "cutoff"])
def test_make_available_never_hands_over_early_what_needs_values(kind, hits, cut):
    state = state_of(node("a"), node("r", "a", kind=kind), hits=hits, eager=True)
    state.plan.dependents = {"a": ["r"]}
    state.plan.loads = set(hits)
    make_available(state, "a", lambda key, n: cut)
    assert state.eager.missing == {"r": 0} and list(state.plan.ready) == []


def test_a_failure_handed_over_early_waits_for_its_inputs_then_becomes_its_own():
    state = state_of(node("a"), node("b", "a"), eager=True)
    schedule(state, ["b"])
    done = failure("b")
    assert defer(state, done) and state.eager.deferred == {"b": done}
    assert undefer(state, "b") is None  # a has no value yet
    assert succeed(state, "a", 1) == ["b"]
    assert undefer(state, "b") is done and state.eager.deferred == {}


def test_a_failure_handed_over_early_is_dropped_when_an_input_fails():
    state = state_of(node("a"), node("b", "a"), eager=True)
    schedule(state, ["b"])
    defer(state, failure("b"))
    assert fail(state, "a") == ["b"] and state.eager.deferred == {}


def test_a_failure_whose_inputs_all_have_values_is_not_deferred():
    state = state_of(node("a"), node("b", "a"), eager=True)
    state.handles = {"a": 1}
    assert not defer(state, failure("b")) and state.eager.deferred == {}


# --- dynamic maps ------------------------------------------------------------------------------


def test_expand_turns_a_dynamic_map_into_items_and_moves_the_consumers():
    state = state_of(node("s"), node("m", "s", kind="dynamic_map"), node("z", "m"), eager=True)
    schedule(state, ["z"])
    state.handles = {"s": [1, 2, 3]}
    state.eager.missing = {"m": 0}
    children = expand(state, state.nodes["m"], 3)
    assert list(children) == ["m[0]", "m[1]", "m[2]"] and all(c.deps == ("s",) for c in children.values())
    assert (state.nodes["m"].kind, state.nodes["m"].deps) == ("map", ("m[0]", "m[1]", "m[2]"))
    assert state.release.consumers == {"s": 3, "m": 1, "m[0]": 1, "m[1]": 1, "m[2]": 1}
    assert "m" not in state.plan.scheduled and state.eager.missing == {} and state.expanded
    assert state.handles == {"s": [1, 2, 3]}
    assert materialize(state, "m") == [] and list(state.plan.ready)[-3:] == ["m[0]", "m[1]", "m[2]"]


def test_expanding_over_nothing_releases_the_iterable():
    state = state_of(node("s"), node("m", "s", kind="dynamic_map"))
    schedule(state, ["m"])
    state.handles = {"s": []}
    assert expand(state, state.nodes["m"], 0) == {}
    assert state.release.consumers == {"s": 0} and state.handles == {"s": RELEASED}
