"""Metrics, params and tags logged from inside tasks, and the tables they make.

Inside a running task::

    @fk.task
    def train(df, C=1.0):
        fk.log_param("C", C)
        for epoch in range(10):
            fk.log_metric("loss", loss, step=epoch)
        fk.log_metrics({"auc": auc, "f1": f1})
        fk.set_tag("family", "logreg")

Each call appends to the current task call (:mod:`flowkit.context`); the
entries travel back with the task's record (from a Dask worker too) and are
written in the same transaction as its task run, so a call costs a few
microseconds. Outside a running task they raise :class:`~flowkit.TrackingError`
(never a silent no-op), as does a metric that is not a finite number.

Afterwards: ``fk.metrics(run_id)`` (or ``run.metrics()``) is a DataFrame with
one row per logged value (run, task, node, name, step, value, time, source),
and ``fk.compare_runs([id1, id2])`` one row per run with its parameters and the
last value of each metric. A ``cached`` task run shows the metrics of the task
run that computed its value (``source`` names it), so a fully cached rerun
still has a complete table.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowkit.context import require_task
from flowkit.errors import TrackingError
from flowkit.records import Tracked

if TYPE_CHECKING:
    import pandas as pd

    from flowkit.records import Run

__all__ = ["check_results", "checks_of", "compare_runs", "log_metric", "log_metrics", "log_param", "metrics",
           "metrics_of", "plain", "set_tag"]

_METRIC_COLUMNS = ["run", "task", "node", "name", "step", "value", "time", "source"]
_CHECK_COLUMNS = ["run", "task", "node", "check", "passed", "severity", "observed", "threshold", "baseline",
                  "message", "sample", "artifact_id", "source"]

_MAX_NAME = 250


def _name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TrackingError(f"{what} name must be a non-empty string, not {name!r}")
    if "\x00" in name or len(name) > _MAX_NAME:
        raise TrackingError(f"{what} name {name[:40]!r}... must be at most {_MAX_NAME} characters, without NUL")
    return name


def _number(name: str, value: Any, task: str) -> float:
    if type(value) is float and value - value == 0.0:  # the common case, finite, at C speed
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrackingError(f"task {task!r}: metric {name!r} must be a number, not {type(value).__name__} "
                            f"{value!r}; log text with fk.set_tag or fk.log_param")
    number = float(value)
    if not math.isfinite(number):
        raise TrackingError(f"task {task!r}: metric {name!r} is {number!r}; a metric must be a finite number "
                            f"(a NaN usually means the computation went wrong upstream)")
    return number


_MAX_STEP = 2**63 - 1  # the store's INTEGER


def _step(step: Any, name: str) -> int | None:
    if step is None or (type(step) is int and 0 <= step <= _MAX_STEP):
        return step
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not 0 <= step <= _MAX_STEP:
        raise TrackingError(f"metric {name!r}: step must be a non-negative integer of at most 2**63 - 1, "
                            f"not {step!r}")
    return int(step)


def plain(value: Any) -> Any:
    """A JSON-compatible form of a value: numpy scalars as numbers, a non-finite float and anything else as text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return plain(float(value))
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric of the running task (``step`` for a series: an epoch, an iteration).

    Raises:
        TrackingError: outside a running task, or ``value`` is not a finite number.
    """
    ctx = require_task("fk.log_metric")
    _name("metric", name)
    ctx.tracked.append(Tracked("metric", name, _number(name, value, ctx.task), _step(step, name), time.time()))


def log_metrics(values: Mapping[str, float], step: int | None = None) -> None:
    """Record several metrics of the running task at once; all are checked before any is recorded."""
    ctx = require_task("fk.log_metrics")
    if not isinstance(values, Mapping):
        raise TrackingError(f"fk.log_metrics takes a mapping of names to numbers, not {type(values).__name__}")
    now = time.time()
    entries = [Tracked("metric", _name("metric", k), _number(k, v, ctx.task), _step(step, k), now)
               for k, v in values.items()]
    ctx.tracked.extend(entries)


def log_param(name: str, value: Any) -> None:
    """Record a parameter of the running task (numbers, strings, lists... others as their text)."""
    ctx = require_task("fk.log_param")
    ctx.tracked.append(Tracked("param", _name("param", name), plain(value), None, time.time()))


def set_tag(name: str, value: Any) -> None:
    """Tag the running task run (``value`` is kept as text)."""
    ctx = require_task("fk.set_tag")
    ctx.tracked.append(Tracked("tag", _name("tag", name), str(value), None, time.time()))


# --- reading back -------------------------------------------------------------------------------

def _db(home: str | os.PathLike[str] | None, store: Any = None) -> Any:
    from flowkit.store import Store

    return (store if store is not None else Store.open(home)).db


def _run_ids(db: Any, run_ids: Sequence[str | Run] | str | Run) -> list[str]:
    """Full run ids from ids, unique prefixes or Run records; a clear error for one that matches nothing."""
    items = [run_ids] if isinstance(run_ids, str) or hasattr(run_ids, "task_runs") else list(run_ids)
    out = []
    for item in items:
        rid = item if isinstance(item, str) else item.id
        if db.get_run(rid) is None:
            matches = db.run_ids_like(rid)
            if len(matches) != 1:
                what = "no run" if not matches else f"{len(matches)} runs"
                raise TrackingError(f"{what} in the store match{'es' if not matches else ''} run id {rid!r}")
            rid = matches[0]
        out.append(rid)
    return out


def metrics(run_id: str | Run | Sequence[str | Run], *, home: str | os.PathLike[str] | None = None,
            store: Any = None) -> pd.DataFrame:
    """The metrics logged in a run (or several): one row per value, in logging order.

    Columns: ``run``, ``task``, ``node``, ``name``, ``step``, ``value``, ``time`` (a UTC
    timestamp) and ``source`` (for a cached task run, the task run that logged the value).
    """
    db = _db(home, store)
    rows = db.tracked(_run_ids(db, run_id), kind="metric")
    return _metric_frame([(r.run_id, r.task, r.node, r.name, r.step, r.value, r.time, r.source) for r in rows])


def _metric_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=_METRIC_COLUMNS)
    frame["step"] = frame["step"].astype("Int64")
    frame["value"] = frame["value"].astype(float)
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    return frame


def metrics_of(task_runs: Sequence[Any]) -> pd.DataFrame:
    """:func:`metrics` from task run records in memory (a run made without a store)."""
    return _metric_frame([(tr.run_id, tr.name, tr.node, t.name, t.step, t.value, t.time, None)
                          for tr in task_runs for t in tr.tracked if t.kind == "metric"])


def check_results(run_id: str | Run | Sequence[str | Run], *, home: str | os.PathLike[str] | None = None,
                  store: Any = None) -> pd.DataFrame:
    """The check results of a run's task runs (``run.checks()``): one row per check, in order.

    Columns: ``run``, ``task``, ``node``, ``check``, ``passed``, ``severity``, ``observed``,
    ``threshold``, ``baseline`` (the registry version compared against), ``message``,
    ``sample`` (failing rows, for tables), ``artifact_id`` (the output checked, when it
    was committed) and ``source`` (as in :func:`metrics`).
    """
    import pandas as pd

    db = _db(home, store)
    return pd.DataFrame([(r.run_id, r.task, r.node, r.check, r.passed, r.severity, r.observed, r.threshold,
                          r.baseline, r.message, r.sample, r.artifact_id, r.source)
                         for r in db.check_results(_run_ids(db, run_id))], columns=_CHECK_COLUMNS)


def checks_of(task_runs: Sequence[Any]) -> pd.DataFrame:
    """:func:`check_results` from task run records in memory (a run made without a store)."""
    import pandas as pd

    return pd.DataFrame([(tr.run_id, tr.name, tr.node, c.check, c.passed, c.severity, c.observed, c.threshold,
                          c.baseline, c.message, c.sample, tr.artifact_id, None)
                         for tr in task_runs for c in tr.checks], columns=_CHECK_COLUMNS)


def compare_runs(run_ids: Sequence[str | Run], *, home: str | os.PathLike[str] | None = None,
                 store: Any = None) -> pd.DataFrame:
    """One row per run: its flow, status and start, ``params.<name>`` and ``metrics.<name>`` columns.

    Params are the run's flow parameters and what its tasks logged with ``fk.log_param``
    (tags as ``tags.<name>``); a metric's value is its last one (highest step, then latest).
    """
    import pandas as pd

    db = _db(home, store)
    ids = _run_ids(db, run_ids)
    tracked = db.tracked(ids)
    rows = []
    for rid in ids:
        run = db.get_run(rid)
        row: dict[str, Any] = {"run": rid, "flow": run.flow, "status": run.status,
                               "started": pd.Timestamp(run.started, unit="s", tz="UTC") if run.started else None}
        row.update({f"params.{k}": v for k, v in sorted(_loads(run.params).items())})
        last: dict[str, tuple[Any, ...]] = {}
        for t in tracked:
            if t.run_id != rid:
                continue
            if t.kind == "metric":
                rank = (t.step if t.step is not None else -1, t.time)
                if t.name not in last or rank >= last[t.name][0]:
                    last[t.name] = (rank, t.value)
            else:
                row[f"{t.kind}s.{t.name}"] = t.value
        row.update({f"metrics.{k}": v[1] for k, v in sorted(last.items())})
        rows.append(row)
    frame = pd.DataFrame(rows, dtype=object)  # a param one run lacks stays 3, not 3.0, in the others
    for column in frame.columns:
        if column.startswith("metrics."):
            frame[column] = frame[column].astype(float)
    if "started" in frame.columns:
        frame["started"] = pd.to_datetime(frame["started"], utc=True)
    return frame


def _loads(params: Any) -> dict[str, Any]:
    import json

    if isinstance(params, dict):
        return params
    return json.loads(params) if params else {}
