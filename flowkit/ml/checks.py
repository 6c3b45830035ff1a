"""Checks that gate a task's output before it is committed (``fk.checks``): CI for data and models.

::

    @fk.task(checks=[fk.checks.rows(min=100), fk.checks.no_nulls(["age"]),
                     fk.checks.schema({"age": "int64", "plan": "object"})])
    def load() -> pd.DataFrame: ...

    @fk.task(checks=[fk.checks.metric("auc", ">=", 0.8),
                     fk.checks.better_than("churn@production", "auc", min_delta=0.01)])
    def evaluate(model, test) -> dict: ...

After the task returns, in the worker that ran it, every check looks at the
value. When one with ``severity="error"`` (the default) fails, or raises, the
task fails with :class:`~flowkit.CheckFailedError` naming the check, the task and
what was observed: the value is not stored or cached, the task is not retried
(the same output would fail again) and downstream is skipped, as for any
failure. A check with ``severity="warn"`` is recorded and nothing else happens.
Every result (:class:`~flowkit.records.CheckResult`) is recorded with the task
run: ``run.checks()``, ``flowkit show RUN``, ``flowkit run --junit report.xml``.

A check is any of:

- a built-in below: :func:`metric`, :func:`schema`, :func:`rows`, :func:`no_nulls`,
  :func:`unique`, :func:`in_range`, :func:`better_than`;
- a callable ``(value) -> None | bool | str``: ``False`` or a string (the reason)
  fails, ``None`` or ``True`` passes (:func:`check` wraps one with a name and a severity);
- a pandera schema (``pandera.DataFrameSchema``), where pandera is installed.

Checks are part of a task's cache key: adding or changing one reruns the task,
and :func:`better_than` keys on the registry version its alias points to, so a
cached output is never let through a gate it was not checked against.
"""

from __future__ import annotations

import dataclasses
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flowkit.errors import CheckFailedError, DefinitionError
from flowkit.ml.tracking import plain
from flowkit.records import CheckResult

__all__ = ["Check", "as_check", "better_than", "check", "in_range", "metric", "no_nulls", "rows", "run_checks",
           "schema", "unique"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
_SEVERITIES = ("error", "warn")
SAMPLE_ROWS = 5


class Check:
    """Base of the built-in checks: a ``name``, a ``severity``, and :meth:`evaluate`."""

    severity: str = "error"

    @property
    def name(self) -> str:
        return repr(self)

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:  # pragma: no cover - overridden
        raise NotImplementedError

    def result(self, passed: bool, observed: Any = None, threshold: Any = None, message: str | None = None,
               sample: Any = None, baseline: str | None = None) -> CheckResult:
        return CheckResult(self.name, bool(passed), self.severity, plain(observed), plain(threshold), baseline,
                           None if passed else message, sample)

    def __flowkit_token__(self, inputs: Any) -> Any:
        from flowkit.hashing import Resolved

        return Resolved(("flowkit.check", repr(self), self.severity))


def _severity(owner: str, severity: str) -> None:
    if severity not in _SEVERITIES:
        raise DefinitionError(f"{owner}: severity must be 'error' or 'warn', not {severity!r}")


def _frame(check: Check, value: Any) -> Any:
    """``value`` as a DataFrame, or a TypeError naming the check."""
    import pandas as pd

    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"check {check.name} needs a pandas DataFrame, and the task returned a "
                        f"{type(value).__module__}.{type(value).__qualname__}")
    return value


def _columns(check: Check, frame: Any, columns: Sequence[str] | None) -> list[str]:
    cols = list(frame.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise KeyError(f"check {check.name}: the table has no column(s) {', '.join(map(repr, missing))}; its "
                       f"columns are {', '.join(map(repr, map(str, frame.columns)))}")
    return cols


def _sample(frame: Any) -> list[dict[str, Any]]:
    return [plain(dict(r)) for r in frame.head(SAMPLE_ROWS).to_dict("records")]


@dataclasses.dataclass(frozen=True, repr=False)
class _Metric(Check):
    metric: str
    op: str
    value: float
    severity: str = "error"

    def __repr__(self) -> str:
        return f"metric({self.metric!r} {self.op} {self.value!r})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        observed = _metric_value(self.metric, value, ctx)
        if observed is None:
            return self.result(False, None, self.value, f"the output has no metric {self.metric!r} (return a dict "
                                                        f"with that key, or log it with fk.log_metric)")
        ok = _OPS[self.op](observed, self.value)
        return self.result(ok, observed, f"{self.op} {self.value!r}",
                           f"{self.metric} = {observed!r}, required {self.op} {self.value!r}")


def _metric_value(name: str, value: Any, ctx: Any) -> float | None:
    """A metric from a dict-like output, else the last value the task logged under that name."""
    found: Any = None
    if isinstance(value, Mapping) and name in value:
        found = value[name]
    elif ctx is not None:
        for t in reversed(ctx.tracked):
            if t.kind == "metric" and t.name == name:
                found = t.value
                break
    if found is None:
        return None
    if isinstance(found, bool) or not isinstance(found, numbers.Real):
        raise TypeError(f"metric {name!r} is a {type(found).__name__} ({found!r}), not a number")
    return float(found)


def metric(name: str, op: str, value: float, *, severity: str = "error") -> Check:
    """The output's metric ``name`` compared with ``value``: ``metric("auc", ">=", 0.8)``.

    The metric is ``output[name]`` for a dict-like output, else the last value the task
    logged with ``fk.log_metric(name, ...)``. ``op`` is one of ``> >= < <= == !=``.
    """
    if op not in _OPS:
        raise DefinitionError(f"fk.checks.metric({name!r}, ...): op must be one of {', '.join(_OPS)}, not {op!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DefinitionError(f"fk.checks.metric({name!r}, {op!r}, ...): the threshold must be a number, "
                              f"not {value!r}")
    _severity(f"fk.checks.metric({name!r})", severity)
    return _Metric(name, op, float(value), severity)


@dataclasses.dataclass(frozen=True, repr=False)
class _Schema(Check):
    columns: tuple[tuple[str, str], ...]
    exact: bool = False
    severity: str = "error"

    def __repr__(self) -> str:
        return f"schema({dict(self.columns)!r}{', exact=True' if self.exact else ''})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        frame = _frame(self, value)
        problems = []
        for col, want in self.columns:
            if col not in frame.columns:
                problems.append(f"column {col!r} is missing")
            elif not _dtype_matches(frame[col].dtype, want):
                problems.append(f"column {col!r} is {frame[col].dtype}, not {want}")
        if self.exact:
            extra = [str(c) for c in frame.columns if c not in dict(self.columns)]
            if extra:
                problems.append(f"unexpected column(s) {', '.join(map(repr, extra))}")
        observed = {str(c): str(t) for c, t in frame.dtypes.items()}
        return self.result(not problems, observed, dict(self.columns), "; ".join(problems))


_KINDS = {"int": "is_integer_dtype", "integer": "is_integer_dtype", "float": "is_float_dtype",
          "number": "is_numeric_dtype", "numeric": "is_numeric_dtype", "bool": "is_bool_dtype",
          "string": "is_string_dtype", "str": "is_string_dtype", "datetime": "is_datetime64_any_dtype",
          "category": "is_categorical_dtype"}


def _dtype_matches(actual: Any, want: str) -> bool:
    import pandas.api.types as types

    if want in _KINDS:
        if want == "category":
            return str(actual) == "category"
        return bool(getattr(types, _KINDS[want])(actual))
    if want in ("object", "str") and types.is_string_dtype(actual):
        return True  # text columns: object before pandas 3, str since
    return str(actual) == want


def schema(columns: Mapping[str, Any], *, exact: bool = False, severity: str = "error") -> Check:
    """A DataFrame has these columns with these dtypes: ``schema({"age": "int64", "plan": "object"})``.

    A dtype is its pandas name (``"int64"``, ``"float32"``, ``"object"``, ``"category"``,
    ``"datetime64[ns]"``), a kind (``"int"``, ``"float"``, ``"number"``, ``"bool"``,
    ``"string"``, ``"datetime"``), or a type (``int``, ``float``, ``str``, ``bool``).
    ``exact=True`` also fails on columns not listed.
    """
    if not isinstance(columns, Mapping) or not columns:
        raise DefinitionError(f"fk.checks.schema needs a non-empty dict of column -> dtype, not {columns!r}")
    names = {int: "int", float: "float", str: "string", bool: "bool"}
    spec = tuple((str(k), names.get(v, v) if isinstance(v, type) else str(v)) for k, v in columns.items())
    _severity("fk.checks.schema", severity)
    return _Schema(spec, exact, severity)


@dataclasses.dataclass(frozen=True, repr=False)
class _Rows(Check):
    min: int | None
    max: int | None
    severity: str = "error"

    def __repr__(self) -> str:
        bounds = [f"min={self.min}"] * (self.min is not None) + [f"max={self.max}"] * (self.max is not None)
        return f"rows({', '.join(bounds)})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        n = len(value)
        low = self.min is not None and n < self.min
        high = self.max is not None and n > self.max
        want = " and ".join([f">= {self.min}"] * (self.min is not None) + [f"<= {self.max}"] * (self.max is not None))
        return self.result(not (low or high), n, want, f"{n} rows, required {want}")


def rows(min: int | None = None, max: int | None = None, *, severity: str = "error") -> Check:  # noqa: A002
    """The output has between ``min`` and ``max`` rows (``len(value)``; either bound may be left out)."""
    for bound in (min, max):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
            raise DefinitionError(f"fk.checks.rows: bounds must be non-negative integers, not {bound!r}")
    if min is None and max is None:
        raise DefinitionError("fk.checks.rows needs min=, max= or both")
    if min is not None and max is not None and min > max:
        raise DefinitionError(f"fk.checks.rows: min={min} is above max={max}")
    _severity("fk.checks.rows", severity)
    return _Rows(min, max, severity)


@dataclasses.dataclass(frozen=True, repr=False)
class _NoNulls(Check):
    columns: tuple[str, ...] | None
    severity: str = "error"

    def __repr__(self) -> str:
        return f"no_nulls({list(self.columns) if self.columns is not None else ''})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        frame = _frame(self, value)
        cols = _columns(self, frame, self.columns)
        nulls = frame[cols].isna()
        counts = {str(c): int(n) for c, n in nulls.sum().items() if n}
        bad = frame[nulls.any(axis=1)]
        message = ", ".join(f"{c}: {n} null" for c, n in counts.items())
        return self.result(not counts, counts, 0, message, _sample(bad) if counts else None)


def no_nulls(columns: Sequence[str] | None = None, *, severity: str = "error") -> Check:
    """No missing values in these columns of a DataFrame (all columns by default)."""
    _severity("fk.checks.no_nulls", severity)
    return _NoNulls(None if columns is None else tuple(_names("no_nulls", columns)), severity)


def _names(what: str, columns: Any) -> list[str]:
    cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols:
        raise DefinitionError(f"fk.checks.{what} needs at least one column")
    return cols


@dataclasses.dataclass(frozen=True, repr=False)
class _Unique(Check):
    columns: tuple[str, ...]
    severity: str = "error"

    def __repr__(self) -> str:
        return f"unique({list(self.columns)})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        frame = _frame(self, value)
        cols = _columns(self, frame, self.columns)
        dup = frame[frame.duplicated(subset=cols, keep=False)]
        n = int(frame.duplicated(subset=cols).sum())
        return self.result(n == 0, n, 0, f"{n} duplicate row(s) on {', '.join(cols)}", _sample(dup) if n else None)


def unique(columns: str | Sequence[str], *, severity: str = "error") -> Check:
    """No two rows of a DataFrame share these columns' values."""
    _severity("fk.checks.unique", severity)
    return _Unique(tuple(_names("unique", columns)), severity)


@dataclasses.dataclass(frozen=True, repr=False)
class _InRange(Check):
    column: str
    lo: float | None
    hi: float | None
    severity: str = "error"

    def __repr__(self) -> str:
        return f"in_range({self.column!r}, {self.lo!r}, {self.hi!r})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        frame = _frame(self, value)
        _columns(self, frame, [self.column])
        col = frame[self.column]
        bad = col.notna() & ((col < self.lo) if self.lo is not None else False)
        if self.hi is not None:
            bad = bad | (col.notna() & (col > self.hi))
        n = int(bad.sum())
        observed = {"min": col.min(), "max": col.max(), "outside": n}
        return self.result(n == 0, observed, [self.lo, self.hi],
                           f"{n} value(s) of {self.column!r} outside [{self.lo}, {self.hi}]",
                           _sample(frame[bad]) if n else None)


def in_range(column: str, lo: float | None = None, hi: float | None = None, *, severity: str = "error") -> Check:
    """Every (non-null) value of a DataFrame column lies in ``[lo, hi]`` (either bound may be ``None``)."""
    if lo is None and hi is None:
        raise DefinitionError(f"fk.checks.in_range({column!r}) needs lo, hi or both")
    if lo is not None and hi is not None and lo > hi:
        raise DefinitionError(f"fk.checks.in_range({column!r}): lo={lo} is above hi={hi}")
    _severity("fk.checks.in_range", severity)
    return _InRange(column, lo, hi, severity)


@dataclasses.dataclass(frozen=True, repr=False)
class _BetterThan(Check):
    model: str
    metric: str
    min_delta: float = 0.0
    higher_is_better: bool = True
    severity: str = "error"

    def __repr__(self) -> str:
        way = "" if self.higher_is_better else ", higher_is_better=False"
        return f"better_than({self.model!r}, {self.metric!r}, min_delta={self.min_delta!r}{way})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        from flowkit.errors import ModelNotFoundError
        from flowkit.ml import registry

        observed = _metric_value(self.metric, value, ctx)
        if observed is None:
            return self.result(False, None, None, f"the output has no metric {self.metric!r}")
        try:
            base = registry.get(self.model, store=ctx.store if ctx is not None else None)
        except ModelNotFoundError:  # no baseline yet (the first model): nothing to beat
            return self.result(True, observed, None, baseline=None)
        if self.metric not in (base.metrics or {}):
            return self.result(False, observed, None, f"the baseline {base.name}:{base.version} has no metric "
                               f"{self.metric!r} recorded (register it with metrics={{{self.metric!r}: ...}})",
                               baseline=f"{base.name}:{base.version}")
        reference = float(base.metrics[self.metric])
        if self.higher_is_better:
            need, ok = reference + self.min_delta, observed >= reference + self.min_delta
            want = f">= {need!r}"
        else:
            need, ok = reference - self.min_delta, observed <= reference - self.min_delta
            want = f"<= {need!r}"
        return self.result(ok, observed, want, f"{self.metric} = {observed!r}, the baseline {base.name}:"
                           f"{base.version} has {reference!r}; required {want}",
                           baseline=f"{base.name}:{base.version}")

    def __flowkit_token__(self, inputs: Any) -> Any:
        """Keyed on the version the alias points to now: moving it re-checks the output."""
        from flowkit.errors import ModelNotFoundError
        from flowkit.hashing import Resolved
        from flowkit.ml import registry

        try:
            base = registry.get(self.model, store=inputs)
            resolved = f"{base.name}:{base.version}"
        except ModelNotFoundError:
            resolved = None
        return Resolved(("flowkit.check", repr(self), self.severity, resolved))


def better_than(model: str, metric: str, min_delta: float = 0.0, higher_is_better: bool = True, *,
                severity: str = "error") -> Check:
    """The output's ``metric`` beats the one recorded on the registry version ``model`` names.

    ``model`` is ``"churn@production"`` or ``"churn:3"``; the baseline is that version's
    ``metrics[metric]`` (given to :func:`flowkit.registry.register`). With no such
    model or alias yet (the first model), the check passes. The result names the
    version it compared against.
    """
    if not isinstance(model, str) or not model:
        raise DefinitionError(f"fk.checks.better_than: model must be 'name@alias' or 'name:version', not {model!r}")
    if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or min_delta < 0:
        raise DefinitionError(f"fk.checks.better_than: min_delta must be a non-negative number, not {min_delta!r}")
    _severity("fk.checks.better_than", severity)
    return _BetterThan(model, metric, float(min_delta), bool(higher_is_better), severity)


@dataclasses.dataclass(frozen=True, repr=False)
class _Callable(Check):
    fn: Callable[[Any], Any]
    label: str
    severity: str = "error"

    def __repr__(self) -> str:
        return self.label

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        verdict = self.fn(value)
        if verdict is None or verdict is True:
            return self.result(True)
        if verdict is False:
            return self.result(False, message="returned False")
        if isinstance(verdict, str):
            return self.result(False, message=verdict)
        raise TypeError(f"check {self.label} returned {verdict!r}; a check returns None or True (pass), False or "
                        f"a reason string (fail)")

    def __flowkit_token__(self, inputs: Any) -> Any:
        from flowkit.hashing import Resolved, fingerprint

        return Resolved(("flowkit.check", self.label, self.severity, fingerprint(self.fn)))


@dataclasses.dataclass(frozen=True, repr=False)
class _Pandera(Check):
    schema: Any
    severity: str = "error"

    def __repr__(self) -> str:
        return f"pandera({getattr(self.schema, 'name', None) or type(self.schema).__name__})"

    def evaluate(self, value: Any, ctx: Any) -> CheckResult:
        import pandera.errors

        try:
            self.schema.validate(value, lazy=True)
        except (pandera.errors.SchemaErrors, pandera.errors.SchemaError) as exc:
            cases = getattr(exc, "failure_cases", None)
            if cases is None or not len(cases):
                return self.result(False, None, None, str(exc) or type(exc).__name__)
            what = sorted({f"{c}: {k}" for c, k in zip(cases.get("column", [None] * len(cases)),
                                                         cases.get("check", [None] * len(cases)))})
            return self.result(False, len(cases), 0, f"{len(cases)} failure case(s): {'; '.join(what)}",
                               _sample(cases))
        return self.result(True)

    def __flowkit_token__(self, inputs: Any) -> Any:
        from flowkit.hashing import Resolved

        return Resolved(("flowkit.check", "pandera", repr(self.schema), self.severity))


def check(fn: Callable[[Any], Any], *, name: str | None = None, severity: str = "error") -> Check:
    """A callable ``(value) -> None | bool | str`` as a check with a name and a severity."""
    if not callable(fn):
        raise DefinitionError(f"fk.checks.check needs a callable, not {fn!r}")
    _severity("fk.checks.check", severity)
    return _Callable(fn, name or getattr(fn, "__name__", None) or repr(fn), severity)


def as_check(obj: Any, owner: str = "task") -> Check:
    """A check from what ``checks=`` was given: a check, a pandera schema, or a callable."""
    if isinstance(obj, Check):
        return obj
    module = type(obj).__module__ or ""
    if module.split(".")[0] == "pandera" and hasattr(obj, "validate"):
        return _Pandera(obj)
    if callable(obj):
        return check(obj)
    raise DefinitionError(f"{owner}: checks= takes fk.checks.* checks, callables (value) -> None | bool | str, or "
                          f"pandera schemas; got {obj!r}")


def run_checks(checks: Sequence[Check], value: Any, ctx: Any) -> tuple[CheckResult, ...]:
    """Evaluate every check on ``value``; raise :class:`~flowkit.CheckFailedError` if a blocking one failed.

    A check that raises counts as failed, with the exception as its message. Every
    check runs, so all results are recorded even when the first fails.
    """
    results = []
    for c in checks:
        try:
            result = c.evaluate(value, ctx)
        except Exception as exc:  # noqa: BLE001 - a broken check fails closed, with the reason
            result = CheckResult(c.name, False, c.severity, None, None, None,
                                 f"the check raised {type(exc).__name__}: {exc}", None)
        results.append(result)
    failed = [r for r in results if not r.passed and r.severity == "error"]
    if failed:
        first = failed[0]
        task = ctx.task if ctx is not None else "?"
        observed = f" (observed {first.observed!r})" if first.observed is not None and str(first.observed) not in (
            first.message or "") else ""
        more = f"; {len(failed) - 1} more check(s) failed" if len(failed) > 1 else ""
        raise CheckFailedError(f"task {task!r}: check {first.check} failed: {first.message}{observed}{more}; the "
                               f"output was not stored", task=task, check=first.check, observed=first.observed,
                               results=results)
    return tuple(results)
