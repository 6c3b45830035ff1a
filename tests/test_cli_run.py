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


def test_the_live_panel_shows_what_runs_and_counts_what_waits_for_a_thread():
    import io
    import threading

    from rich.console import Console

    import flowkit as fk
    from flowkit.cli.progress import Progress

    release = threading.Event()
    began: list[str] = []
    seen = threading.Condition()

    @fk.task
    def slow(i: int) -> int:
        release.wait(30)
        return i

    @fk.task
    def gather(xs: list[int]) -> int:
        return sum(xs)

    @fk.flow(store=False)
    def four():
        return gather([slow(i) for i in range(4)])

    class Watched(Progress):
        def on_running(self, node: str) -> None:
            super().on_running(node)
            with seen:
                began.append(node)
                seen.notify_all()

    progress = Watched(Console(file=io.StringIO(), force_terminal=True, width=100), live=False)
    result: list = []
    runner = threading.Thread(target=lambda: result.append(
        four.with_options(executor=fk.LocalExecutor(max_workers=2))._run({}, listener=progress)))
    runner.start()
    try:
        with seen:
            assert seen.wait_for(lambda: len(began) == 2, timeout=30)
        panel = progress._panel().plain
    finally:
        release.set()
        runner.join(30)
    running_line = panel.splitlines()[1]
    assert running_line == f"running: {began[0]}, {began[1]}; 2 queued"
    assert result[0].result() == 6 and len(began) == 5  # every task reported once, gather included



def test_piped_output_numbers_every_task_lists_cached_ones_and_pads_nothing(flows, home):
    first = invoke("run", f"{flows}:pipeline", "-p", "rows=3")
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[:2] == [lines[0], lines[1]] and lines[0].startswith("[1/2] completed load in ")
    assert lines[1].startswith("[2/2] completed total in ")
    again = invoke("run", f"{flows}:pipeline", "-p", "rows=3")
    assert again.stdout.splitlines()[:2] == ["[1/2] cached load", "[2/2] cached total"]
    assert "when computed" in again.stdout
    for out in (first.stdout, again.stdout):
        assert all(line == line.rstrip() for line in out.splitlines())
    from flowkit.store import Store

    run_id = Store.open(home).runs(limit=1)[0].id
    shown = invoke("show", run_id[:8]).stdout
    assert shown.count(run_id[:12]) == 1 and shown.startswith(f"run {run_id} of flow pipeline: completed")
    assert all(line == line.rstrip() for line in shown.splitlines())


def test_a_map_over_a_run_time_list_numbers_its_lines_without_promising_a_total(tmp_path, home):
    path = tmp_path / "mapped.py"
    path.write_text("import flowkit as fk\n\n@fk.task\ndef items(n: int) -> list:\n    return list(range(n))\n\n"
                    "@fk.task\ndef double(x):\n    return 2 * x\n\n@fk.flow\ndef mapped(n: int = 3):\n"
                    "    return double.map(items(n))\n")
    out = invoke("run", f"{path}:mapped")
    assert [line.split(" ")[0] for line in out.stdout.splitlines()[:4]] == ["[1]", "[2]", "[3]", "[4]"]
