"""Task output: prints and log records captured per task run, stored, and streamed."""

from __future__ import annotations

import logging
import sys

import flowkit as fk

log = logging.getLogger("user.pipeline")
log.setLevel(logging.INFO)  # capture follows logging levels; pytest configures the root logger


@fk.task
def chatty(x: int) -> int:
    print(f"working on {x}")
    print("to stderr", file=sys.stderr)
    log.info("info from %d", x)
    return x


@fk.task
def noisy_failure():
    print("about to fail")
    raise RuntimeError("nope")


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def on_plan(self, tasks): ...
    def on_start(self, node, task): ...
    def on_running(self, node): ...
    def on_finish(self, task_run): ...

    def on_output(self, node, line):
        self.lines.append((node, line))


def test_prints_and_logs_are_captured_per_task_and_stored(capsys):
    @fk.flow
    def f():
        return chatty(1), chatty(2), noisy_failure()

    print("outside any task")
    run = f.run()
    assert run.task_run("chatty").logs == "working on 1\nto stderr\nINFO user.pipeline: info from 1\n"
    assert run.task_run("chatty#2").logs.startswith("working on 2\n")
    assert run.task_run("noisy_failure").logs == "about to fail\n"
    stored = {tr.node: tr.logs for tr in fk.runs(limit=1)[0].task_runs}
    assert stored["chatty"] == run.task_run("chatty").logs and stored["noisy_failure"] == "about to fail\n"
    out = capsys.readouterr().out
    assert "outside any task" in out and "working on" not in out  # task output went to its capture


def test_output_streams_to_a_listener_with_the_node_on_every_executor():
    from flowkit.runner import run_graph

    @fk.flow
    def f():
        return chatty(1), chatty(2)

    for executor in (fk.LocalExecutor(), fk.LocalExecutor(max_workers=2)):
        lines = Lines()
        run_graph(f.graph(), executor, fk.SystemClock(), listener=lines)
        assert ("chatty", "working on 1") in lines.lines and ("chatty#2", "INFO user.pipeline: info from 2") in lines.lines


def test_output_of_a_timed_out_task_and_of_threads_stays_with_its_task():
    @fk.task(timeout=5)
    def timed(x):
        print(f"timed {x}")
        return x

    @fk.flow(executor=fk.LocalExecutor(max_workers=3), store=False)
    def f():
        return [timed(i) for i in range(3)]

    run = f.run()
    assert [run.task_run(n).logs for n in ("timed", "timed#2", "timed#3")] == ["timed 0\n", "timed 1\n", "timed 2\n"]


def test_logging_configuration_is_restored_after_a_run():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stdout = sys.stdout

    @fk.flow(store=False)
    def f():
        return chatty(3)

    f()
    assert root.level == level and root.handlers == handlers and sys.stdout is stdout
