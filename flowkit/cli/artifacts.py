"""``flowkit artifacts``: list stored values and fetch one without writing Python.

``get -o FILE`` writes the value by this rule: a pandas DataFrame as CSV,
Parquet or Feather after the file's suffix (``.csv``, ``.parquet``,
``.feather``); a numpy array to ``.npy`` as ``.npy``; ``bytes`` as they are;
``str`` as UTF-8 text; anything else (and any value to ``.pkl``/``.pickle``)
pickled, to be read back with ``pickle.load``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from flowkit.cli.params import UsageProblem
from flowkit.hashing import short_repr

__all__ = ["artifacts", "write_value"]

_TABLE_SUFFIXES = {".csv": "CSV", ".parquet": "Parquet", ".feather": "Feather"}


def _is_frame(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame"


def write_value(value: Any, path: Path) -> str:
    """Write ``value`` to ``path`` by the module's rule; return how it was written."""
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        pass
    elif _is_frame(value):
        if suffix not in _TABLE_SUFFIXES:
            raise UsageProblem(f"-o {path}: a DataFrame is written as .csv, .parquet or .feather (or pickled "
                               f"to .pkl); pick one of these suffixes")
        import pandas as pd

        default_index = isinstance(value.index, pd.RangeIndex) and value.index.start == 0 and value.index.step == 1
        if suffix == ".csv":
            value.to_csv(path, index=not default_index)
        elif suffix == ".parquet":
            value.to_parquet(path)
        else:
            (value if default_index else value.reset_index()).to_feather(path)  # feather keeps no index
        return f"DataFrame as {_TABLE_SUFFIXES[suffix]}"
    elif type(value).__name__ == "ndarray" and type(value).__module__ == "numpy" and suffix == ".npy":
        import numpy as np

        np.save(path, value, allow_pickle=False)
        return "array as .npy"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        path.write_bytes(bytes(value))
        return "bytes as they are"
    elif isinstance(value, str):
        path.write_text(value, encoding="utf-8")
        return "text (UTF-8)"
    try:
        data = pickle.dumps(value)
    except Exception:  # noqa: BLE001 - e.g. a function defined in a flow file: cloudpickle can
        import cloudpickle

        data = cloudpickle.dumps(value)
    path.write_bytes(data)
    return f"{type(value).__name__} pickled"


@click.group()
def artifacts() -> None:
    """List stored values and fetch one (ids may be shortened to a unique prefix)."""


@artifacts.command("ls")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def artifacts_ls(limit: int, as_json: bool) -> None:
    """List artifacts, newest first, with the task that produced each."""
    from flowkit.cli import _store, _when, console, emit

    found = _store().artifact_list(limit)
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        console.print("no artifacts yet; run a flow first")
        return
    table = Table()
    for column in ("artifact", "type", "size", "rows", "created", "produced by"):
        table.add_column(column, no_wrap=column != "produced by")
    for a in found:
        origin = f"{a['node']} in run {a['run_id'][:12]}" if a["run_id"] else ""
        table.add_row(a["id"][:12], a["type"] or "", str(a["size"] or 0), "" if a["rows"] is None else str(a["rows"]),
                      _when(a["created"]), escape(origin))
    emit(table)


@artifacts.command("get")
@click.argument("artifact_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the value to FILE instead; its suffix decides how (below).")
def artifacts_get(artifact_id: str, output: Path | None) -> None:
    """Print a stored value (a preview of a DataFrame), or write it with -o FILE.

    With -o: a DataFrame is written as .csv, .parquet or .feather by the suffix, a
    numpy array to .npy as .npy, bytes as they are, text as UTF-8, anything else
    (or anything to .pkl) pickled.
    """
    from flowkit.cli import _store, console

    store = _store()
    full = store.find_artifact(artifact_id)
    value = store.load(full)
    if output is not None:
        how = write_value(value, output)
        console.print(f"wrote {escape(str(output))} ({how}, {output.stat().st_size} bytes)")
        return
    if _is_frame(value):
        rows, cols = value.shape
        click.echo(f"artifact {full[:12]}: DataFrame, {rows} rows x {cols} columns")
        click.echo(value.head(10).to_string())
        if rows > 10:
            click.echo(f"... {rows - 10} more rows; write them all with -o FILE.csv")
    else:
        click.echo(short_repr(value, 2000))
