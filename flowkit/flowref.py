"""Loading flows by reference: ``path/to/file.py:flow`` or ``package.module:flow``.

The CLI and the scheduler use it; a schedule stores the reference so a
restarted process can load the flow again.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
import sys
import traceback
import types
from typing import Any

from flowkit.errors import FlowkitError
from flowkit.flow import Flow

__all__ = ["FlowLoadError", "flow_reference", "flows_in", "load_flow", "load_module"]


class FlowLoadError(FlowkitError, LookupError):
    """A flow reference that does not lead to a flow: no such file, module or flow, or an import error."""


def load_module(path: str) -> types.ModuleType:
    """Import a Python file as a module named after it, its folder first on ``sys.path``."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise FlowLoadError(f"no such file: {path}. Give the path of a Python file, e.g. flows/train.py:train")
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = ""
    for candidate in (file.stem, f"_flowkit_{file.stem}_{abs(hash(folder))}"):
        existing = sys.modules.get(candidate)
        if existing is None:
            name = candidate
            break
        if os.path.realpath(getattr(existing, "__file__", "") or "") == str(file.resolve()):
            return existing  # already imported: the same module object, not a second copy
    if not name:
        raise FlowLoadError(f"cannot import {path}: the module names {file.stem!r} and its alternative are taken")
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise FlowLoadError(f"{path} is not a Python file flowkit can import")
    module = importlib.util.module_from_spec(spec)
    module.__flowkit_file__ = str(file.resolve())  # type: ignore[attr-defined]  # referenced by path, not name
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if os.path.realpath(f.filename) == str(file.resolve())]
        where = f" (line {frames[-1].lineno})" if frames else ""
        raise FlowLoadError(f"importing {path} failed{where}: {type(exc).__name__}: {exc}") from exc
    return module


def flows_in(module: types.ModuleType) -> dict[str, Flow[..., Any]]:
    """The flows a module defines, by flow name."""
    return {value.name: value for value in vars(module).values() if isinstance(value, Flow)}


def load_flow(reference: str) -> Flow[..., Any]:
    """``FILE.py:FLOW`` (or ``FILE.py`` holding a single flow), or ``package.module:FLOW``, to the Flow.

    A module name is looked up with the current folder on the import path, as ``python -m`` does.
    """
    where, _, name = reference.partition(":")
    if where.endswith(".py") or os.sep in where or not where.replace(".", "").replace("_", "").isalnum():
        module = load_module(where)
    else:
        # As `python -m` does: a module in the current folder is importable by name, also from the
        # installed `flowkit` script (whose sys.path starts with the script's folder instead).
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise FlowLoadError(f"cannot import module {where!r}: {exc}") from exc
    flows = flows_in(module)
    by_attr = {k: v for k, v in vars(module).items() if isinstance(v, Flow)}
    if not flows:
        raise FlowLoadError(f"{where} defines no flow; decorate a function with @fk.flow")
    if not name:
        if len(flows) == 1:
            return next(iter(flows.values()))
        raise FlowLoadError(f"{where} defines several flows: {', '.join(sorted(flows))}; pick one as {where}:NAME")
    found = by_attr.get(name) or flows.get(name)
    if found is None:
        raise FlowLoadError(f"{where} has no flow {name!r}; its flows are: {', '.join(sorted(flows))}")
    return found


def flow_reference(flow: Flow[..., Any]) -> str:
    """How to load ``flow`` again in another process: ``module:attr`` or ``/abs/file.py:attr``."""
    module = sys.modules.get(flow.fn.__module__)
    attr = next((k for k, v in vars(module).items() if v is flow), None) if module is not None else None
    if module is None or attr is None:
        raise FlowLoadError(f"flow {flow.name!r} is not a module-level name, so another process cannot load it; "
                            f"define it at the top level of a module or file")
    by_path = getattr(module, "__flowkit_file__", None)
    if by_path is None and module.__name__ != "__main__":
        return f"{module.__name__}:{attr}"  # importable by name (an installed or importable package)
    file = by_path or getattr(module, "__file__", None)
    if file is None:
        raise FlowLoadError(f"flow {flow.name!r} comes from {module.__name__!r}, which has no file to load it from")
    return f"{os.path.abspath(file)}:{attr}"
