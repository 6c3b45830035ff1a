"""The exception tree drawn in ``flowkit/errors.py``'s docstring is the real one, complete."""

from __future__ import annotations

import importlib
import pkgutil
import re

import flowkit
from flowkit import errors


def _drawn() -> dict[str, tuple[str | None, str | None]]:
    """Each class drawn in the tree: (its parent in the drawing, the built-in named beside it)."""
    doc = errors.__doc__ or ""
    block = doc[doc.index("    FlowkitError\n"):].split("\n\n")[0].splitlines()
    drawn: dict[str, tuple[str | None, str | None]] = {}
    stack: list[tuple[int, str]] = []
    for line in block:
        match = re.search(r"(\w+)(?: \((\w+)\))?", line)
        assert match, line
        column, name, builtin = match.start(1), match.group(1), match.group(2)
        while stack and stack[-1][0] >= column:
            stack.pop()
        drawn[name] = (stack[-1][1] if stack else None, builtin)
        stack.append((column, name))
    return drawn


def _flowkit_errors() -> set[type[BaseException]]:
    for info in pkgutil.walk_packages(flowkit.__path__, "flowkit."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found, todo = set(), [errors.FlowkitError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("flowkit") and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_every_flowkit_error_is_drawn_in_the_tree_under_its_parent():
    drawn = _drawn()
    classes = _flowkit_errors()
    assert {cls.__name__ for cls in classes} == set(drawn)
    for cls in classes:
        parent, builtin = drawn[cls.__name__]
        bases = {base.__name__ for base in cls.__bases__}
        if parent is None:
            assert cls is errors.FlowkitError
        else:
            assert parent in bases, (cls, parent)
        assert bases - {parent, "Exception"} == ({builtin} if builtin else set()), cls
