"""FlowGraph: the networkx view, stable node ids, Mermaid and DOT export."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

import flowkit as fk
from conftest import add, diamond, fan, inc, linear, one


def test_graph_is_a_networkx_digraph_with_task_names():
    g = diamond.graph()
    assert isinstance(g, fk.FlowGraph) and isinstance(g.nx, nx.DiGraph)
    assert sorted(g.nx.edges) == [("inc", "add"), ("inc#2", "add"), ("one", "inc"), ("one", "inc#2")]
    assert {n: d["task"] for n, d in g.nx.nodes(data=True)} == {"one": "one", "inc": "inc", "inc#2": "inc",
                                                               "add": "add"}
    assert nx.is_directed_acyclic_graph(g.nx)
    assert g.nx.nodes["add"]["node"] is g["add"]


def test_node_ids_are_stable_across_traces_with_the_same_parameters():
    assert list(linear.graph(5).nodes) == list(linear.graph(5).nodes)
    assert list(fan.graph(3).nodes) == ["inc", "inc#2", "inc#3", "total"]


def test_mermaid_and_dot_exports_list_every_node_and_edge():
    g = diamond.graph()
    mermaid = g.to_mermaid()
    assert mermaid.startswith("flowchart TD\n")
    assert mermaid.count("-->") == 4 and '["inc#2"]' in mermaid
    dot = g.to_dot()
    assert dot.startswith('digraph "diamond" {') and dot.count("->") == 4
    assert '"one" -> "inc#2";' in dot


@st.composite
def dags(draw):
    """A random DAG as a list where entry i lists the earlier nodes node i depends on."""
    n = draw(st.integers(1, 25))
    return [sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) if i else [] for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(dags())
def test_any_traced_dag_matches_its_shape_and_runs_in_dependency_order(shape):
    order: list[int] = []

    @fk.task
    def node(i, *ups):
        assert all(u in order for u in ups)  # upstream values arrive first
        order.append(i)
        return i

    @fk.flow(store=False)
    def f():
        refs = []
        for i, deps in enumerate(shape):
            refs.append(node(i, *[refs[d] for d in deps]))
        return refs

    g = f.graph()
    relabel = {nid: i for i, nid in enumerate(g.nodes)}
    assert sorted(relabel.values()) == list(range(len(shape)))
    assert sorted((relabel[u], relabel[v]) for u, v in g.nx.edges) == sorted(
        (d, i) for i, deps in enumerate(shape) for d in deps)
    assert f() == list(range(len(shape)))
    assert sorted(order) == list(range(len(shape)))


def test_add_of_same_ref_twice_has_one_edge():
    @fk.flow
    def f():
        a = one()
        return add(a, a)

    g = f.graph()
    assert list(g.nx.edges) == [("one", "add")]
    assert g["add"].deps == ("one",)
    assert f() == 2
    assert inc(1) == 2
