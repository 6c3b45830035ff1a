"""``flowkit models``: the model registry from the shell (over :mod:`flowkit.ml.registry`).

::

    flowkit models ls                      # every model: versions, latest, aliases
    flowkit models ls churn                # the versions of one model
    flowkit models show churn@production   # metrics, params, signature, producing run, its inputs
    flowkit models promote churn 3 --to production --reason "beats 2"
    flowkit models rollback churn production
    flowkit models history churn --alias production
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

__all__ = ["models"]


def _store() -> Any:
    from flowkit.cli import _store as store

    return store()


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


@click.group()
@click.option("--home", type=click.Path(file_okay=False), help="The store folder (as `flowkit --home`).")
@click.pass_context
def models(ctx: click.Context, home: str | None) -> None:
    """Registered models: list, show, promote, roll back, and the history of their aliases."""
    if home is not None:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["home"] = home


@models.command("ls")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_ls(name: str | None, as_json: bool) -> None:
    """List models, or the versions of model NAME."""
    from flowkit.cli import _when, console, emit
    from flowkit.ml import registry

    store = _store()
    if name is None:
        found = registry.models(store=store)
        if as_json:
            click.echo(json.dumps([asdict(m) for m in found]))
            return
        if not found:
            console.print("no models registered yet; call fk.registry.register(name, model) in a task")
            return
        table = Table()
        for column in ("model", "versions", "latest", "aliases", "updated"):
            table.add_column(column)
        for m in found:
            aliases = ", ".join(f"{a} -> {v}" for a, v in m.aliases.items())
            table.add_row(escape(m.name), str(m.versions), str(m.latest), escape(aliases), _when(m.updated_at))
        emit(table)
        return
    versions = registry.versions(name, store=store)
    if as_json:
        click.echo(json.dumps([asdict(v) for v in versions], default=repr))
        return
    table = Table(title=f"model {escape(name)}")
    for column in ("version", "aliases", "metrics", "run", "registered", "by"):
        table.add_column(column)
    for v in versions:
        table.add_row(str(v.version), escape(", ".join(v.aliases)), escape(_metrics(v.metrics)),
                      (v.run_id or "")[:12], _when(v.created_at), escape(v.created_by or ""))
    emit(table)


def _inputs(version: Any, store: Any) -> list[str]:
    """The inputs of the task run behind a version, one line each (from its lineage)."""
    from flowkit.lineage import lineage

    if version.task_run_id is None:
        return []
    g = lineage(version.artifact_id, store=store)
    if version.task_run_id not in g:
        return []
    lines = []
    for parent in g.predecessors(version.task_run_id):
        data = g.nodes[parent]
        if data["kind"] == "artifact":
            producers = [p for p in g.predecessors(parent)]
            origin = f" from {g.nodes[producers[0]]['node']}" if producers else ""
            lines.append(f"artifact {parent[:12]} ({data.get('type')}){origin}")
        else:
            lines.append(f"param {data['name']} = {data['repr']}")
    return lines


@models.command("show")
@click.argument("uri", metavar="NAME[:VERSION|@ALIAS]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def models_show(uri: str, as_json: bool) -> None:
    """Show one version: metrics, params, aliases, signature, the run behind it and its inputs."""
    from flowkit.cli import _when, emit
    from flowkit.ml import registry

    store = _store()
    v = registry.get(uri, store=store)
    inputs = _inputs(v, store)
    if as_json:
        click.echo(json.dumps({**asdict(v), "inputs": inputs}, default=repr))
        return
    lines = [f"[bold]model {escape(v.name)}:{v.version}[/bold]  artifact {v.artifact_id[:12]}",
             f"aliases: {escape(', '.join(v.aliases)) or '-'}",
             f"registered {_when(v.created_at)} by {escape(v.created_by or '?')}",
             f"metrics: {escape(_metrics(v.metrics)) or '-'}",
             f"params: {escape(json.dumps(v.params, default=repr)) if v.params else '-'}"]
    if v.tags:
        lines.append(f"tags: {escape(json.dumps(v.tags, default=repr))}")
    if v.signature:
        cols = ", ".join(f"{c['name']}" + (f": {c['dtype']}" if c.get("dtype") else "")
                         for c in v.signature.get("inputs", []))
        lines.append(f"signature: {escape(cols)}")
    lines.append("libraries: " + escape(", ".join(f"{k} {x}" for k, x in sorted(v.library_versions.items()))))
    if v.task_run_id:
        lines.append(f"produced by: task run {escape(v.task_run_id)}")
        lines += [f"  input {escape(line)}" for line in inputs]
    else:
        lines.append("produced by: no recorded run (registered from outside a flow)")
    for line in lines:
        emit(line)


@models.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--to", "alias", default="production", show_default=True, help="The alias to move.")
@click.option("--reason", help="Why, for the history.")
@click.option("--require-gate", is_flag=True, help="Refuse a version whose run failed or failed a check.")
def models_promote(name: str, version: int, alias: str, reason: str | None, require_gate: bool) -> None:
    """Point alias --to (default production) at VERSION of model NAME."""
    from flowkit.cli import console
    from flowkit.ml import registry

    store = _store()
    before = registry.aliases(name, store=store).get(alias)
    v = registry.promote(name, version, to=alias, reason=reason, require_gate=require_gate, store=store)
    was = f" (was {before})" if before is not None and before != v.version else ""
    console.print(f"{escape(v.name)}@{escape(alias)} -> version {v.version}{was}")


@models.command("rollback")
@click.argument("name")
@click.argument("alias", default="production")
@click.option("--reason", help="Why, for the history.")
def models_rollback(name: str, alias: str, reason: str | None) -> None:
    """Point ALIAS (default production) of model NAME back at its previous holder."""
    from flowkit.cli import console
    from flowkit.ml import registry

    store = _store()
    before = registry.aliases(name, store=store).get(alias)
    v = registry.rollback(name, alias, reason=reason, store=store)
    was = f" (was {before})" if before is not None else ""
    console.print(f"{escape(v.name)}@{escape(alias)} -> version {v.version}{was}")


@models.command("history")
@click.argument("name")
@click.option("--alias", help="Only this alias.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_history(name: str, alias: str | None, as_json: bool) -> None:
    """The moves of model NAME's aliases, oldest first."""
    from flowkit.cli import _when, console, emit
    from flowkit.ml import registry

    changes = registry.history(name, alias, store=_store())
    if as_json:
        click.echo(json.dumps([asdict(c) for c in changes]))
        return
    if not changes:
        console.print(f"no alias of model {escape(name)} has moved yet")
        return
    table = Table(title=f"model {escape(name)}: alias history")
    for column in ("when", "alias", "action", "version", "previous", "who", "run", "reason"):
        table.add_column(column)
    for c in changes:
        table.add_row(_when(c.when), escape(c.alias), c.action, "-" if c.version is None else str(c.version),
                      "-" if c.previous is None else str(c.previous), escape(c.who or ""), (c.run_id or "")[:12],
                      escape(c.reason or ""))
    emit(table)
