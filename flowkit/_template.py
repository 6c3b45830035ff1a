"""Argument templates: a node's arguments with its refs replaced by slots, and how they are filled.

A node's arguments are stored as a *template*: the constants the flow passed,
with every :class:`~flowkit.Ref` replaced by a :class:`Slot` pointing
into the node's list of upstream values. A ref nested inside a list, tuple or
dict is wrapped once in :class:`Nested`, so at run time only the arguments that
hold refs are walked. Example: ``train(df, params={"lr": lr_ref}, seed=0)``
whose upstream nodes are ``[load, tune]`` is stored as::

    args   = (Slot(0, ()),)
    kwargs = {"params": Nested({"lr": Slot(1, ())}), "seed": 0}

and :func:`execute` calls ``train(load_value, params={"lr": tune_value}, seed=0)``.
A template's token (``__dask_tokenize__``) covers the slots, not the values
behind them: a node's key adds its upstream keys in slot order (:mod:`flowkit.cache`).

The classes pickle as their constructor arguments and this module imports
nothing heavy: templates cross to Dask workers with every node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flowkit.files import File
from flowkit.secrets import Secret
from flowkit.hashing import canonical
from flowkit.ml.model import Model

__all__ = ["Item", "Nested", "Slot", "execute", "fill", "path_token", "resolve_path", "slots_in"]


class Slot:
    """The value of upstream number ``index``, indexed by ``path``."""

    __slots__ = ("index", "path")

    def __init__(self, index: int, path: tuple[Any, ...] = ()) -> None:
        self.index = index
        self.path = path

    def __repr__(self) -> str:
        return f"Slot({self.index}, {self.path!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Slot, (self.index, self.path))

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("slot", self.index, path_token(self.path))


class Nested:
    """A list, tuple, dict or set constant that holds slots somewhere inside."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Nested({self.value!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Nested, (self.value,))

    def __flowkit_token__(self, inputs: Any) -> Nested:
        return Nested(canonical(self.value, inputs))  # run-time inputs inside resolved

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        from dask.base import normalize_token

        return ("nested", normalize_token(canonical(self.value)))


class Item:
    """Path element: the k-th element of any iterable (used by dynamic maps)."""

    __slots__ = ("k",)

    def __init__(self, k: int) -> None:
        self.k = k

    def __repr__(self) -> str:
        return f"Item({self.k})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Item, (self.k,))


def slots_in(template: Any) -> set[int]:
    """The upstream indices an argument template takes values from (through any nesting)."""
    found: set[int] = set()
    stack = [template]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is Slot:
            found.add(item.index)
        elif kind is Nested:
            stack.append(item.value)
        elif kind is dict:
            stack.extend(item.values())
        elif kind in (list, tuple, set, frozenset):
            stack.extend(item)
    return found


def path_token(path: tuple[Any, ...]) -> str:
    """The token of an index path (``ref[0]["k"]``, or a dynamic map's item)."""
    return repr(tuple(("item", k.k) if type(k) is Item else k for k in path))


def resolve_path(value: Any, path: tuple[Any, ...]) -> Any:
    """Index ``value`` by each element of ``path`` in turn."""
    for key in path:
        if type(key) is Item:
            value = value[key.k] if isinstance(value, (list, tuple)) else list(value)[key.k]
        else:
            value = value[key]
    return value


def _fill_one(template: Any, values: Sequence[Any]) -> Any:
    kind = type(template)
    if kind is Slot:
        value = values[template.index]
        return resolve_path(value, template.path) if template.path else value
    if kind is Nested:
        return _fill_container(template.value, values)
    return template


def _fill_container(template: Any, values: Sequence[Any]) -> Any:
    kind = type(template)
    if kind is Slot or kind is Nested:
        return _fill_one(template, values)
    if kind is list:
        return [_fill_container(v, values) for v in template]
    if kind is tuple:
        return tuple(_fill_container(v, values) for v in template)
    if kind is dict:
        return {k: _fill_container(v, values) for k, v in template.items()}
    if kind is set or kind is frozenset:
        return kind(_fill_container(v, values) for v in template)
    if kind is File:
        return template.path
    if kind is Secret:
        return template.reveal()  # tasks call APIs with the plain value
    if kind is Model:
        return template.value()  # the version its key was computed with
    return template


def fill(template: Any, values: Sequence[Any]) -> Any:
    """Replace the slots in an output template (any nesting) with values."""
    return _fill_container(template, values)


def execute(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None, *values: Any) -> Any:
    """Call ``fn`` with its argument template filled from the upstream ``values``."""
    if args:
        args = tuple([_fill_one(a, values) for a in args])
    if kwargs:
        kwargs = {k: _fill_one(v, values) for k, v in kwargs.items()}
        return fn(*args, **kwargs)
    return fn(*args)
