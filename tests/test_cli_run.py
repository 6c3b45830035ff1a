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
        fk.run_flow(four.with_options(executor=fk.LocalExecutor(max_workers=2)), listeners=[progress])))
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


def fails(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    return " ".join(out.output.split())  # usage errors are wrapped to the terminal's width


def test_a_parameter_given_twice_is_an_error_naming_it(flows):
    assert "parameter 'rows' is given twice (-p rows=3 and -p rows=4)" in fails(
        "run", f"{flows}:pipeline", "-p", "rows=3", "-p", "rows=4")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "Infinity"])
def test_non_finite_floats_are_refused_unless_the_parameter_admits_them(flows, text):
    message = fails("run", f"{flows}:pipeline", "-p", f"scale={text}")
    assert f"-p scale={text}: parameter 'scale' of flow 'pipeline' takes a finite number" in message
    allowed = run_json(f"{flows}:pipeline", "-p", f"limit={text}", "-p", "rows=0")  # its default is inf
    assert allowed["status"] == "completed"


def test_non_finite_values_stay_allowed_for_any_and_text_parameters(flows, home):
    from flowkit.store import Store

    result = run_json(f"{flows}:pipeline", "-p", "label=nan", "-p", "anything=NaN", "-p", "rows=0")
    params = Store.open(home).run(result["run_id"]).params
    assert params["label"] == "nan" and params["anything"] != params["anything"]  # text, and a float NaN


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "rows: 4\nscale: 2\nlabel: hello\n"),
    (".json", '{"rows": 4, "scale": 2, "label": "hello"}'),
    (".toml", 'rows = 4\nscale = 2\nlabel = "hello"\n'),
])
def test_parameters_from_a_file_are_typed_by_the_flow_and_p_overrides_them(flows, tmp_path, home, suffix, text):
    from flowkit.store import Store

    path = tmp_path / f"params{suffix}"
    path.write_text(text)
    result = run_json(f"{flows}:pipeline", "--params", str(path))
    params = Store.open(home).run(result["run_id"]).params
    assert (params["rows"], params["scale"], params["label"]) == (4, 2.0, "hello")
    assert type(params["scale"]) is float and result["result"] == 12.0
    over = run_json(f"{flows}:pipeline", "--params", str(path), "-p", "rows=2")
    assert over["result"] == 2.0


def test_a_bad_parameters_file_is_an_error_naming_the_file(flows, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rows: [1, 2\n")
    assert f"--params {bad}: not valid YAML" in fails("run", f"{flows}:pipeline", "--params", str(bad))
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"rows": "many"}')
    assert f"--params {wrong}: parameter 'rows': 'many' is not a valid int" in fails(
        "run", f"{flows}:pipeline", "--params", str(wrong))
    typed = tmp_path / "typed.json"
    typed.write_text('{"rows": 1.5}')
    assert f"--params {typed}: parameter 'rows': 1.5 is not a valid int" in fails("run", f"{flows}:pipeline", "--params", str(typed))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'red'\n")
    assert f"--params {unknown}: flow 'pipeline' has no parameter 'colour'" in fails(
        "run", f"{flows}:pipeline", "--params", str(unknown))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert "expected a mapping of parameter names to values, got a list" in fails(
        "run", f"{flows}:pipeline", "--params", str(listed))
    assert f"--params {tmp_path / 'none.yaml'}: cannot read the file" in fails(
        "run", f"{flows}:pipeline", "--params", str(tmp_path / "none.yaml"))
    nan = tmp_path / "nan.json"
    nan.write_text('{"scale": NaN}')
    assert "parameter 'scale' of flow 'pipeline' takes a finite number" in fails(
        "run", f"{flows}:pipeline", "--params", str(nan))
