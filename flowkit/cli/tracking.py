"""``flowkit metrics RUN``, ``flowkit runs compare RUN...``, check results in ``show``/``run``, JUnit XML.

JUnit XML (``flowkit run FLOW --junit report.xml``) is what CI systems show as
test results: one test suite per run, one test case per task run (failed,
skipped or passed) and one per check result (``NODE: CHECK``), so a failed gate
is a failed test with what was observed. A failed warning check passes, with
the reason in its output.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import click
from rich.markup import escape
from rich.table import Table


__all__ = ["checks_json", "compare", "emit_checks", "gate_failed", "metrics", "write_junit"]


def _cli() -> Any:
    import flowkit.cli as cli  # the console and the store of the command being run

    return cli


def _checks(run: Any) -> Any:
    """The run's check results (an empty frame when nothing was checked)."""
    return run.checks()


def gate_failed(run: Any) -> bool:
    """Whether a blocking check failed in this run (the CLI exits 3 then)."""
    return any(tr.status == "failed" and (tr.error or "").startswith("CheckFailedError") for tr in run.task_runs)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def emit_checks(run: Any) -> None:
    """A table of the run's check results, when it has any."""
    frame = _checks(run)
    if frame.empty:
        return
    table = Table(title="checks")
    for column in ("task", "check", "result", "observed", "required", "baseline", "message"):
        table.add_column(column, overflow="fold")
    for row in frame.itertuples(index=False):
        result = "[green]passed[/]" if row.passed else ("[yellow]warning[/]" if row.severity == "warn"
                                                        else "[red]failed[/]")
        table.add_row(escape(row.node), escape(row.check), result, escape(_short(_text(row.observed), 80)),
                      escape(_text(row.threshold)), escape(_text(row.baseline)), escape(_text(row.message)))
    _cli().emit(table)


def checks_json(run: Any) -> list[dict[str, Any]]:
    frame = _checks(run)
    return [{"node": r.node, "task": r.task, "check": r.check, "passed": bool(r.passed), "severity": r.severity,
             "observed": r.observed, "threshold": r.threshold, "baseline": r.baseline, "message": r.message,
             "artifact_id": r.artifact_id} for r in frame.itertuples(index=False)]


# Characters XML 1.0 cannot hold (control codes but tab, newline, carriage return; surrogates; U+FFFE/F).
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str | None) -> str:
    """``text`` with what XML cannot hold shown as a backslash, x and two hex digits (ANSI colours, a bell)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text or "")


def write_junit(run: Any, path: str) -> None:
    """Write the run's task runs and check results as a JUnit XML file at ``path``."""
    frame = _checks(run)
    import datetime as dt

    started = dt.datetime.fromtimestamp(run.started, tz=dt.timezone.utc).isoformat() if run.started else ""
    suite = ET.Element("testsuite", name=run.flow, timestamp=started,
                       time=f"{run.duration or 0.0:.3f}")
    counts = {"tests": 0, "failures": 0, "skipped": 0, "errors": 0}
    for tr in run.task_runs:
        case = ET.SubElement(suite, "testcase", classname=_xml(f"{run.flow}.tasks"), name=_xml(tr.node),
                             time=f"{tr.run_time or 0.0:.3f}")
        counts["tests"] += 1
        if tr.status == "failed":
            counts["failures"] += 1
            failure = ET.SubElement(case, "failure", message=_xml((tr.error or "").splitlines()[0] if tr.error else ""),
                                    type=_xml((tr.error or "Error").split(":")[0]))
            failure.text = _xml(tr.traceback or tr.error)
        elif tr.status in ("skipped", "cancelled", "unneeded"):
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=tr.status)
        if tr.logs:
            ET.SubElement(case, "system-out").text = _xml(tr.logs)
    for row in frame.itertuples(index=False):
        case = ET.SubElement(suite, "testcase", classname=_xml(f"{run.flow}.checks"), name=_xml(f"{row.node}: {row.check}"),
                             time="0")
        counts["tests"] += 1
        detail = _xml(f"observed {_text(row.observed)}; required {_text(row.threshold)}")
        if row.baseline:
            detail += f"; baseline {row.baseline}"
        if not row.passed and row.severity == "error":
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=_xml(row.message or "check failed"),
                          type="CheckFailedError").text = detail
        elif not row.passed:
            ET.SubElement(case, "system-out").text = _xml(f"warning: {row.message}; {detail}")
    for key, value in counts.items():
        suite.set(key, str(value))
    suites = ET.Element("testsuites", name="flowkit", tests=str(counts["tests"]), failures=str(counts["failures"]))
    suites.append(suite)
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


@click.command()
@click.argument("run_id")
@click.option("--name", "names", multiple=True, help="Only this metric (repeatable).")
@click.option("--json", "as_json", is_flag=True)
def metrics(run_id: str, names: tuple[str, ...], as_json: bool) -> None:
    """The metrics a run's tasks logged (a unique prefix of the run id is enough)."""
    cli = _cli()
    run = cli._store().run(run_id)
    frame = run.metrics()
    if names:
        frame = frame[frame["name"].isin(names)]
    if as_json:
        click.echo(json.dumps([{"task": r.task, "node": r.node, "name": r.name,
                                "step": None if r.step is _na() else int(r.step),
                                "value": r.value, "time": r.time.isoformat(), "source": r.source}
                               for r in frame.itertuples(index=False)]))
        return
    if frame.empty:
        cli.console.print(f"run {run.id[:12]} logged no metrics")
        return
    table = Table(title=f"metrics of run {run.id[:12]} ({escape(run.flow)})")
    for column in ("task", "name", "step", "value", "logged by"):
        table.add_column(column, overflow="fold")
    for r in frame.itertuples(index=False):
        step = "" if r.step is _na() else str(r.step)
        table.add_row(escape(r.node), escape(r.name), step, f"{r.value:.6g}",
                      f"cached from {r.source.split('/')[0][:12]}" if isinstance(r.source, str) else "this run")
    cli.emit(table)


def _na() -> Any:
    import pandas as pd

    return pd.NA


@click.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
def compare(run_ids: tuple[str, ...], as_json: bool) -> None:
    """Runs side by side: params and the last value of each metric (unique prefixes are enough)."""
    import flowkit as fk

    cli = _cli()
    store = cli._store()
    ids = [store.run(r).id for r in run_ids]
    frame = fk.compare_runs(ids, store=store)
    if as_json:
        click.echo(frame.to_json(orient="records", date_format="iso"))
        return
    table = Table(title="runs compared")
    table.add_column("")
    for rid in ids:
        table.add_column(rid[:12], overflow="fold")
    for column in frame.columns:
        if column == "run":
            continue
        values = []
        for v in frame[column]:
            if hasattr(v, "strftime"):
                v = v.strftime("%Y-%m-%d %H:%M:%S")
            values.append(escape(_text(v)))
        table.add_row(column, *values)
    cli.emit(table)
