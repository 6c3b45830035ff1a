"""The `flowkit` command, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOWS = textwrap.dedent('''
    import datetime
    import logging

    import flowkit as fk

    log = logging.getLogger("pipeline")


    @fk.task
    def load(rows: int) -> list[int]:
        print(f"loading {rows} rows")
        log.info("loaded %d", rows)
        return list(range(rows))


    @fk.task
    def total(xs: list[int], scale: float) -> float:
        return sum(xs) * scale


    @fk.task
    def explode(x):
        raise ValueError(f"cannot handle {x}")


    @fk.flow
    def pipeline(rows: int = 10, scale: float = 1.0, day: datetime.date = datetime.date(2026, 1, 1),
                 verbose: bool = False, tags: list = []):
        return total(load(rows), scale)


    @fk.flow
    def broken(x: int = 1):
        return explode(load(x))
''')


@pytest.fixture
def flows(tmp_path):
    path = tmp_path / "flows.py"
    path.write_text(FLOWS)
    return path


def flowkit(*args: str, cwd: Path, home: Path, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLOWKIT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "flowkit", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, input=input)


def test_run_converts_parameters_by_type_hints_and_prints_a_summary(flows, tmp_path, home):
    out = flowkit("run", f"{flows}:pipeline", "-p", "rows=4", "-p", "scale=0.5", "-p", "day=2026-03-01",
                  "-p", "verbose=true", "-p", 'tags=["a", "b"]', cwd=tmp_path, home=home)
    assert out.returncode == 0, out.stderr
    assert "[load] loading 4 rows" in out.stdout and "[load] INFO pipeline: loaded 4" in out.stdout
    assert "completed load" in out.stdout and "result: 3.0" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    runs = json.loads(flowkit("runs", "--json", cwd=tmp_path, home=home).stdout)
    assert runs[0]["trigger"] == "cli" and runs[0]["status"] == "completed"
    assert runs[0]["params"] == {"rows": 4, "scale": 0.5, "day": "2026-03-01", "verbose": True,
                                 "tags": ["a", "b"]}


def test_run_json_and_a_single_flow_file_without_a_name(tmp_path, home):
    path = tmp_path / "one.py"
    path.write_text("import flowkit as fk\n\n@fk.task\ndef two():\n    return 2\n\n@fk.flow\ndef only():\n"
                    "    return two()\n")
    out = flowkit("run", str(path), "--json", cwd=tmp_path, home=home)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["status"], data["result"], data["counts"]) == ("completed", 2, {"completed": 1})
    again = json.loads(flowkit("run", str(path), "--json", cwd=tmp_path, home=home).stdout)
    assert again["counts"] == {"cached": 1}
    refreshed = json.loads(flowkit("run", str(path), "--json", "--refresh", cwd=tmp_path, home=home).stdout)
    assert refreshed["counts"] == {"completed": 1}
    by_name = json.loads(flowkit("run", str(path), "--json", "--refresh-task", "two", cwd=tmp_path, home=home).stdout)
    assert by_name["counts"] == {"completed": 1}


def test_a_failed_flow_exits_1_with_the_reason_and_no_traceback(flows, tmp_path, home):
    out = flowkit("run", f"{flows}:broken", cwd=tmp_path, home=home)
    assert out.returncode == 1
    assert "failed: explode after 1 attempt: ValueError: cannot handle [0]" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    run_id = json.loads(flowkit("runs", "--json", "--status", "failed", cwd=tmp_path, home=home).stdout)[0]["id"]
    show = flowkit("show", run_id[:8], cwd=tmp_path, home=home)
    assert show.returncode == 0 and "explode" in show.stdout and "ValueError: cannot handle [0]" in show.stdout
    logs = flowkit("show", run_id[:8], "--logs", "load", cwd=tmp_path, home=home)
    assert logs.stdout == "loading 1 rows\nINFO pipeline: loaded 1\n"
    resumed = flowkit("run", f"{flows}:broken", "--resume", run_id, "--json", cwd=tmp_path, home=home)
    assert json.loads(resumed.stdout)["counts"] == {"cached": 1, "failed": 1}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "nowhere.py:f"], "no such file: nowhere.py"),
        (["run", "{flows}:nope"], "has no flow 'nope'; its flows are: broken, pipeline"),
        (["run", "{flows}"], "defines several flows: broken, pipeline"),
        (["run", "{flows}:pipeline", "-p", "colour=red"], "has no parameter 'colour'; its parameters are: rows: int"),
        (["run", "{flows}:pipeline", "-p", "rows=many"], "'many' is not a valid int"),
        (["run", "{flows}:pipeline", "-p", "day=someday"], "'someday' is not a valid date"),
        (["run", "{flows}:pipeline", "-p", "rows"], "must look like name=value"),
        (["show", "0123456789"], "no run '0123456789'"),
        (["lineage", "0123456789"], "artifact '0123456789' is not in the store"),
        (["run", "{flows}:pipeline", "--resume", "nope"], "cannot resume: no run 'nope'"),
        (["run", "{flows}:pipeline", "--refresh-task", "nothing"], "refresh= names unknown task(s) nothing"),
        (["run", "{flows}:pipeline", "--address", "tcp://127.0.0.1:1", "--workers", "2"],
         "the cluster at --address has its own workers"),
        (["run", "{flows}:pipeline", "--address", "tcp://127.0.0.1:1", "--executor", "local"],
         "cannot go with --executor local"),
        (["show", "0123456789", "--logs", "load", "--json"], "--logs and --json each print something else"),
        (["show", "0123456789", "--traceback", "--logs", "load"], "--traceback and --logs each print"),
    ],
)
def test_bad_input_is_a_clear_message_exit_2_and_no_traceback(flows, tmp_path, home, args, words):
    out = flowkit(*[a.format(flows=flows) for a in args], cwd=tmp_path, home=home)
    assert out.returncode == 2, out.stdout + out.stderr
    assert words in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_an_unreachable_dask_address_is_a_clear_error(flows, tmp_path, home):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = flowkit("run", f"{flows}:pipeline", "--address", f"tcp://127.0.0.1:{port}", cwd=tmp_path, home=home)
    assert out.returncode == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


OWN_EXECUTOR = textwrap.dedent('''
    import os
    import flowkit as fk


    class Marked(fk.LocalExecutor):
        """A local executor that leaves a mark when a run opens it."""

        def session(self, clock):
            open(os.environ["MARK"], "a").write("opened\\n")
            return super().session(clock)


    @fk.task
    def double(x: int) -> int:
        return 2 * x


    @fk.flow(executor=Marked(max_workers=2))
    def mine(x: int = 2):
        return double(x)
''')


def test_run_keeps_the_flows_own_executor_unless_an_option_names_another(tmp_path, home, monkeypatch):
    path = tmp_path / "mine.py"
    path.write_text(OWN_EXECUTOR)
    mark = tmp_path / "mark"
    monkeypatch.setenv("MARK", str(mark))
    out = flowkit("run", str(path), cwd=tmp_path, home=home)
    assert out.returncode == 0, out.stderr
    assert "result: 4" in out.stdout and mark.read_text() == "opened\n"
    out = flowkit("run", str(path), "--executor", "local", "--refresh", cwd=tmp_path, home=home)
    assert out.returncode == 0, out.stderr
    assert mark.read_text() == "opened\n"  # --executor local replaced it
    out = flowkit("run", str(path), "--workers", "3", cwd=tmp_path, home=home)
    assert out.returncode == 2
    assert "runs on its own executor" in out.stderr and "--workers needs --executor local or dask" in out.stderr


def test_a_broken_flow_file_is_reported_with_its_line(tmp_path, home):
    bad = tmp_path / "bad.py"
    bad.write_text("import flowkit as fk\n\nx = 1 / 0\n")
    out = flowkit("run", f"{bad}:f", cwd=tmp_path, home=home)
    assert out.returncode == 2
    assert "importing" in out.stderr and "(line 3): ZeroDivisionError: division by zero" in out.stderr
    debug = flowkit("--debug", "run", f"{bad}:f", cwd=tmp_path, home=home)
    assert "Traceback" in debug.stderr


def test_graph_lineage_and_cache_commands(flows, tmp_path, home):
    mermaid = flowkit("graph", f"{flows}:pipeline", "-p", "rows=3", cwd=tmp_path, home=home)
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("flowchart TD") and "-->" in mermaid.stdout
    dot = flowkit("graph", f"{flows}:pipeline", "--format", "dot", cwd=tmp_path, home=home)
    assert dot.stdout.startswith('digraph "pipeline"') and '"load" -> "total";' in dot.stdout
    png = flowkit("graph", f"{flows}:pipeline", "--format", "png", "-o", str(tmp_path / "g.png"), cwd=tmp_path,
                  home=home)
    if shutil.which("dot"):
        assert png.returncode == 0 and (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert png.returncode == 2 and "needs Graphviz's `dot` program" in png.stderr

    flowkit("run", f"{flows}:pipeline", "-p", "rows=3", cwd=tmp_path, home=home)
    run_id = json.loads(flowkit("runs", "--json", cwd=tmp_path, home=home).stdout)[0]["id"]
    shown = json.loads(flowkit("show", run_id, "--json", cwd=tmp_path, home=home).stdout)
    artifact = next(t["artifact_id"] for t in shown["task_runs"] if t["node"] == "total")
    tree = flowkit("lineage", artifact, cwd=tmp_path, home=home)
    assert tree.returncode == 0
    assert "task total in run" in tree.stdout and "task load in run" in tree.stdout and "param rows = 3" in tree.stdout
    as_json = json.loads(flowkit("lineage", artifact[:10], "--format", "json", cwd=tmp_path, home=home).stdout)
    assert {n["kind"] for n in as_json["nodes"]} == {"artifact", "task_run", "param"}
    mer = flowkit("lineage", artifact, "--format", "mermaid", cwd=tmp_path, home=home)
    assert mer.stdout.startswith("flowchart LR")

    listing = flowkit("cache", "ls", cwd=tmp_path, home=home)
    assert "load" in listing.stdout and "total" in listing.stdout and "2 entries" in listing.stdout
    dry = flowkit("cache", "clear", "--dry-run", cwd=tmp_path, home=home)
    assert "would forget 2 cache entries" in dry.stdout
    assert "forgot 1 cache entries" in flowkit("cache", "clear", "--task", "total", cwd=tmp_path, home=home).stdout
    gc = flowkit("cache", "gc", "--keep-days", "0", "--dry-run", cwd=tmp_path, home=home)
    assert gc.returncode == 0 and "would remove" in gc.stdout


def test_runs_lists_newest_first_with_filters(flows, tmp_path, home):
    flowkit("run", f"{flows}:pipeline", cwd=tmp_path, home=home)
    flowkit("run", f"{flows}:broken", cwd=tmp_path, home=home)
    table = flowkit("runs", cwd=tmp_path, home=home).stdout
    assert table.index("broken") < table.index("pipeline")
    only = json.loads(flowkit("runs", "--flow", "pipeline", "--json", cwd=tmp_path, home=home).stdout)
    assert [r["flow"] for r in only] == ["pipeline"]
    assert "no runs yet of flow 'nothing'" in flowkit("runs", "--flow", "nothing", cwd=tmp_path, home=home).stdout


def test_shell_completion_uses_click(tmp_path, home):
    env = {**os.environ, "_FLOWKIT_COMPLETE": "bash_source"}
    exe = shutil.which("flowkit", path=os.path.dirname(sys.executable))
    assert exe is not None
    out = subprocess.run([exe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "_flowkit_completion" in out.stdout and "complete " in out.stdout


def test_live_progress_panel_shows_counts_running_tasks_and_elapsed_time():
    import io

    from rich.console import Console

    from flowkit.cli.progress import Progress
    from flowkit.records import TaskRun

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    progress = Progress(console, live=True)
    progress.on_plan(4)
    progress.on_start("load", "load")
    progress.on_running("load")
    progress.on_finish(TaskRun("r/a", "r", "a", "a", "cached"))
    progress.on_finish(TaskRun("r/b", "r", "b", "b", "failed", 2, 0.0, 1.0, error="ValueError: no"))
    progress.on_start("train[0]", "train")
    progress.on_running("train[0]")
    progress.on_start("train[1]", "train")
    panel = progress._panel().plain
    assert panel.startswith("2/4 tasks") and "cached 1" in panel and "failed 1" in panel
    assert "running: load, train[0]; 1 queued" in panel and panel.rstrip().split("\n")[0].endswith("s")


def test_schedule_commands(flows, tmp_path, home):
    add = flowkit("schedule", "add", f"{flows}:pipeline", "--cron", "0 3 * * *", "--tz", "Europe/Paris",
                  "-p", "rows=3", "--name", "nightly", cwd=tmp_path, home=home)
    assert add.returncode == 0, add.stderr
    assert "scheduled nightly" in add.stdout and "next run" in add.stdout and "+01:00" in add.stdout
    listed = json.loads(flowkit("schedule", "ls", "--json", cwd=tmp_path, home=home).stdout)
    assert [(s["name"], s["cron"], s["tz"], s["params"]) for s in listed] == [
        ("nightly", "0 3 * * *", "Europe/Paris", {"rows": 3})]
    assert listed[0]["flow"].endswith("flows.py:pipeline") and listed[0]["next"].endswith("T03:00:00+01:00")
    assert "paused" in flowkit("schedule", "pause", "nightly", cwd=tmp_path, home=home).stdout
    assert "paused" in flowkit("schedule", "ls", cwd=tmp_path, home=home).stdout
    assert "resumed" in flowkit("schedule", "resume", "nightly", cwd=tmp_path, home=home).stdout
    once = flowkit("scheduler", "--once", cwd=tmp_path, home=home)
    assert once.returncode == 0 and once.stdout == ""  # nothing due at this minute
    bad = flowkit("schedule", "add", f"{flows}:pipeline", "--cron", "0 25 * * *", cwd=tmp_path, home=home)
    assert bad.returncode == 2 and "invalid cron expression '0 25 * * *'" in bad.stderr
    zone = flowkit("schedule", "add", f"{flows}:pipeline", "--cron", "@daily", "--tz", "Europe/Pariss",
                   cwd=tmp_path, home=home)
    assert zone.returncode == 2 and "unknown time zone 'Europe/Pariss'" in zone.stderr
    assert "removed schedule nightly" in flowkit("schedule", "rm", "nightly", cwd=tmp_path, home=home).stdout
    gone = flowkit("schedule", "rm", "nightly", cwd=tmp_path, home=home)
    assert gone.returncode == 2 and "no schedule 'nightly'" in gone.stderr


def test_a_module_in_the_current_folder_loads_by_name_from_the_installed_command(tmp_path, home):
    # The `flowkit` script, unlike `python -m flowkit`, does not put the current folder on sys.path.
    (tmp_path / "pipeline.py").write_text("import flowkit as fk\n\n@fk.task\ndef two():\n    return 2\n\n"
                                          "@fk.flow\ndef pipeline():\n    return two()\n")
    exe = shutil.which("flowkit", path=os.path.dirname(sys.executable))
    assert exe is not None
    out = subprocess.run([exe, "run", "pipeline:pipeline", "--json"], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "FLOWKIT_HOME": str(home)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == 2
