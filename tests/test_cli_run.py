"""`flowkit run` in-process (click's CliRunner): option parsing, parameters, progress output."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from flowkit.cli import main

FLOWS = textwrap.dedent('''
    import typing

    import flowkit as fk


    @fk.task
    def load(rows: int) -> list[int]:
        return list(range(rows))


    @fk.task
    def total(xs: list[int], scale: float) -> float:
        return sum(xs) * scale


    @fk.flow
    def pipeline(rows: int = 10, scale: float = 1.0, label: str = "x", anything: typing.Any = None,
                 limit: float = float("inf")):
        return total(load(rows), scale)
''')


@pytest.fixture
def flows(tmp_path):
    path = tmp_path / "pipeline.py"
    path.write_text(FLOWS)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_json(*args: str) -> dict:
    out = invoke("run", *args, "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def counts_by_node(result: dict, home) -> dict[str, str]:
    from flowkit.store import Store

    return {tr.node: tr.status for tr in Store.open(home).run(result["run_id"]).task_runs}


def test_refresh_is_a_flag_that_parses_before_the_target(flows, home):
    run_json(f"{flows}:pipeline", "-p", "rows=5")
    again = run_json("--refresh", f"{flows}:pipeline", "-p", "rows=5")
    assert again["counts"] == {"completed": 2} and again["result"] == 10.0


def test_refresh_task_recomputes_that_task_and_what_is_downstream(flows, home):
    run_json(f"{flows}:pipeline", "-p", "rows=5")
    only_total = run_json("--refresh-task", "total", f"{flows}:pipeline", "-p", "rows=5")
    assert counts_by_node(only_total, home) == {"load": "cached", "total": "completed"}
    from_load = run_json(f"{flows}:pipeline", "-p", "rows=5", "--refresh-task", "load")
    assert counts_by_node(from_load, home) == {"load": "completed", "total": "completed"}
    both = run_json(f"{flows}:pipeline", "--refresh-task", "total", "--refresh-task", "load", "-p", "rows=5")
    assert both["counts"] == {"completed": 2}
