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


@pytest.mark.sqlite_only
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


FRAMES = textwrap.dedent('''
    import pandas as pd
    import flowkit as fk


    @fk.task
    def table(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"x": list(range(rows)), "name": [f"n{i}" for i in range(rows)]})


    @fk.task
    def note(df) -> str:
        return f"{len(df)} rows"


    @fk.task
    def blob() -> bytes:
        return b"\\x00\\x01raw"


    @fk.task
    def settings() -> dict:
        return {"lr": 0.1}


    @fk.flow
    def frames(rows: int = 12):
        df = table(rows)
        return note(df), blob(), settings()
''')


@pytest.fixture
def frame_run(tmp_path):
    path = tmp_path / "frames.py"
    path.write_text(FRAMES)
    assert invoke("run", f"{path}:frames").exit_code == 0
    run = fk.runs(limit=1)[0]
    return {tr.node: tr.artifact_id for tr in run.task_runs} | {"run": run.id}


def test_artifacts_ls_lists_newest_first_with_the_task_that_produced_each(frame_run):
    listed = json.loads(invoke("artifacts", "ls", "--json").stdout)
    assert {a["id"] for a in listed} == {frame_run[n] for n in ("table", "note", "blob", "settings")}
    created = [a["created"] for a in listed]
    assert created == sorted(created, reverse=True)
    by_id = {a["id"]: a for a in listed}
    assert by_id[frame_run["table"]]["rows"] == 12 and by_id[frame_run["table"]]["type"] == "pandas.DataFrame"
    assert (by_id[frame_run["blob"]]["node"], by_id[frame_run["blob"]]["run_id"]) == ("blob", frame_run["run"])
    table = invoke("artifacts", "ls").stdout
    assert frame_run["table"][:12] in table and f"table in run {frame_run['run'][:12]}" in table


def test_artifacts_get_prints_a_preview_or_writes_the_value_by_suffix(frame_run, tmp_path):
    import pickle

    import pandas as pd

    preview = invoke("artifacts", "get", frame_run["table"][:10])
    assert preview.exit_code == 0, preview.output
    assert preview.stdout.startswith(f"artifact {frame_run['table'][:12]}: DataFrame, 12 rows x 2 columns\n")
    assert "n9" in preview.stdout and "n11" not in preview.stdout and "2 more rows" in preview.stdout
    assert invoke("artifacts", "get", frame_run["settings"]).stdout == "{'lr': 0.1}\n"
    for suffix, read in ((".csv", pd.read_csv), (".parquet", pd.read_parquet), (".feather", pd.read_feather)):
        target = tmp_path / f"table{suffix}"
        out = invoke("artifacts", "get", frame_run["table"][:12], "-o", str(target))
        assert out.exit_code == 0 and f"wrote {target}" in " ".join(out.stdout.split())
        frame = read(target)
        assert list(frame.columns) == ["x", "name"] and frame["name"].tolist()[-1] == "n11"
    invoke("artifacts", "get", frame_run["blob"], "-o", str(tmp_path / "blob.bin"))
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01raw"
    invoke("artifacts", "get", frame_run["note"], "-o", str(tmp_path / "note.txt"))
    assert (tmp_path / "note.txt").read_text() == "12 rows"
    invoke("artifacts", "get", frame_run["settings"], "-o", str(tmp_path / "settings.out"))
    assert pickle.loads((tmp_path / "settings.out").read_bytes()) == {"lr": 0.1}


def test_artifacts_get_refuses_an_unknown_id_and_a_table_suffix_it_cannot_write(frame_run, tmp_path):
    unknown = CliRunner().invoke(main, ["artifacts", "get", "ffff0000"])
    assert unknown.exit_code == 2 and "no artifact 'ffff0000'" in unknown.output
    bad = CliRunner().invoke(main, ["artifacts", "get", frame_run["table"], "-o", str(tmp_path / "t.xlsx")])
    assert bad.exit_code == 2 and "a DataFrame is written as .csv, .parquet or .feather" in " ".join(bad.output.split())
