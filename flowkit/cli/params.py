"""Loading a flow for the CLI and turning ``-p name=value`` strings (and ``--params`` files) into typed parameters.

Values are converted by the flow's type hints. A float parameter refuses ``nan``
and ``inf`` unless its own type admits them: its annotation is ``typing.Any``
(or absent), or its default is itself non-finite (``limit: float = math.inf``).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import os
import pathlib
import types
import typing
from typing import Any

import click

from flowkit.files import File
from flowkit.secrets import Secret
from flowkit.flow import Flow, describe_params
from flowkit.flowref import FlowLoadError
from flowkit.flowref import load_flow as _load_flow

__all__ = ["coerce", "convert", "load_flow", "load_params_file", "parse_params"]


class UsageProblem(click.UsageError):
    """Bad input from the command line: a message that says what to do, exit code 2."""


def load_flow(target: str) -> Flow[..., Any]:
    """The flow a CLI target names; a bad target is a usage error."""
    try:
        return _load_flow(target)
    except FlowLoadError as exc:
        raise UsageProblem(str(exc)) from exc


def _describe_type(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(name: str, text: str, tp: Any) -> Any:
    """Convert one parameter value by its type hint; ``click.BadParameter`` names it when it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null") and len(options) != len(typing.get_args(tp)):
            return None
        for option in options:
            try:
                return convert(name, text, option)
            except click.BadParameter:
                continue
        raise click.BadParameter(f"{text!r} is not a {_describe_type(tp)}", param_hint=f"'-p {name}'")
    try:
        if tp is typing.Any or tp is None:
            try:
                return json.loads(text)
            except ValueError:
                return text
        if tp is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "y", "on"):
                return True
            if lowered in ("0", "false", "no", "n", "off"):
                return False
            raise ValueError("expected true/false")
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
        if tp is dt.datetime:
            return dt.datetime.fromisoformat(text)
        if tp is dt.date:
            return dt.date.fromisoformat(text)
        if tp in (pathlib.Path, os.PathLike):
            return pathlib.Path(text)
        if tp is File:
            return File(text)
        if tp is Secret:
            return Secret(text)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return tp[text] if text in tp.__members__ else tp(text)
        if tp in (list, dict, tuple) or origin in (list, dict, tuple, set, frozenset):
            value = json.loads(text)
            want = origin or tp
            if want in (tuple, set, frozenset) and isinstance(value, list):
                value = want(value)
            if not isinstance(value, want):
                raise ValueError(f"JSON {type(value).__name__}, not {want.__name__}")
            return value
        return tp(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise click.BadParameter(f"{text!r} is not a valid {_describe_type(tp)} ({exc})",
                                 param_hint=f"'-p {name}'") from None


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert a value read from a parameters file (already a number, list, date...) by its type hint.

    Text goes through :func:`convert`, as ``-p`` values do; a number for a float stays a
    float (an int becomes one); ``click.BadParameter`` when the value does not fit.
    """
    if isinstance(value, str):
        return convert(name, value, tp)
    origin = typing.get_origin(tp)
    if tp is typing.Any or tp is None:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(name, value, option)
            except click.BadParameter:
                continue
    elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif tp is bool and isinstance(value, bool):
        return value
    elif tp in (list, dict, tuple) or origin in (list, dict, tuple, set, frozenset):
        want = origin or tp
        if want in (tuple, set, frozenset) and isinstance(value, list):
            return want(value)
        if isinstance(value, want):
            return value
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            pass
    elif isinstance(tp, type) and tp not in (int, float, bool) and isinstance(value, tp):
        return value  # a date for a date, ...
    raise click.BadParameter(f"{value!r} is not a valid {_describe_type(tp)}", param_hint=f"{name!r}")


def load_params_file(path: str) -> dict[str, Any]:
    """The parameters in a ``.json``, ``.yaml``/``.yml`` or ``.toml`` file: one mapping of name to value."""
    file = pathlib.Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".toml"):
        raise UsageProblem(f"--params {path}: give a .json, .yaml, .yml or .toml file")
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"--params {path}: cannot read the file: {exc.strerror or exc}") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text.decode("utf-8"))
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - every parser's error says where the file is wrong
        raise UsageProblem(f"--params {path}: not valid {suffix[1:].upper()}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageProblem(f"--params {path}: expected a mapping of parameter names to values, "
                           f"got a {type(data).__name__}")
    return data


def _check_finite(flow: Flow[..., Any], name: str, value: Any, hint: Any, given: str) -> None:
    if not isinstance(value, float) or math.isfinite(value) or hint is typing.Any:
        return
    default = flow.signature.parameters[name].default
    if isinstance(default, float) and not math.isfinite(default):
        return  # the parameter's own default is non-finite: so may its values be
    raise UsageProblem(f"{given}: parameter {name!r} of flow {flow.name!r} takes a finite number, not {value!r}; "
                       f"a float parameter admits nan and inf only when its default is non-finite "
                       f"(e.g. = math.inf) or it is annotated typing.Any")


def parse_params(flow: Flow[..., Any], pairs: tuple[str, ...], params_file: str | None = None) -> dict[str, Any]:
    """``("n=5", "lr=0.1")`` (over the values of ``params_file``, if given) to typed keyword arguments for ``flow``.

    A name given twice with ``-p`` is an error; ``-p`` overrides the file.
    """
    try:
        hints = typing.get_type_hints(flow.fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat values as JSON or text
        hints = {}
    params = flow.signature.parameters
    out: dict[str, Any] = {}
    if params_file is not None:
        for name, value in load_params_file(params_file).items():
            if name not in params:
                raise UsageProblem(f"--params {params_file}: flow {flow.name!r} has no parameter {name!r}; its "
                                   f"parameters are: {describe_params(flow.signature)}")
            try:
                out[name] = coerce(name, value, hints.get(name, typing.Any))
            except click.BadParameter as exc:
                raise UsageProblem(f"--params {params_file}: parameter {name!r}: {exc.message}") from None
            _check_finite(flow, name, out[name], hints.get(name, typing.Any), f"--params {params_file}")
    given: dict[str, str] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise UsageProblem(f"parameter {pair!r} must look like name=value")
        if name not in params:
            raise UsageProblem(f"flow {flow.name!r} has no parameter {name!r}; its parameters are: "
                               f"{describe_params(flow.signature)}")
        if name in given:
            raise UsageProblem(f"parameter {name!r} is given twice (-p {given[name]} and -p {pair}); give it once")
        given[name] = pair
        out[name] = convert(name, text, hints.get(name, typing.Any))
        _check_finite(flow, name, out[name], hints.get(name, typing.Any), f"-p {pair}")
    return out
