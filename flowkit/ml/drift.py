"""Data drift (``fk.drift``): has the data a model sees moved away from what it was trained on?

::

    report = fk.drift.compare(train_df, todays_df)
    report.drifted                  # dataset drift: the share of drifted columns >= drift_share (0.5)
    report.drifted_columns          # ['age', 'plan']
    report.to_frame()               # one row per column: test, statistic, p-value, effect, threshold...

    @fk.flow
    def monitoring():
        report = fk.drift.check("churn@production", todays_batch(), name="churn-features", gate=True)
        return retrain_if_needed(report)

    fk.drift.history("churn-features")    # one row per stored report: run, time, drifted, share...

Each column gets one test, chosen the way Evidently chooses by default:

======================  ==========================================  ===========================================
column                  reference of at most 1,000 rows             reference above 1,000 rows
======================  ==========================================  ===========================================
numeric, > 5 values     Kolmogorov-Smirnov (``ks``), p < 0.05       Wasserstein distance / std of the reference
                                                                    (``wasserstein``), >= 0.1
categorical, > 2 values chi-squared (``chisquare``), p < 0.05       Jensen-Shannon distance (``jensenshannon``,
                                                                    base 2, on the category shares), >= 0.1
binary                  two-proportion z-test (``z``), p < 0.05     Jensen-Shannon distance, >= 0.1
======================  ==========================================  ===========================================

Unique values are counted over both frames, NaN left out; a numeric column with at most 5 of
them is categorical. ``method="psi"`` (population stability index, >= 0.1), any name above, or
a ``{column: method}`` mapping overrides the choice. A numeric column compared by a
distribution distance (``psi``, ``jensenshannon``) is binned on edges from both samples
(``numpy.histogram_bin_edges(..., "sturges")``) when it has more than 20 values, else
compared value by value.

With large samples nearly any difference is "significant", so every p-value comes with an
effect size: the KS statistic D, Cramér's V for chi-squared, |Cohen's h| for the z-test.
``min_effect=0.1`` makes a tested column drift only when its effect is that large too (the
distances are effect sizes already: their threshold is the bar).

Nothing here crashes on awkward data: a column missing from one side, a column all NaN, an
empty frame or a datetime column is reported in ``report.skipped`` (and as a row with no test)
and left out of the share; categories only one side has are named in the row's ``note``.

:func:`check` is the same comparison as a task: inside a flow it returns a ref to the report,
which is stored as an artifact; its metrics (``drift.share``, ``drift.drifted``...) and tags
(``drift.name``) are tracked, so :func:`history` is a query over the store; ``gate=True``
fails the task with :class:`~flowkit.CheckFailedError` naming the drifted columns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowkit.errors import DefinitionError, RegistryError
from flowkit.ml._drift_stats import STATS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ColumnDrift", "DriftReport", "METHODS", "check", "compare", "compare_predictions", "history"]

#: The tests and distances by name: whether it yields a p-value, and its default threshold.
METHODS: dict[str, tuple[bool, float]] = {
    "ks": (True, 0.05), "chisquare": (True, 0.05), "z": (True, 0.05),
    "wasserstein": (False, 0.1), "jensenshannon": (False, 0.1), "psi": (False, 0.1),
}
_NUMERIC_ONLY = frozenset({"ks", "wasserstein"})
_CATEGORICAL_ONLY = frozenset({"chisquare", "z"})
SMALL_SAMPLE = 1000     # reference rows up to which the tests are used, above which the distances
MAX_CATEGORIES = 5      # a numeric column with at most this many unique values is categorical


@dataclasses.dataclass(frozen=True, slots=True)
class ColumnDrift:
    """One column's comparison.

    Attributes:
        column: the column.
        type: ``"numeric"`` or ``"categorical"`` (``None`` when skipped).
        test: the method used (``"ks"``, ``"wasserstein"``...; ``None`` when skipped).
        statistic: the test statistic (D, chi-squared, z) or the distance.
        p_value: the test's p-value (``None`` for a distance).
        effect: the effect size (D, Cramér's V, |Cohen's h|; the distance itself for a distance).
        threshold: p-value below which, or distance from which, the column drifted.
        drifted: whether it drifted (``False`` when skipped).
        n_ref: non-missing values in the reference.
        n_cur: non-missing values in the current data.
        note: what else to know: new or vanished categories, why it was skipped...
    """

    column: Any
    type: str | None
    test: str | None
    statistic: float | None
    p_value: float | None
    effect: float | None
    threshold: float | None
    drifted: bool
    n_ref: int
    n_cur: int
    note: str | None = None

    @property
    def skipped(self) -> bool:
        return self.test is None


_ROW_FIELDS = [f.name for f in dataclasses.fields(ColumnDrift)]


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """The outcome of :func:`compare`: one :class:`ColumnDrift` per column, and the dataset verdict.

    Attributes:
        columns: the rows, in column order.
        drift_share: the share of drifted columns from which the dataset drifted.
        min_effect: the effect size a tested column needed as well (``None``: none).
        name: what the comparison is called (:func:`check`'s ``name``), if anything.
        reference: where the reference came from (``"churn:3 training data (artifact ...)"``), if known.
    """

    columns: tuple[ColumnDrift, ...]
    drift_share: float = 0.5
    min_effect: float | None = None
    name: str | None = None
    reference: str | None = None

    @property
    def compared(self) -> list[ColumnDrift]:
        """The rows that were tested (not skipped)."""
        return [c for c in self.columns if not c.skipped]

    @property
    def drifted_columns(self) -> list[Any]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def share_drifted(self) -> float:
        """Drifted columns / compared columns (0.0 when none could be compared)."""
        compared = self.compared
        return sum(c.drifted for c in compared) / len(compared) if compared else 0.0

    @property
    def drifted(self) -> bool:
        """Dataset drift: at least ``drift_share`` of the compared columns drifted."""
        return bool(self.compared) and self.share_drifted >= self.drift_share

    @property
    def skipped(self) -> dict[Any, str]:
        """The columns that could not be compared, with the reason."""
        return {c.column: c.note or "" for c in self.columns if c.skipped}

    def __getitem__(self, column: Any) -> ColumnDrift:
        for c in self.columns:
            if c.column == column:
                return c
        raise KeyError(f"the drift report has no column {column!r}; it has "
                       f"{', '.join(repr(c.column) for c in self.columns) or 'none'}")

    def summary(self) -> str:
        """One line: the verdict, the share and the drifted columns."""
        n, compared = len(self.drifted_columns), len(self.compared)
        verdict = "dataset drift" if self.drifted else "no dataset drift"
        text = f"{verdict}: {n} of {compared} column(s) drifted ({self.share_drifted:.0%}, threshold " \
               f"{self.drift_share:.0%})"
        if n:
            text += ": " + ", ".join(
                f"{c.column} ({c.test} {_fmt(c.p_value if c.p_value is not None else c.statistic)})"
                for c in self.columns if c.drifted)
        if self.skipped:
            text += "; not compared: " + ", ".join(f"{k} ({v})" for k, v in self.skipped.items())
        return text

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<DriftReport{label} {self.summary()}>"

    def to_frame(self) -> pd.DataFrame:
        """One row per column: column, type, test, statistic, p_value, effect, threshold, drifted, n_ref, n_cur, note."""
        import pandas as pd

        frame = pd.DataFrame([dataclasses.astuple(c) for c in self.columns], columns=_ROW_FIELDS)
        for name in ("statistic", "p_value", "effect", "threshold"):
            frame[name] = frame[name].astype(float)
        frame["drifted"] = frame["drifted"].astype(bool)
        return frame

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (column names as text, NaN as ``None``); :meth:`from_dict` reads it back."""
        return {"drifted": self.drifted, "share_drifted": self.share_drifted, "drift_share": self.drift_share,
                "drifted_columns": [str(c) for c in self.drifted_columns], "min_effect": self.min_effect,
                "name": self.name, "reference": self.reference,
                "skipped": {str(k): v for k, v in self.skipped.items()},
                "columns": [{**{f: _plain(getattr(c, f)) for f in _ROW_FIELDS}, "column": str(c.column)}
                            for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        rows = tuple(ColumnDrift(**{f: row.get(f) for f in _ROW_FIELDS}) for row in data["columns"])
        return cls(rows, data.get("drift_share", 0.5), data.get("min_effect"), data.get("name"),
                   data.get("reference"))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# --- comparing ----------------------------------------------------------------------------------

def compare(reference: Any, current: Any, columns: Sequence[Any] | None = None, method: str | Mapping[Any, str] =
            "auto", threshold: float | None = None, *, min_effect: float | None = None, drift_share: float = 0.5,
            name: str | None = None, store: Any = None) -> DriftReport:
    """Compare ``current`` with ``reference``, column by column (see the module docstring).

    Args:
        reference: a DataFrame (a Series or an array is one column), or ``"name@alias"`` /
            ``"name:version"``: the training data of that registry version, found through lineage.
        current: a DataFrame (a Series or an array is one column).
        columns: the columns to compare (default: every column of either frame).
        method: ``"auto"``, one of :data:`METHODS` for every column it applies to (the others
            stay automatic, noted), or a ``{column: method}`` mapping.
        threshold: the p-value (tests) or distance (distances) threshold; default 0.05 / 0.1.
        min_effect: a tested column drifts only if its effect size is at least this too.
        drift_share: the share of drifted columns from which the dataset drifted.
        name: a label kept on the report.
        store: the store to resolve a registry reference in (default ``$FLOWKIT_HOME``).

    Raises:
        ValueError: an unknown method, a method that does not fit a column named for it, or
            a threshold out of range. Awkward data never raises: it is reported.
    """
    _validate(method, threshold, min_effect, drift_share)
    source = None
    if isinstance(reference, str):
        source = reference
        reference, source = _training_data(reference, store)
    ref, cur = _as_frame(reference, "reference"), _as_frame(current, "current")
    if isinstance(columns, str):
        columns = [columns]
    wanted = list(columns) if columns is not None else _union(ref.columns, cur.columns)
    small = len(ref) <= SMALL_SAMPLE
    rows = []
    for col in wanted:
        chosen = method.get(col, "auto") if isinstance(method, Mapping) else method
        try:
            row = _column(col, ref, cur, chosen, threshold, min_effect, small, isinstance(method, Mapping))
        except _MethodError:
            raise
        except (TypeError, ValueError) as exc:  # values a test cannot take (lists, mixed objects...): say so
            row = _skip(col, f"could not be compared: {type(exc).__name__}: {exc}")
        rows.append(row)
    return DriftReport(tuple(rows), float(drift_share), None if min_effect is None else float(min_effect), name,
                       source)


def compare_predictions(reference: Any, current: Any, *, model: Any = None, proba: bool = False,
                        method: str = "auto", threshold: float | None = None, min_effect: float | None = None,
                        store: Any = None) -> DriftReport:
    """Prediction drift: compare a model's outputs on the reference with those on the current data.

    Given ``model`` (an object with ``predict``/``predict_proba``, or ``"name@alias"`` loaded
    from the registry), ``reference`` and ``current`` are feature tables and the model scores
    both; without it they are the predictions themselves (arrays, Series or DataFrames). One
    output is the column ``prediction``; several (class probabilities) are
    ``prediction_0``, ``prediction_1``... and the report drifts when any of them does.
    """
    if model is not None:
        if isinstance(model, str):
            model = _registry().load(model, store=store)
        how = "predict_proba" if proba else "predict"
        if not callable(getattr(model, how, None)):
            raise TypeError(f"fk.drift.compare_predictions: the model ({type(model).__name__}) has no {how}()")
        reference, current = getattr(model, how)(reference), getattr(model, how)(current)
    ref, cur = _predictions(reference, "reference"), _predictions(current, "current")
    share = 1.0 / max(len(ref.columns), 1)  # any output that drifts is prediction drift
    return compare(ref, cur, method=method, threshold=threshold, min_effect=min_effect, drift_share=share,
                   name="predictions")


def _predictions(values: Any, what: str) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        return values
    if isinstance(values, pd.Series):
        return values.rename("prediction").to_frame()
    array = np.asarray(values)
    if array.ndim == 1:
        return pd.DataFrame({"prediction": array})
    if array.ndim == 2:
        return pd.DataFrame(array, columns=[f"prediction_{i}" for i in range(array.shape[1])])
    raise ValueError(f"fk.drift.compare_predictions: the {what} predictions have {array.ndim} dimensions; pass a "
                     f"vector of predictions or a 2-D array of class probabilities")


def _validate(method: Any, threshold: Any, min_effect: Any, drift_share: Any) -> None:
    names = list(method.values()) if isinstance(method, Mapping) else [method]
    for m in names:
        if m != "auto" and m not in METHODS:
            raise ValueError(f"fk.drift: unknown method {m!r}; use 'auto' or one of {', '.join(METHODS)}")
    for label, value, low, high in (("threshold", threshold, 0.0, math.inf), ("min_effect", min_effect, 0.0, math.inf),
                                    ("drift_share", drift_share, 0.0, 1.0)):
        if value is None and label != "drift_share":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
            bound = "between 0 and 1" if high == 1.0 else "a non-negative number"
            raise ValueError(f"fk.drift: {label} must be {bound}, not {value!r}")


def _as_frame(value: Any, what: str) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, pd.Series):
        return value.to_frame(value.name if value.name is not None else "value")
    if isinstance(value, (np.ndarray, list, tuple)):
        array = np.asarray(value)
        if array.ndim == 1:
            return pd.DataFrame({"value": array})
        if array.ndim == 2:
            return pd.DataFrame(array)
    raise TypeError(f"fk.drift: the {what} data must be a pandas DataFrame (or a Series or an array), not a "
                    f"{type(value).__module__}.{type(value).__qualname__}")


def _union(a: Any, b: Any) -> list[Any]:
    seen = list(a)
    have = set(seen)
    return seen + [c for c in b if c not in have]


def _skip(col: Any, note: str, n_ref: int = 0, n_cur: int = 0) -> ColumnDrift:
    return ColumnDrift(col, None, None, None, None, None, None, False, n_ref, n_cur, note)


def _column(col: Any, ref: pd.DataFrame, cur: pd.DataFrame, method: str, threshold: float | None,
            min_effect: float | None, small: bool, explicit: bool) -> ColumnDrift:
    import pandas.api.types as types

    if col not in ref.columns and col not in cur.columns:
        return _skip(col, "in neither the reference nor the current data")
    if col not in ref.columns:
        return _skip(col, "missing from the reference", 0, int(cur[col].notna().sum()))
    if col not in cur.columns:
        return _skip(col, "missing from the current data", int(ref[col].notna().sum()), 0)
    r, c = ref[col], cur[col]
    if isinstance(r, type(ref)) or isinstance(c, type(cur)):
        return _skip(col, "the column name is not unique")
    if len(ref) == 0 or len(cur) == 0:
        return _skip(col, f"the {'reference' if len(ref) == 0 else 'current'} data has no rows")
    if types.is_datetime64_any_dtype(r) or types.is_datetime64_any_dtype(c):
        return _skip(col, "a datetime column: convert it to numbers (e.g. an age in days) to compare it")
    notes = []
    numeric = _is_numeric(r) and _is_numeric(c)
    if _is_numeric(r) != _is_numeric(c):
        notes.append(f"dtypes differ ({r.dtype} / {c.dtype}): compared as categories")
    if numeric:
        rv, cv = _finite(r), _finite(c)
    else:
        rv, cv = r.dropna(), c.dropna()
    if len(rv) == 0 or len(cv) == 0:
        side = "reference" if len(rv) == 0 else "current data"
        return _skip(col, f"all values are missing in the {side}", len(rv), len(cv))
    n_values = _n_unique(rv, cv, numeric)
    kind = "numeric" if numeric and n_values > MAX_CATEGORIES else "categorical"
    test = _choose(kind, n_values, small)
    if method != "auto":
        if (kind == "categorical" and method in _NUMERIC_ONLY) or (kind == "numeric" and method in _CATEGORICAL_ONLY) \
                or (method == "z" and n_values > 2):
            why = f"{method} does not apply to a {kind} column with {n_values} value(s)"
            if explicit:
                raise _MethodError(f"fk.drift: column {col!r}: {why}; choose another method or 'auto'")
            notes.append(f"{why}: used {test}")
        else:
            test = method
    if kind == "categorical":
        notes.extend(_category_notes(rv, cv, numeric))
    statistic, p_value, effect = STATS[test](rv, cv, kind)
    has_p, default = METHODS[test]
    limit = default if threshold is None else float(threshold)
    if has_p:
        drifted = p_value < limit and (min_effect is None or effect >= min_effect)
    else:
        drifted = statistic >= limit
    return ColumnDrift(col, kind, test, float(statistic), None if p_value is None else float(p_value),
                       float(effect), limit, bool(drifted), len(rv), len(cv), "; ".join(notes) or None)


class _MethodError(ValueError):
    """A method named for a column that it does not fit: the caller's mistake, raised."""


def _is_numeric(s: pd.Series) -> bool:
    import pandas.api.types as types

    return types.is_numeric_dtype(s) and not types.is_bool_dtype(s)


def _finite(s: pd.Series) -> np.ndarray:
    import numpy as np

    x = s.to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(x)
    return x if keep.all() else x[keep]


def _n_unique(rv: Any, cv: Any, numeric: bool) -> int:
    """Unique values over both samples; cheap when a numeric column plainly has many."""
    import numpy as np
    import pandas as pd

    if numeric:
        head = np.unique(rv[:4 * MAX_CATEGORIES])
        if len(head) > MAX_CATEGORIES:
            return len(head)  # a lower bound is enough: the column is numeric
        return len(pd.unique(np.concatenate([rv, cv])))
    return len(pd.unique(pd.concat([rv, cv], ignore_index=True).astype(object)))


def _choose(kind: str, n_values: int, small: bool) -> str:
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    if not small:
        return "jensenshannon"
    return "z" if n_values <= 2 else "chisquare"


def _category_notes(rv: Any, cv: Any, numeric: bool) -> list[str]:
    import pandas as pd

    ref_values, cur_values = set(pd.unique(pd.Series(rv))), set(pd.unique(pd.Series(cv)))
    notes = []
    for label, values in (("new categories", cur_values - ref_values), ("categories gone", ref_values - cur_values)):
        if values:
            shown = sorted(map(str, values))
            notes.append(f"{label}: {', '.join(shown[:10])}{'...' if len(shown) > 10 else ''}")
    return notes


# --- the reference from the registry -------------------------------------------------------------

def _registry() -> Any:
    from flowkit.ml import registry

    return registry


def _training_data(uri: str, store: Any = None) -> tuple[pd.DataFrame, str]:
    """The training data of the registry version ``uri`` names, and a description of where it came from."""
    from flowkit.store import Store

    store = store if store is not None else Store.open()
    version = _registry().get(uri, store=store)
    artifact_id = _training_artifact(store, getattr(version, "artifact_id", None),
                                     getattr(version, "task_run_id", None))
    if artifact_id is None:
        raise RegistryError(f"fk.drift: no DataFrame leads to the model {uri!r} ({version.name}:{version.version}) "
                            f"in its lineage, so its training data is unknown; pass the reference DataFrame itself")
    return store.load(artifact_id), f"{uri} = {version.name}:{version.version}, training data {artifact_id[:12]}"


def _training_artifact(store: Any, artifact_id: str | None, task_run_id: str | None) -> str | None:
    """The DataFrame artifact nearest upstream of a model in its lineage (the inputs of the task that made it).

    Among several at the same distance, one whose producing task's name says ``train``,
    else the one with the most rows.
    """
    from flowkit.lineage import lineage

    for target in (artifact_id, task_run_id):  # the model's own lineage first, then its task run's
        if target is None:
            continue
        try:
            graph = lineage(target, store=store)
        except KeyError:
            continue
        found = _nearest_frame(graph, artifact_id if artifact_id in graph else graph.graph["root"])
        if found is not None:
            return found
    return None


def _nearest_frame(graph: Any, start: str) -> str | None:
    layer, seen = [start], {start}
    while layer:
        frames = [n for n in layer if n != start and graph.nodes[n].get("kind") == "artifact"
                  and str(graph.nodes[n].get("type") or "").endswith("DataFrame")]
        if frames:
            return max(frames, key=lambda n: (_says_train(graph, n), graph.nodes[n].get("rows") or 0, n))
        layer = [p for n in layer for p in graph.predecessors(n) if p not in seen]
        seen.update(layer)
    return None


def _says_train(graph: Any, artifact: str) -> bool:
    names = [str(graph.nodes[p].get("task") or "") + " " + str(graph.nodes[p].get("node") or "")
             for p in graph.predecessors(artifact)]
    return any("train" in n.lower() for n in names)


@dataclasses.dataclass(frozen=True)
class _RegistryReference:
    """``"name@alias"`` as a task input: keyed on the version it resolves to, so moving the alias re-checks."""

    uri: str

    def __flowkit_token__(self, inputs: Any) -> Any:
        from flowkit.errors import ModelNotFoundError
        from flowkit.hashing import Resolved

        try:
            version = _registry().get(self.uri, store=inputs)
            resolved = (version.name, version.version, getattr(version, "artifact_id", None))
        except (RegistryError, ModelNotFoundError):
            resolved = None
        return Resolved(("flowkit.drift.reference", self.uri, resolved))


# --- the task, the gate and the history ----------------------------------------------------------

_TAG = "drift.name"


def _check(reference: Any, current: Any, name: str, columns: Sequence[Any] | None, method: Any,
           threshold: float | None, min_effect: float | None, drift_share: float) -> DriftReport:
    """The body of :func:`check`: compare, then log what :func:`history` reads."""
    from flowkit.context import current_task
    from flowkit.ml.tracking import log_metric, set_tag

    ctx = current_task()
    if isinstance(reference, _RegistryReference):
        reference = reference.uri
    report = compare(reference, current, columns, method, threshold, min_effect=min_effect,
                     drift_share=drift_share, name=name, store=ctx.store if ctx is not None else None)
    if ctx is not None:
        set_tag(_TAG, name)
        set_tag("drift.drifted_columns", json.dumps([str(c) for c in report.drifted_columns]))
        log_metric("drift.share", report.share_drifted)
        log_metric("drift.drifted", float(report.drifted))
        log_metric("drift.n_drifted", len(report.drifted_columns))
        log_metric("drift.n_compared", len(report.compared))
        for row in report.compared:
            label = f"drift.column.{row.column}"
            if len(label) <= 250 and row.statistic is not None and math.isfinite(row.statistic):
                log_metric(label, row.statistic)
    return report


def _gate(report: DriftReport) -> str | None:
    """Fails (with the reason) when the dataset drifted."""
    return report.summary() if report.drifted else None


_TASKS: dict[Any, Any] = {}


def _task(gate: bool | str) -> Any:
    """The check task, made on first use (so importing flowkit fingerprints nothing)."""
    severity = {True: "error", False: None, "error": "error", "warn": "warn"}[gate]
    if severity not in _TASKS:
        from flowkit.ml.checks import check as as_check
        from flowkit.task import task

        checks = [as_check(_gate, name="drift gate", severity=severity)] if severity else []
        _TASKS[severity] = task(name="drift_check", checks=checks)(_check)
    return _TASKS[severity]


def check(reference: Any, current: Any, *, name: str = "drift", columns: Sequence[Any] | None = None,
          method: str | Mapping[Any, str] = "auto", threshold: float | None = None,
          min_effect: float | None = None, drift_share: float = 0.5, gate: bool | str = False) -> Any:
    """:func:`compare` as a task (``drift_check``): in a flow, a ref to the stored :class:`DriftReport`.

    The report is the task's artifact; the task logs ``drift.share``, ``drift.drifted``,
    ``drift.n_drifted``, ``drift.n_compared`` and ``drift.column.<column>`` (the statistic)
    as metrics and tags itself ``drift.name = name``, so :func:`history` finds it.

    Args:
        reference: a DataFrame or a ref to one, or ``"name@alias"`` (the training data of that
            registry version; the cache key covers the version the alias points to).
        current: a DataFrame or a ref to one.
        name: what this comparison is called in :func:`history`.
        gate: ``True`` fails the task with :class:`~flowkit.CheckFailedError` (naming the
            drifted columns) when the dataset drifted, so downstream is skipped; ``"warn"``
            records the failed check and lets the report through.
        columns, method, threshold, min_effect, drift_share: as for :func:`compare`.

    Outside a flow it is a plain call: the report, nothing stored.
    """
    from flowkit.task import check_name

    check_name(name, "drift check")
    if gate not in (True, False, "error", "warn"):
        raise DefinitionError(f"fk.drift.check: gate must be True, False or 'warn', not {gate!r}")
    _validate(method, threshold, min_effect, drift_share)
    if isinstance(reference, str):
        reference = _RegistryReference(reference)
    cols = None if columns is None else list(columns)
    return _task(gate)(reference, current, name, cols, dict(method) if isinstance(method, Mapping) else method,
                       threshold, min_effect, drift_share)


_HISTORY_COLUMNS = ["run", "time", "drifted", "share_drifted", "drifted_columns", "artifact_id", "status", "node"]


def history(name: str, *, home: str | os.PathLike[str] | None = None, store: Any = None) -> pd.DataFrame:
    """Every report :func:`check` made under ``name``, oldest first: one row per task run.

    Columns: ``run``, ``time`` (the run's start, UTC), ``drifted``, ``share_drifted``,
    ``drifted_columns`` (a list), ``artifact_id`` (the stored report: ``store.load(id)``;
    ``None`` when a gate failed, which keeps the metrics but not the report), ``status``
    and ``node``. A cached rerun is a row too, with the report it was served.
    """
    import pandas as pd

    from flowkit.store import Store

    db = (store if store is not None else Store.open(home)).db
    found = db.tagged(_TAG, name)
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for t in db.tracked(sorted({f.run_id for f in found})) if found else ():
        entries.setdefault((t.run_id, t.node), {})[t.name] = t.value
    rows = []
    for f in found:
        seen = entries.get((f.run_id, f.node), {})
        drifted = seen.get("drift.drifted")
        rows.append((f.run_id, f.started, None if drifted is None else bool(drifted), seen.get("drift.share"),
                     json.loads(seen.get("drift.drifted_columns") or "[]"), f.artifact_id, f.status, f.node))
    frame = pd.DataFrame(rows, columns=_HISTORY_COLUMNS, dtype=object)
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    frame["share_drifted"] = frame["share_drifted"].astype(float)
    if frame["drifted"].notna().all():
        frame["drifted"] = frame["drifted"].astype(bool)
    return frame
