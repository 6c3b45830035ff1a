"""The ``flowkit`` command: run flows, look back at runs, trace lineage, manage the cache.

Each command parses its arguments, calls one public function, and formats the
answer. Bad input gets a message that says what to do (exit code 2), a failed
flow exit code 1; ``--debug`` shows the Python traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from flowkit.errors import FlowkitError
from flowkit.hashing import short_repr
from flowkit.secrets import mask
from flowkit.cli.params import UsageProblem, load_flow, parse_params
from flowkit.cli.progress import Progress, duration, first_line, summary_table

__all__ = ["main"]

# Piped output (CI logs, `| less`) is not squeezed into 80 columns.
_WIDTH = None if sys.stdout.isatty() else shutil.get_terminal_size((160, 24)).columns
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)


class _Group(click.Group):
    """Turns flowkit's errors into messages and exit codes instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if ctx.obj and ctx.obj.get("debug") and exc.__cause__ is not None:
                import traceback

                traceback.print_exception(exc.__cause__, file=sys.stderr)
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: say what became of the run, exit as a signal would
            notes = getattr(exc, "__notes__", None)
            for note in notes or ():
                err_console.print(escape(note), soft_wrap=True)
            if notes is None:
                raise
            err_console.print("run the flow again to resume from what was kept", soft_wrap=True)
            ctx.exit(143 if exc.args == ("SIGTERM",) else 130)
        except Exception as exc:  # noqa: BLE001 - shown as a message; --debug shows the traceback
            if ctx.obj and ctx.obj.get("debug"):
                raise
            usage = isinstance(exc, (FlowkitError, KeyError, LookupError, FileNotFoundError, ConnectionError))
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            err_console.print(f"[bold red]error:[/] {escape(mask(str(message)) or '')}", soft_wrap=True)  # a command stays whole
            err_console.print("[dim](run with --debug to see the traceback)[/dim]")
            ctx.exit(2 if usage else 1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="FLOWKIT_HOME",
              help="The store folder (default: $FLOWKIT_HOME, else ./.flowkit).")
@click.option("--debug", is_flag=True, help="Show Python tracebacks.")
@click.version_option(package_name="flowkit")
@click.pass_context
def main(ctx: click.Context, home: str | None, debug: bool) -> None:
    """flowkit: ML and data workflows as plain Python."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["home"] = home


def _home() -> str | None:
    """The store folder ``--home`` (or ``$FLOWKIT_HOME``) named, if any."""
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().obj.get("home") if ctx is not None and ctx.find_root().obj else None


def emit(renderable: Any, out: Console = console) -> None:
    """Print a table or text; into a pipe or file, without the spaces rich pads lines with."""
    if out.is_terminal:
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _computed_by(store: Any, run: Any) -> dict[str, Any]:
    keys = [tr.cache_key for tr in run.task_runs if tr.status == "cached" and tr.cache_key]
    return store.computed_by(keys) if store is not None and keys else {}


def _store() -> Any:
    from flowkit.store import Store

    return Store.open(_home())


def _when(ts: float | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


_param = click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
                      help="A flow parameter, converted by the flow's type hints (repeatable).")
_params_file = click.option("--params", "params_file", metavar="FILE",
                            help="Parameters from a .yaml, .json or .toml file; -p overrides them.")


def param_option(fn: Any) -> Any:
    """``-p NAME=VALUE`` (repeatable) and ``--params FILE``."""
    return _param(_params_file(fn))


def _executor(flow: Any, executor: str | None, address: str | None, workers: int | None) -> Any:
    """The executor ``flowkit run`` uses: the one the options name, else the flow's own, else a local one."""
    import flowkit as fk

    if address:
        if executor == "local":
            raise click.UsageError("--address is a Dask scheduler's: it cannot go with --executor local")
        if workers is not None:
            raise click.UsageError("--workers sizes a cluster flowkit starts; the cluster at --address has its own "
                                   "workers (leave out --workers)")
        return fk.DaskExecutor(address=address)
    if executor == "dask":
        return fk.DaskExecutor(n_workers=workers)
    if executor is None and flow.options.executor is not None:
        if workers is not None:
            raise click.UsageError(f"flow {flow.name!r} runs on its own executor ({flow.options.executor!r}); "
                                   f"--workers needs --executor local or dask to replace it")
        return flow.options.executor
    return fk.LocalExecutor(max_workers=workers)


@main.command()
@click.argument("target", metavar="FILE.py[:FLOW]")
@param_option
@click.option("--executor", type=click.Choice(["local", "dask"]),
              help="Run in this process, or on a local Dask cluster (default: the flow's own executor, else local).")
@click.option("--address", metavar="tcp://HOST:PORT", help="An existing Dask scheduler (implies --executor dask).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker count: threads for local, processes for a local Dask cluster.")
@click.option("--refresh", is_flag=True, help="Recompute every task, cached or not.")
@click.option("--refresh-task", "refresh_tasks", multiple=True, metavar="TASK",
              help="Recompute TASK and everything downstream of it (repeatable).")
@click.option("--resume", metavar="RUN_ID", help="Also reuse what cache=False tasks produced in that run.")
@click.option("--fail-fast", is_flag=True, help="Stop submitting tasks at the first failure.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write task and check results as JUnit XML (for CI).")
def run(target: str, params: tuple[str, ...], params_file: str | None, executor: str | None, address: str | None, workers: int | None,
        refresh: bool, refresh_tasks: tuple[str, ...], resume: str | None, fail_fast: bool,
        as_json: bool, junit: str | None) -> None:
    """Run a flow from a file: flowkit run flows.py:train -p rows=1000

    Exit code 0 when the run completed, 1 when it failed, 3 when it failed because a
    check on a task's output failed (a gate).
    """
    import flowkit as fk

    flow = load_flow(target)
    kwargs = parse_params(flow, params, params_file)
    bound = flow.bind(**kwargs)
    chosen = _executor(flow, executor, address, workers)
    refresh_arg: bool | list[str] = True if refresh else list(refresh_tasks)
    out = err_console if as_json else console
    # An executor used as a context manager is opened once for the run (a cluster started, then closed);
    # one of the user's own that is not opens its session per run, as flow.run() does.
    with chosen if hasattr(chosen, "__enter__") else contextlib.nullcontext(chosen):
        link = getattr(chosen, "dashboard_link", None)
        if link and not as_json:
            out.print(f"Dask dashboard: {link}")
        # A map over a run-time list adds tasks as it runs: then no total is promised in advance.
        known = not any(node.kind == "dynamic_map" for node in flow.graph(**bound).nodes.values())
        progress = Progress(out, live=out.is_terminal and not as_json, known_total=known)
        with progress:
            result = fk.run_flow(flow.with_options(executor=chosen), bound, trigger="cli", refresh=refresh_arg,
                                 resume=resume, fail_fast=fail_fast, listeners=[] if as_json else [progress],
                                 store=_store() if _home() and flow.options.store is None else None)
    if junit:
        write_junit(result, junit)
    if as_json:
        click.echo(json.dumps({
            "run_id": result.id, "flow": result.flow, "status": result.status, "counts": result.counts(),
            "duration": result.duration, "result": _jsonable(result.value) if result.status == "completed" else None,
            "failed": [{"node": tr.node, "attempts": tr.attempts, "error": first_line(tr.error, 500)}
                       for tr in result.failed],
        }))
    else:
        emit(summary_table(result, computed_by=_computed_by(flow.store(), result)))
        emit(escape(result.summary()))
        if result.failed:
            console.print(_traceback_hint(result))
        emit_checks(result)
        if result.status == "completed":
            console.print(f"result: {escape(short_repr(result.value, 400))}")
    if result.status != "completed":
        sys.exit(3 if gate_failed(result) else 1)


@main.command()
@click.argument("target", metavar="FILE.py[:FLOW]")
@param_option
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "png", "svg"]), default="mermaid",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (default: print mermaid or dot; write FLOW.png or FLOW.svg).")
def graph(target: str, params: tuple[str, ...], params_file: str | None, fmt: str, output: str | None) -> None:
    """Show a flow's graph without running it."""
    flow = load_flow(target)
    g = flow.graph(**parse_params(flow, params, params_file))
    if fmt == "mermaid":
        text = g.to_mermaid()
    else:
        text = g.to_dot()
    if fmt in ("mermaid", "dot"):
        if output:
            with open(output, "w") as fh:
                fh.write(text)
        else:
            click.echo(text, nl=False)
        return
    dot = shutil.which("dot")
    if dot is None:
        raise UsageProblem(f"--format {fmt} needs Graphviz's `dot` program, which is not installed "
                           f"(e.g. `apt-get install graphviz`); --format dot or mermaid work without it")
    target_file = output or f"{flow.name}.{fmt}"
    subprocess.run([dot, f"-T{fmt}", "-o", target_file], input=text, text=True, check=True)
    console.print(f"wrote {target_file}")


@main.group(invoke_without_command=True)
@click.option("--flow", help="Only runs of this flow.")
@click.option("--status", type=click.Choice(["completed", "failed", "cancelled", "running", "crashed"]))
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(ctx: click.Context, flow: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first (flowkit runs compare RUN... puts runs side by side)."""
    if ctx.invoked_subcommand is not None:
        return
    found = _store().runs(flow, limit, status)
    if as_json:
        click.echo(json.dumps([{"id": r.id, "flow": r.flow, "status": r.status, "trigger": r.trigger,
                                "triggered_by": r.info.get("triggered_by"), "reason": r.info.get("trigger_reason"),
                                "params": r.params, "started": r.started, "ended": r.ended,
                                "error": r.error if isinstance(r.error, str) else None} for r in found]))
        return
    if not found:
        console.print("no runs yet" + (f" of flow {flow!r}" if flow else ""))
        return
    table = Table()
    for column in ("run", "flow", "status", "trigger", "started", "duration"):
        table.add_column(column, no_wrap=True)
    table.add_column("params", overflow="ellipsis", no_wrap=True)
    for r in found:
        by = r.info.get("triggered_by")
        table.add_row(r.id[:12], r.flow, r.status, (r.trigger or "") + (f" ← {by[:12]}" if by else ""),
                      _when(r.started), duration(r.duration),
                      ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in r.params.items()))
    emit(table)


def _task_runs_named(run: Any, name: str) -> list[Any]:
    """The task runs of ``run`` whose node id or task name is ``name``; a usage error if none."""
    matches = [tr for tr in run.task_runs if name in (tr.node, tr.name)]
    if not matches:
        raise UsageProblem(f"run {run.id[:12]} has no task {name!r}; its tasks are: "
                           f"{', '.join(tr.node for tr in run.task_runs)}")
    return matches


def _traceback_hint(run: Any) -> str:
    return f"see the traceback: flowkit show {run.id[:12]} --traceback"


def _print_tracebacks(run: Any, task: str | None) -> None:
    if task is None:
        failed = run.failed
        if not failed:
            console.print(f"run {run.id[:12]} of flow {escape(run.flow)} has no failed task ({run.status})")
            return
    else:
        failed = [tr for tr in _task_runs_named(run, task) if tr.status == "failed"]
        if not failed:
            statuses = ", ".join(sorted({tr.status for tr in _task_runs_named(run, task)}))
            raise UsageProblem(f"task {task!r} did not fail in run {run.id[:12]} ({statuses}); "
                               f"its failed tasks are: {', '.join(tr.node for tr in run.failed) or 'none'}")
    for tr in failed:
        plural = "s" if tr.attempts != 1 else ""
        console.print(f"[bold red]task {escape(tr.node)}[/] failed after {tr.attempts} attempt{plural}:")
        click.echo((tr.traceback or tr.error or "no traceback was recorded").rstrip("\n"))


@main.command()
@click.argument("run_id")
@click.argument("task", required=False)
@click.option("--traceback", "show_traceback", is_flag=True,
              help="Print the traceback of the failed task TASK, or of every failed task.")
@click.option("--logs", "logs_of", metavar="TASK", help="Print what a task printed or logged.")
@click.option("--json", "as_json", is_flag=True)
def show(run_id: str, task: str | None, show_traceback: bool, logs_of: str | None, as_json: bool) -> None:
    """Show one run's task runs (a unique prefix of the id is enough).

    flowkit show RUN --traceback [TASK] prints where failed tasks raised, from your code on.
    """
    if task is not None and not show_traceback:
        raise UsageProblem(f"a task name ({task!r}) after the run id goes with --traceback: "
                           f"flowkit show {run_id} --traceback {task}")
    chosen = [flag for flag, on in (("--traceback", show_traceback), ("--logs", logs_of is not None),
                                    ("--json", as_json)) if on]
    if len(chosen) > 1:
        raise UsageProblem(f"{' and '.join(chosen)} each print something else: give one of them (--json has "
                           f"every task run's traceback; `flowkit show RUN --logs TASK` prints a task's output)")
    found = _store().run(run_id)
    if show_traceback:
        _print_tracebacks(found, task)
        return
    if logs_of is not None:
        matches = _task_runs_named(found, logs_of)
        for tr in matches:
            if len(matches) > 1:
                console.print(f"[bold]{escape(tr.node)}[/bold]")
            click.echo(tr.logs or "", nl=False)
        return
    if as_json:
        click.echo(json.dumps({"id": found.id, "flow": found.flow, "status": found.status, "task_runs": [
            {"node": tr.node, "task": tr.name, "status": tr.status, "attempts": tr.attempts, "duration": tr.duration,
             "run_time": tr.run_time, "waited": tr.waited,
             "artifact_id": tr.artifact_id, "error": first_line(tr.error, 500), "traceback": tr.traceback}
            for tr in found.task_runs], "checks": checks_json(found)}))
        return
    emit(f"run {found.id} of flow {escape(found.flow)}: {found.status}, trigger {found.trigger}, "
         f"started {_when(found.started)}, params {escape(json.dumps(found.params, default=repr))}")
    if "trigger_reason" in found.info:
        by = found.info.get("triggered_by")
        emit(f"triggered ({escape(found.trigger or '')})" + (f" by run {by}" if by else "")
             + f": {escape(json.dumps(found.info['trigger_reason'], default=str))}")
    if isinstance(found.error, str):
        emit(f"[red]{escape(found.error)}[/red]")
    emit(summary_table(found, limit=500, computed_by=_computed_by(_store(), found)))
    emit_checks(found)
    if found.failed:
        console.print(_traceback_hint(found))


@main.command()
@click.argument("target", metavar="RUN_ID/NODE|ARTIFACT_ID")
@click.option("--format", "fmt", type=click.Choice(["tree", "mermaid", "json"]), default="tree",
              show_default=True)
@click.option("--openlineage", "as_openlineage", is_flag=True,
              help="TARGET is a run id: print the run's OpenLineage events, one JSON object a line.")
@click.option("--emit", "send_events", is_flag=True,
              help="With --openlineage: send the events through the configured OpenLineage client instead.")
def lineage(target: str, fmt: str, as_openlineage: bool, send_events: bool) -> None:
    """Show what produced a value: task runs, input artifacts, parameters.

    RUN_ID/NODE (e.g. 3f2a9c/train) follows that run's own value; an ARTIFACT_ID
    shows every task run that computed those bytes, newest first. With
    --openlineage, TARGET is a run (a prefix of its id will do) and its
    OpenLineage run events are built from the store, as its live export sent them.
    """
    if as_openlineage or send_events:
        _openlineage(target, send_events)
        return
    import networkx as nx

    from flowkit.lineage import lineage as lineage_of

    g = lineage_of(target, store=_store())
    root = g.graph["root"]
    if fmt == "json":
        click.echo(json.dumps(nx.node_link_data(g, edges="edges"), default=repr))
    elif fmt == "mermaid":
        index = {n: f"n{i}" for i, n in enumerate(g.nodes)}
        lines = ["flowchart LR"]
        for n, d in g.nodes(data=True):
            label = _label(n, d).replace('"', "#quot;")
            lines.append(f'    {index[n]}["{label}"]')
        lines += [f"    {index[a]} --> {index[b]}" for a, b in g.edges]
        click.echo("\n".join(lines))
    else:
        tree = Tree(_label(root, g.nodes[root]))
        _grow(tree, g, root, set())
        emit(tree)


def _openlineage(run_id: str, send_events: bool) -> None:
    if "/" in run_id:
        raise UsageProblem(f"--openlineage exports a whole run: give a run id, not the task run {run_id!r}")
    try:
        from flowkit.export import openlineage
        from flowkit.export.openlineage_events import to_json
    except ImportError as exc:
        raise UsageProblem(f"--openlineage needs openlineage-python ({exc}): pip install 'flowkit[openlineage]'") \
            from None
    events = openlineage.run_events(run_id, store=_store())
    if send_events:
        sent = openlineage.send(events)
        err_console.print(f"sent {sent} OpenLineage event{'s' if sent != 1 else ''}")
    else:
        for event in events:
            click.echo(to_json(event))


def _label(node: str, data: dict[str, Any]) -> str:
    if data["kind"] == "artifact":
        if data.get("type") is None:
            return f"artifact {node[:12]} (no record: removed before flowkit kept the records of removed artifacts)"
        rows = f", {data['rows']} rows" if data.get("rows") is not None else ""
        removed = ""
        if data.get("removed") is not None:
            cause = "by gc" if data.get("removed_by") == "gc" else f"({data.get('removed_by')})"
            removed = f"; removed {cause} at {_when(data['removed'])}"
        return f"artifact {node[:12]} ({data.get('type')}, {data.get('size')} bytes{rows}{removed})"
    if data["kind"] == "task_run":
        return f"task {data['node']} in run {data['run_id'][:12]} of {data.get('flow')}"
    return f"param {data['name']} = {data['repr']}"


def _grow(tree: Tree, g: Any, node: str, seen: set[str]) -> None:
    for parent in g.predecessors(node):
        branch = tree.add(escape(_label(parent, g.nodes[parent])))
        if parent not in seen:
            seen.add(parent)
            _grow(branch, g, parent, seen)


@main.group()
def cache() -> None:
    """Inspect and clean the cache."""


@cache.command("ls")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def cache_ls(limit: int) -> None:
    """List cache entries, newest first."""
    entries = _store().cache_entries()
    table = Table(caption=f"{len(entries)} entries, {sum(e['size'] or 0 for e in entries)} bytes")
    for column in ("task", "key", "artifact", "type", "size", "created"):
        table.add_column(column)
    for e in entries[:limit]:
        table.add_row(e["task"] or "", e["key"][:12], (e["artifact_id"] or "")[:12], e["type"] or "",
                      str(e["size"]), _when(e["created"]))
    emit(table)


@cache.command("gc")
@click.option("--keep-days", type=float, default=30.0, show_default=True,
              help="Keep what runs of the last DAYS days produced or consumed.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def cache_gc(keep_days: float, dry_run: bool) -> None:
    """Remove artifacts that no cache entry and no recent run needs."""
    report = _store().gc(keep_days=keep_days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    extra = f" and {len(report.temporaries)} temporary files of unfinished writes" if report.temporaries else ""
    crashed = f"; {len(report.crashed)} runs whose process died recorded crashed" if report.crashed else ""
    console.print(f"{verb} {len(report.artifacts)} artifacts ({report.bytes} bytes){extra}{crashed}")


@cache.command("clear")
@click.option("--task", "tasks", multiple=True, help="Only this task's entries (repeatable).")
@click.option("--dry-run", is_flag=True, help="Only say what would be forgotten.")
def cache_clear(tasks: tuple[str, ...], dry_run: bool) -> None:
    """Forget cache entries so tasks run again (their artifacts go at the next gc)."""
    count = _store().clear_cache(tasks=list(tasks) or None, dry_run=dry_run)
    console.print(f"{'would forget' if dry_run else 'forgot'} {count} cache entries")




@main.group()
def schedule() -> None:
    """Manage cron schedules (run them with `flowkit scheduler`)."""


def _scheduler(**kwargs: Any) -> Any:
    from flowkit.scheduler import Scheduler

    return Scheduler(_home(), **kwargs)


@schedule.command("add")
@click.argument("target", metavar="FILE.py[:FLOW]")
@click.option("--cron", "expr", required=True, help='A cron expression, e.g. "0 3 * * *" or @daily.')
@click.option("--tz", default="UTC", show_default=True, help="An IANA time zone, e.g. Europe/Paris.")
@param_option
@click.option("--name", help="The schedule's name (default: the flow's name).")
@click.option("--catchup", type=click.Choice(["none", "latest", "all"]), default="latest", show_default=True)
@click.option("--overlap", type=click.Choice(["skip", "allow"]), default="skip", show_default=True)
@click.option("--max-catchup", type=click.IntRange(min=1))
def schedule_add(target: str, expr: str, tz: str, params: tuple[str, ...], params_file: str | None,
                 name: str | None, catchup: str,
                 overlap: str, max_catchup: int | None) -> None:
    """Schedule a flow: flowkit schedule add flows.py:train --cron "0 3 * * *" --tz Europe/Paris"""
    from flowkit.schedule import Cron

    flow = load_flow(target)
    cron = Cron(expr, tz=tz, catchup=catchup, overlap=overlap, max_catchup=max_catchup)
    added = _scheduler().add(flow, cron, parse_params(flow, params, params_file), name=name)
    nxt = added.next_fire(added.created)
    console.print(f"scheduled {escape(added.name)}: {escape(added.flow_ref)} at {escape(cron.expr)} ({cron.tz}); "
                  f"next run {nxt.isoformat()}")


@schedule.command("ls")
@click.option("--json", "as_json", is_flag=True)
def schedule_ls(as_json: bool) -> None:
    """List schedules with their next fire time."""
    import time

    scheduler = _scheduler()
    items = scheduler.schedules()
    now = time.time()
    if as_json:
        click.echo(json.dumps([{"name": s.name, "flow": s.flow_ref, "cron": s.cron.expr, "tz": s.cron.tz,
                                "paused": s.paused, "params": json.loads(json.dumps(s.params, default=str)),
                                "refused": s.refused,
                                "next": None if s.paused else s.next_fire(now).isoformat()} for s in items]))
        return
    if not items:
        console.print("no schedules; add one with `flowkit schedule add FILE.py:FLOW --cron ...`")
        return
    table = Table()
    for column in ("name", "flow", "cron", "tz", "catchup", "overlap", "state", "next run"):
        table.add_column(column)
    for s in items:
        table.add_row(s.name, s.flow_ref, s.cron.expr, s.cron.tz, s.cron.catchup, s.cron.overlap,
                      "refused" if s.refused else "paused" if s.paused else "active",
                      "" if s.paused else s.next_fire(now).isoformat())
    emit(table)
    for s in items:
        if s.refused:
            console.print(f"[red]{escape(s.refused)}[/red]")


@schedule.command("rm")
@click.argument("name")
def schedule_rm(name: str) -> None:
    """Remove a schedule."""
    _scheduler().remove(name)
    console.print(f"removed schedule {escape(name)}")


@schedule.command("pause")
@click.argument("name")
def schedule_pause(name: str) -> None:
    """Pause a schedule (no runs until it is resumed)."""
    _scheduler().pause(name)
    console.print(f"paused schedule {escape(name)}")


@schedule.command("resume")
@click.argument("name")
def schedule_resume(name: str) -> None:
    """Resume a paused schedule (slots that passed meanwhile are not run)."""
    _scheduler().resume(name)
    console.print(f"resumed schedule {escape(name)}")


@main.command("scheduler")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--once", is_flag=True, help="One tick, then exit (e.g. from system cron).")
@click.option("--lease", type=float, default=30.0, show_default=True, help="Seconds a scheduler's lease lasts.")
def scheduler_cmd(files: tuple[str, ...], once: bool, lease: float) -> None:
    """Fire due runs until stopped (SIGTERM/Ctrl-C); FILES' @fk.flow(schedule=...) flows are added first."""
    import logging

    from flowkit.scheduler import load_scheduled_flows

    scheduler = _scheduler(lease_seconds=lease, background=not once)
    for found in load_scheduled_flows(list(files), scheduler):
        console.print(f"schedule {escape(found.name)}: {escape(found.cron.expr)} ({found.cron.tz})")
    if once:
        for fire in scheduler.tick():
            run = f" (run {fire.run_id[:12]})" if fire.run_id else ""
            console.print(f"{escape(fire.schedule)} {fire.slot.isoformat()}: {fire.status}{run}")
        scheduler.release()
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("flowkit").addHandler(handler)
    logging.getLogger("flowkit").setLevel(logging.INFO)
    console.print(f"scheduler {scheduler.id} running; stop with Ctrl-C or SIGTERM")
    scheduler.run_forever()
    console.print("scheduler stopped")


# At the end: these commands use this module's console and store helpers.
from flowkit.cli.artifacts import artifacts  # noqa: E402
from flowkit.cli.models import models  # noqa: E402
from flowkit.cli.tracking import checks_json, compare, emit_checks, gate_failed, metrics, write_junit  # noqa: E402

main.add_command(artifacts)
main.add_command(metrics)
main.add_command(models)
runs.add_command(compare)
from flowkit.cli.serve import serve  # noqa: E402
main.add_command(serve)
from flowkit.cli.ui import ui  # noqa: E402
main.add_command(ui)
