"""Lineage answers for this value of this task run, even when other tasks made the same bytes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main


@fk.task
def double(x: int) -> int:
    return x * 2


@fk.task
def add_two(x: int) -> int:
    return x + 2


@fk.task
def report(value: int) -> str:
    return f"value {value}"


@fk.flow
def fa(x: int = 3) -> str:
    return report(double(x))


@fk.flow
def fb(x: int = 4) -> str:
    return report(add_two(x))


def producers_of(g, node):
    return [p for p in g.predecessors(node) if g.nodes[p]["kind"] == "task_run"]


def test_identical_bytes_from_another_flow_do_not_take_over_a_task_runs_lineage():
    first = fa.run()   # double(3) = 6
    second = fb.run()  # add_two(4) = 6: the same bytes, another task, another flow
    digest = second.artifact_id("add_two")
    assert digest == first.artifact_id("double")

    g = fk.lineage(second.task_run("add_two"))
    assert g.graph["root"] == digest
    assert producers_of(g, digest) == [f"{second.id}/add_two"]
    (producer,) = producers_of(g, digest)
    assert (g.nodes[producer]["task"], g.nodes[producer]["flow"]) == ("add_two", "fb")
    params = {g.nodes[p]["name"]: g.nodes[p]["repr"] for p in g.predecessors(producer)}
    assert params == {"x": "4"}
    assert not any(d.get("task") == "double" for _, d in g.nodes(data=True))

    # downstream too: report's input leads to add_two of this run, not to double of fa
    up = fk.lineage(f"{second.id[:8]}/report")
    assert f"{second.id}/add_two" in up and f"{first.id}/double" not in up

    # a bare digest cannot say which one: every producer, newest first
    both = fk.lineage(digest)
    assert both.nodes[digest]["producers"] == [f"{second.id}/add_two", f"{first.id}/double"]
    assert set(producers_of(both, digest)) == {f"{second.id}/add_two", f"{first.id}/double"}


def test_a_cached_task_run_leads_to_the_task_run_that_computed_its_value():
    first = fb.run()
    fa.run()  # the same bytes again, computed by double in another flow, later
    again = fb.run()
    cached = again.task_run("add_two")
    assert cached.status == "cached" and cached.source == f"{first.id}/add_two"
    g = fk.lineage(cached)
    assert producers_of(g, cached.artifact_id) == [f"{first.id}/add_two"]
    # and the same holds read back from the store
    assert fk.runs(flow="fb", limit=1)[0].task_run("add_two").source == f"{first.id}/add_two"


def test_the_cli_follows_a_task_run_and_lists_every_producer_of_a_digest():
    first = fa.run()
    second = fb.run()
    digest = second.artifact_id("add_two")
    runner = CliRunner()
    pinned = runner.invoke(main, ["lineage", f"{second.id}/add_two"])
    assert pinned.exit_code == 0, pinned.output
    assert "task add_two" in pinned.output and "double" not in pinned.output
    every = runner.invoke(main, ["lineage", digest])
    assert every.exit_code == 0, every.output
    assert every.output.index("task add_two") < every.output.index("task double")
    assert first.id[:12] in every.output
    missing = runner.invoke(main, ["lineage", f"{second.id}/nope"])
    assert missing.exit_code == 2 and "no task run of node 'nope'" in missing.output


def test_lineage_of_an_artifact_gc_removed_says_so_and_keeps_the_record(home):
    run = fa.run()
    store = fk.Store.open()
    digest = run.artifact_id("double")
    store.clear_cache()
    later = run.started + 90 * 86400
    report = store.gc(now=later)
    assert digest in report.artifacts
    g = fk.lineage(run.task_run("report"))
    node = g.nodes[digest]
    assert node["removed_by"] == "gc" and node["removed"] == pytest.approx(later)
    assert node["type"] == "builtins.int" and node["size"] is not None
    tree = CliRunner().invoke(main, ["lineage", f"{run.id}/report"])
    assert "removed by gc at" in tree.output and "None" not in tree.output
    with pytest.raises(KeyError, match="was removed by gc"):
        store.load(digest)
    # the bytes computed again bring the record back to life
    fa.with_options().run()
    assert store.artifact(digest)["removed"] is None
    assert store.load(digest) == 6


def test_two_parameters_with_the_same_value_are_two_inputs(home):
    @fk.task
    def left(n: int) -> int:
        return n

    @fk.task
    def right(x: int) -> int:
        return x + 1

    @fk.task
    def both(a: int, b: int) -> int:
        return a + b

    @fk.flow
    def f() -> int:
        return both(left(n=1), right(x=1))

    run = f.run()
    g = fk.lineage(run.task_run("both"))
    params = sorted(d["name"] for _, d in g.nodes(data=True) if d["kind"] == "param")
    assert params == ["n", "x"]


@fk.task
def pair(a: int, b: int, label: str = "") -> tuple[int, int]:
    return a, b


@fk.flow
def fc(x: int = 5) -> tuple[int, int]:
    return pair(double(x), add_two(x), label="both")


def test_inputs_computed_in_the_run_are_one_column_and_read_as_before():
    """A cold run keeps its artifact inputs as each consumer's column; a rerun with a cached input, as rows."""
    store = fk.Store.open()
    cold = fc.run()
    rows = store.db.query("SELECT kind, name FROM inputs WHERE run_id = ? AND node = 'pair'", (cold.id,))
    assert rows == [("param", "label")]  # the artifacts are in the column
    assert [(i.kind, i.artifact_id, i.name) for i in store.db.consumed(cold.id, "pair")] == [
        ("artifact", cold.artifact_id("double"), "double"), ("artifact", cold.artifact_id("add_two"), "add_two"),
        ("param", None, "label")]
    assert store.db.run_edges(cold.id) == [("add_two", "pair"), ("double", "pair")]
    assert (cold.id, "pair") in store.db.artifact_consumers(cold.artifact_id("double"))

    rerun = fc.run()  # everything cached: nothing consumed anew, the edges are the source's
    assert all(tr.status == "cached" for tr in rerun.task_runs)
    assert store.db.run_edges(rerun.id) == [("add_two", "pair"), ("double", "pair")]

    @fk.task
    def double_again(x: int) -> int:  # the same bytes as double(5) under another key: pair's input is cached
        return x * 2

    @fk.flow
    def fd(x: int = 5) -> tuple[int, int]:
        return pair(double(x), double_again(x))

    mixed = fd.run()  # double(5) cached from fc, double_again computed
    assert mixed.task_run("double").status == "cached"
    rows = store.db.query("SELECT kind, name FROM inputs WHERE run_id = ? AND node = 'pair'", (mixed.id,))
    assert rows == [("artifact", "double"), ("artifact", "double_again"), ("param", "label")]
    g = fk.lineage(mixed.task_run("pair"))
    assert f"{mixed.id}/double_again" in g and f"{cold.id}/double" in g  # the cached input: its producer
