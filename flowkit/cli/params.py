"""Loading a flow for the CLI and turning ``-p name=value`` strings into typed parameters."""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import pathlib
import types
import typing
from typing import Any

import click

from flowkit.files import File
from flowkit.flow import Flow, describe_params
from flowkit.flowref import FlowLoadError
from flowkit.flowref import load_flow as _load_flow

__all__ = ["convert", "load_flow", "parse_params"]


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


def parse_params(flow: Flow[..., Any], pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("n=5", "lr=0.1")`` to typed keyword arguments for ``flow``."""
    try:
        hints = typing.get_type_hints(flow.fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat values as JSON or text
        hints = {}
    params = flow.signature.parameters
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise UsageProblem(f"parameter {pair!r} must look like name=value")
        if name not in params:
            raise UsageProblem(f"flow {flow.name!r} has no parameter {name!r}; its parameters are: "
                               f"{describe_params(flow.signature)}")
        out[name] = convert(name, text, hints.get(name, typing.Any))
    return out
