"""The CLI over tracking and checks: metrics, runs compare, checks in run/show, JUnit XML and exit codes."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

from click.testing import CliRunner

from flowkit.cli import main

FLOWS = textwrap.dedent('''
    import flowkit as fk

    @fk.task
    def train(C: float) -> dict:
        fk.log_param("C", C)
        for i in range(3):
            fk.log_metric("loss", 1.0 / (i + 1 + C), step=i)
        return {"auc": 0.5 + C / 10}

    @fk.task(checks=[fk.checks.metric("auc", ">=", 0.6), fk.checks.metric("auc", ">=", 0.9, severity="warn")])
    def gate(m: dict) -> dict:
        return m

    @fk.flow
    def f(C: float = 1.0):
        return gate(train(C))
''')


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_failed_gate_exits_3_and_junit_xml_names_the_check(home, tmp_path):
    (tmp_path / "flows.py").write_text(FLOWS)
    ok = _cli("run", "flows.py:f", "-p", "C=1.0", "--junit", "ok.xml")
    assert ok.exit_code == 0, ok.output
    assert "checks" in ok.output and "warning" in ok.output
    bad = _cli("run", "flows.py:f", "-p", "C=0.5", "--junit", "bad.xml")
    assert bad.exit_code == 3, bad.output
    suite = ET.parse(tmp_path / "bad.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["gate: metric('auc' >= 0.6)"].find("failure").get("message") == "auc = 0.55, required >= 0.6"
    assert cases["gate: metric('auc' >= 0.9)"].find("failure") is None  # a warning passes, with its reason
    assert "warning" in cases["gate: metric('auc' >= 0.9)"].find("system-out").text
    assert cases["gate"].find("failure").text.startswith("flowkit.errors.CheckFailedError")
    assert cases["train"].find("failure") is None
    good = ET.parse(tmp_path / "ok.xml").getroot().find("testsuite")
    assert good.get("failures") == "0"


def test_metrics_compare_and_show_read_back_what_tasks_logged(home, tmp_path):
    (tmp_path / "flows.py").write_text(FLOWS)
    _cli("run", "flows.py:f", "-p", "C=1.0")
    _cli("run", "flows.py:f", "-p", "C=2.0")
    runs = json.loads(_cli("runs", "--json").output)
    new, old = runs[0]["id"], runs[1]["id"]
    listed = json.loads(_cli("metrics", new[:8], "--json").output)
    assert [(m["name"], m["step"], m["value"]) for m in listed] == [
        ("loss", 0, 1 / 3), ("loss", 1, 1 / 4), ("loss", 2, 1 / 5)]
    table = _cli("metrics", new[:8]).output
    assert "loss" in table and "this run" in table
    compared = json.loads(_cli("runs", "compare", old[:8], new[:8], "--json").output)
    assert [r["params.C"] for r in compared] == [1.0, 2.0]
    assert [r["metrics.loss"] for r in compared] == [1 / 4, 1 / 5]
    assert "metrics.loss" in _cli("runs", "compare", old[:8], new[:8]).output
    shown = json.loads(_cli("show", new[:8], "--json").output)
    assert [(c["check"], c["passed"]) for c in shown["checks"]] == [
        ("metric('auc' >= 0.6)", True), ("metric('auc' >= 0.9)", False)]
    assert "metric('auc' >= 0.9)" in _cli("show", new[:8]).output


def test_runs_without_a_subcommand_still_lists_runs(home, tmp_path):
    (tmp_path / "flows.py").write_text(FLOWS)
    _cli("run", "flows.py:f")
    listed = _cli("runs", "--limit", "5")
    assert listed.exit_code == 0 and "completed" in listed.output
    missing = CliRunner().invoke(main, ["metrics", "nope"])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_junit_xml_stays_valid_when_tasks_print_control_characters(home, tmp_path):
    (tmp_path / "noisy.py").write_text(textwrap.dedent('''
        import flowkit as fk

        @fk.task(checks=[fk.checks.rows(min=5, severity="warn")])
        def load() -> list:
            print("\\x1b[31mred\\x1b[0m and a bell\\x07")
            return [1]

        @fk.flow
        def noisy():
            return load()
    '''))
    assert _cli("run", "noisy.py:noisy", "--junit", "out.xml").exit_code == 0
    case = next(c for c in ET.parse(tmp_path / "out.xml").getroot().iter("testcase") if c.get("name") == "load")
    assert case.find("system-out").text.startswith("\\x1b[31mred")
