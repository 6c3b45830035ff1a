"""``fk.Secret``: tasks get the value; logs, errors, stored parameters and summaries show ``***``."""

from __future__ import annotations

import os
import pickle
import stat
import textwrap

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main

FLOWS = textwrap.dedent('''
    import logging

    import flowkit as fk

    SEEN = []


    @fk.task
    def login(password) -> int:
        SEEN.append(password)
        print(f"logging in with {password}")
        logging.getLogger("app").warning("the password is %s", password)
        return len(password)


    @fk.task
    def fail(password, n: int) -> int:
        raise ValueError(f"login refused for password {password!r}")


    @fk.flow
    def good(password: fk.Secret, user: str = "ann") -> int:
        return login(password)


    @fk.flow
    def bad(password: fk.Secret, user: str = "ann") -> int:
        return fail(password, login(password))
''')

VALUE = "hunter2-s3cr3t-Zq9"


@pytest.fixture
def flows(tmp_path):
    path = tmp_path / "secretflows.py"
    path.write_text(FLOWS)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _load(flows):
    from flowkit.flowref import load_flow

    return load_flow(f"{flows}:good"), load_flow(f"{flows}:bad")


def _assert_nowhere(home, value: str = VALUE) -> None:
    files = [p for p in home.rglob("*") if p.is_file()]
    metadata = fk.Store.open().db
    assert metadata.dialect != "sqlite" or any(p.name.startswith("flowkit.db") for p in files)
    for path in files:
        data = path.read_bytes()
        assert value.encode() not in data, path
        assert value.encode("utf-16-le") not in data, path
    if metadata.dialect == "postgresql":  # every row of every table, as text and bytes
        tables = [r[0] for r in metadata.query("SELECT table_name FROM information_schema.tables "
                                               "WHERE table_schema = 'public'")]
        assert "runs" in tables
        for table in tables:
            rows = metadata.query(f'SELECT * FROM "{table}"')
            assert value not in repr(rows) and value.encode() not in repr(rows).encode(), table


def test_a_secret_shows_as_stars_and_pickles_its_value():
    s = fk.Secret(VALUE)
    assert repr(s) == "Secret('***')" and str(s) == "***" and f"{s}" == "***"
    assert s.reveal() == VALUE
    assert pickle.loads(pickle.dumps(s)) == s and hash(pickle.loads(pickle.dumps(s))) == hash(s)
    assert s != fk.Secret("other") and s == fk.Secret(VALUE)
    from flowkit.secrets import mask

    assert mask(f"x {VALUE} y") == "x *** y"


def test_a_run_from_python_stores_the_secret_nowhere(flows, home):
    good, bad = _load(flows)
    assert good(password=fk.Secret(VALUE)) == len(VALUE)

    with pytest.raises(fk.FlowRunError) as info:
        bad(password=fk.Secret(VALUE))
    assert VALUE not in str(info.value)
    failed = info.value.task_runs[0]
    assert failed.status == "failed"
    run = fk.runs(limit=1)[0]
    assert "***" in str(run.params) and VALUE not in str(run.params)
    stored = {tr.node: tr for tr in run.task_runs}
    assert "***" in stored["fail"].error and VALUE not in stored["fail"].error
    assert VALUE not in (stored["fail"].traceback or "")
    assert "logging in with ***" in (fk.runs(limit=2)[1].task_runs[0].logs or "")
    assert "the password is ***" in (fk.runs(limit=2)[1].task_runs[0].logs or "")
    key = home / "secret.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    _assert_nowhere(home)


def test_the_task_receives_the_plain_value(flows):
    good, _ = _load(flows)
    good(password=fk.Secret(VALUE))
    import sys

    module = sys.modules[good.fn.__module__]
    assert module.SEEN == [VALUE] and type(module.SEEN[0]) is str


def test_a_run_from_the_cli_stores_and_shows_the_secret_nowhere(flows, home):
    ran = invoke("run", f"{flows}:good", "-p", f"password={VALUE}")
    assert ran.exit_code == 0, ran.output
    assert VALUE not in ran.output and "logging in with ***" in ran.output
    failed = CliRunner().invoke(main, ["run", f"{flows}:bad", "-p", f"password={VALUE}"])
    assert failed.exit_code == 1
    assert VALUE not in failed.output and "***" in failed.output
    runs = invoke("runs")
    assert VALUE not in runs.output
    for run in fk.runs():
        assert "***" in str(run.params)
        for args in (("show", run.id[:12]), ("show", run.id[:12], "--traceback"), ("show", run.id[:12], "--json")):
            out = CliRunner().invoke(main, list(args))
            assert VALUE not in out.output, args
        shown = invoke("show", run.id[:12])
        assert "***" in shown.output
        logs = CliRunner().invoke(main, ["show", run.id[:12], "--logs", "login"])
        assert VALUE not in logs.output
    _assert_nowhere(home)


def test_the_cache_key_follows_the_secret(flows):
    good, _ = _load(flows)
    good(password=fk.Secret(VALUE))
    good(password=fk.Secret(VALUE))
    second, first = fk.runs()
    key = {tr.node: tr for tr in first.task_runs}["login"].cache_key
    assert {tr.node: tr for tr in second.task_runs}["login"].status == "cached"
    assert {tr.node: tr for tr in second.task_runs}["login"].cache_key == key
    good(password=fk.Secret(VALUE + "x"))
    third = fk.runs(limit=1)[0]
    login = {tr.node: tr for tr in third.task_runs}["login"]
    assert login.status == "completed" and login.cache_key != key


def test_the_cli_converts_a_secret_parameter():
    from flowkit.cli.params import convert

    value = convert("password", VALUE, fk.Secret)
    assert isinstance(value, fk.Secret) and value.reveal() == VALUE
    optional = convert("password", VALUE, fk.Secret | None)
    assert isinstance(optional, fk.Secret)
