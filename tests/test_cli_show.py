"""`flowkit show`, `flowkit runs` and the store commands in-process (click's CliRunner)."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main

FLOWS = textwrap.dedent('''
    import flowkit as fk


    def check(x):
        if x > 0:
            raise ValueError(f"cannot handle {x}")
        return x


    @fk.task
    def load(rows: int) -> list[int]:
        return list(range(rows))


    @fk.task
    def explode(xs):
        try:
            return check(len(xs))
        except ValueError as exc:
            raise RuntimeError("explode gave up") from exc


    @fk.flow
    def broken(rows: int = 2):
        return explode(load(rows))
''')


@pytest.fixture
def flows(tmp_path):
    path = tmp_path / "showflows.py"
    path.write_text(FLOWS)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def last_run_id() -> str:
    return fk.runs(limit=1)[0].id


def test_show_traceback_starts_at_the_users_frame_and_keeps_the_chain(flows):
    ran = invoke("run", f"{flows}:broken")
    assert ran.exit_code == 1
    run_id = last_run_id()
    assert f"see the traceback: flowkit show {run_id[:12]} --traceback" in ran.stdout
    out = invoke("show", run_id[:8], "--traceback")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == "task explode failed after 1 attempt:"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[2] == f'  File "{flows}", line 19, in explode'
    assert "ValueError: cannot handle 2" in out.stdout and out.stdout.rstrip().endswith("RuntimeError: explode gave up")
    assert "The above exception was the direct cause of the following exception:" in out.stdout
    assert "flowkit/" not in out.stdout.replace(str(flows), "")
    assert invoke("show", run_id[:8], "--traceback", "explode").stdout == out.stdout
    assert invoke("show", "--traceback", run_id[:8], "explode").stdout == out.stdout


def test_show_traceback_of_a_task_that_did_not_fail_is_a_usage_error(flows):
    invoke("run", f"{flows}:broken")
    run_id = last_run_id()
    out = CliRunner().invoke(main, ["show", run_id, "--traceback", "load"])
    assert out.exit_code == 2 and "task 'load' did not fail" in out.output and "failed tasks are: explode" in out.output
    unknown = CliRunner().invoke(main, ["show", run_id, "--traceback", "nope"])
    assert unknown.exit_code == 2 and "has no task 'nope'; its tasks are: load, explode" in unknown.output
    stray = CliRunner().invoke(main, ["show", run_id, "load"])
    assert stray.exit_code == 2 and "goes with --traceback" in stray.output


def test_user_traceback_drops_the_executors_and_flowkits_frames():
    from flowkit.errors import user_traceback

    def user_code():
        raise KeyError("k")

    @fk.task
    def fails():
        user_code()

    @fk.flow(store=False)
    def one():
        return fails()

    for executor in (fk.LocalExecutor(), fk.LocalExecutor(max_workers=2)):
        tr = one.with_options(executor=executor).run().failed[0]
        assert tr.traceback.splitlines()[1].endswith(", in fails")
        assert "flowkit/" not in tr.traceback and "concurrent/futures" not in tr.traceback
        assert tr.traceback == user_traceback(tr.exception)


def test_cache_gc_help_mentions_only_what_exists():
    out = invoke("cache", "gc", "--help")
    assert out.exit_code == 0 and "no cache entry and no recent run" in out.stdout
    assert "model" not in out.stdout.lower()


def test_a_damaged_database_says_to_move_it_aside_and_keep_the_artifacts(home, flows):
    import subprocess

    from flowkit.errors import StoreError
    from flowkit.store.metadata import MetadataDB

    home.mkdir(parents=True)
    db = home / "flowkit.db"
    db.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(StoreError, match="is damaged"):
        MetadataDB(db)
    out = CliRunner().invoke(main, ["runs"])
    assert out.exit_code == 2, out.output
    message = " ".join(out.output.split())
    assert f"the metadata database {db} is damaged (file is not a database)" in message
    assert f"Keep the artifacts folder {home / 'artifacts'}" in message
    command = message.split("at the next command: ")[1].split(" . ")[0]
    assert command == f"mv {db} {db}.damaged"
    subprocess.run(command, shell=True, check=True)
    assert invoke("run", f"{flows}:broken").exit_code == 1  # a new database, the run recorded
    assert (home / "flowkit.db.damaged").exists() and len(fk.runs()) == 1
