"""Tracing: running a flow body once with placeholders to record its task calls.

While a flow body runs under :func:`trace_flow`, the current :class:`Trace`
lives in a ``ContextVar``; a task call then records a :class:`~flowkit.graph.Node`
and returns a :class:`Ref` instead of running. Refs can be passed to other
tasks (directly or inside lists, tuples, dicts and sets), indexed
(``ref[0]``, ``ref["k"]``), unpacked when the task has ``nout``, and returned
from the flow. Anything else (``if ref:``, ``ref + 1``, ``len(ref)``,
``str(ref)``, ``ref.attr``...) raises :class:`~flowkit.errors.RefUsageError`.
"""

from __future__ import annotations

import contextvars
import gc
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flowkit._template import Nested, Slot
from flowkit.errors import CacheKeyError, ParameterError, RefUsageError
from flowkit.files import File
from flowkit.secrets import Secret
from flowkit.ml.model import Model
from flowkit.graph import FlowGraph, Node

if TYPE_CHECKING:
    from flowkit.task import Task

__all__ = ["Ref", "Trace", "current_trace", "trace_flow"]

_CURRENT: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("flowkit_trace", default=None)


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def plain_defaults(task: Task[..., Any]) -> tuple[tuple[int, str, Any], ...]:
    """The defaults of ``task`` that are plain values (numbers, strings, ``None``...), read now.

    Each comes with its parameter's position (-1 for keyword-only). Empty for a
    function behind a wrapper (``__wrapped__``), which may care whether an
    argument was passed, and for callables that are not plain functions.
    """
    fn = task.fn
    if not inspect.isfunction(fn) or hasattr(fn, "__wrapped__"):
        return ()
    params = inspect.signature(fn).parameters.values()  # today's defaults, even if patched since
    return tuple(
        (task.positional_names.index(p.name) if p.kind is p.POSITIONAL_OR_KEYWORD else -1, p.name, p.default)
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and type(p.default) in _PLAIN)


def canonical_call(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   defaults: tuple[tuple[int, str, Any], ...] = ()) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One spelling of a call, for its cache key and lineage (the task is called as written).

    A parameter left out whose default is in ``defaults`` (:func:`plain_defaults`)
    counts as passed its default. Keyword arguments that continue the positional
    ones count as positional; the other keywords that name parameters come next,
    sorted by name; those that ``**kwargs`` receives keep their order (the task
    can see it). So with ``def f(a, b=2)``, ``f(1)``, ``f(1, b=2)``,
    ``f(a=1, b=2)``, ``f(b=2, a=1)`` and ``f(1, 2)`` are one call with one key.
    """
    if defaults:
        given = len(args)
        missing = [(name, value) for position, name, value in defaults
                   if (position < 0 or position >= given) and name not in kwargs]
        if missing:
            kwargs = {**kwargs, **dict(missing)}
    if not kwargs:
        return args, kwargs
    names = task.positional_names
    i = len(args)
    if i < len(names) and names[i] in kwargs:
        moved = list(args)
        kwargs = dict(kwargs)
        while i < len(names) and names[i] in kwargs:
            moved.append(kwargs.pop(names[i]))  # type: ignore[arg-type]
            i += 1
        args = tuple(moved)
    if len(kwargs) > 1:
        named = task.keyword_names
        kwargs = {**{k: kwargs[k] for k in sorted(k for k in kwargs if k in named)},
                  **{k: v for k, v in kwargs.items() if k not in named}}
    return args, kwargs


def current_trace() -> Trace | None:
    """The trace being recorded in this context, or ``None`` outside a flow."""
    return _CURRENT.get()


class Ref:
    """A placeholder for the value a task call will produce when the flow runs.

    Pass it to other tasks, index it (``ref[0]``, ``ref["key"]``), unpack it
    when the task declares ``nout``, or return it from the flow.
    """

    __slots__ = ("_trace", "_node", "_path", "_task", "_items")

    def __init__(
        self,
        trace: Trace,
        node: str,
        task: Task[..., Any],
        path: tuple[Any, ...] = (),
        items: tuple[Ref, ...] | None = None,
    ) -> None:
        self._trace = trace
        self._node = node
        self._task = task
        self._path = path
        self._items = items

    @property
    def node(self) -> str:
        """The id of the node that produces this value."""
        return self._node

    @property
    def path(self) -> tuple[Any, ...]:
        """The index path applied to the node's value (``()`` for the value itself)."""
        return self._path

    def __repr__(self) -> str:
        where = "".join(f"[{k!r}]" for k in self._path)
        return f"<Ref {self._node}{where}>"

    def __getitem__(self, key: Any) -> Ref:
        if self._items is not None and type(key) is int and -len(self._items) <= key < len(self._items):
            return self._items[key]
        return Ref(self._trace, self._node, self._task, self._path + (key,))

    def __iter__(self) -> Iterator[Ref]:
        nout = self._task.options.nout
        if nout is None or self._path:
            raise self._misuse("iterated over (`for x in ref` or `a, b = ref`)",
                               "or declare `@fk.task(nout=N)` to unpack a task's N results")
        return iter([Ref(self._trace, self._node, self._task, (i,)) for i in range(nout)])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._misuse(f"used for attribute access (`ref.{name}`)")

    def _misuse(self, what: str, extra: str = "") -> RefUsageError:
        task = self._task.name
        hint = f"; {extra}" if extra else ""
        return RefUsageError(
            f"the result of task {task!r} (node {self._node!r}) was {what} inside the flow body, "
            f"but while a flow is traced it is only a placeholder for a value that exists when the flow "
            f"runs. Pass it to a task instead, e.g. `@fk.task def use(x): ...` then `use(ref)`{hint}."
        )

    __hash__ = object.__hash__


def _make_misuse(what: str) -> Callable[..., Any]:
    def misuse(self: Ref, *args: Any) -> Any:
        raise self._misuse(what)

    return misuse


_MISUSES = {
    "__bool__": "used as a truth value (`if ref:`, `and`, `or`, `not`)",
    "__len__": "passed to `len()`",
    "__contains__": "used with `in`",
    "__str__": "converted to `str`",
    "__format__": "formatted (an f-string or `format()`)",
    "__int__": "converted to `int`",
    "__float__": "converted to `float`",
    "__complex__": "converted to `complex`",
    "__index__": "used as an index",
    "__round__": "rounded",
    "__call__": "called",
    "__setitem__": "assigned to (`ref[k] = v`)",
    "__delitem__": "deleted from (`del ref[k]`)",
    "__neg__": "used in arithmetic (`-ref`)",
    "__pos__": "used in arithmetic (`+ref`)",
    "__abs__": "passed to `abs()`",
    "__invert__": "used in arithmetic (`~ref`)",
}
for _op, _sym in [
    ("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="),
]:
    _MISUSES[f"__{_op}__"] = f"compared (`ref {_sym} ...`)"
for _op, _sym in [
    ("add", "+"), ("sub", "-"), ("mul", "*"), ("truediv", "/"), ("floordiv", "//"), ("mod", "%"),
    ("pow", "**"), ("matmul", "@"), ("and", "&"), ("or", "|"), ("xor", "^"), ("lshift", "<<"),
    ("rshift", ">>"), ("divmod", "divmod"),
]:
    _MISUSES[f"__{_op}__"] = f"used in arithmetic (`ref {_sym} ...`)"
    _MISUSES[f"__r{_op}__"] = f"used in arithmetic (`... {_sym} ref`)"
    _MISUSES[f"__i{_op}__"] = f"used in arithmetic (`ref {_sym}= ...`)"
for _name, _what in _MISUSES.items():
    setattr(Ref, _name, _make_misuse(_what))
del _name, _what, _op, _sym


class Trace:
    """The graph being recorded while one flow body runs."""

    __slots__ = ("flow", "nodes", "counts", "prefix", "_bound", "_plain", "_filled")

    def __init__(self, flow: str) -> None:
        self.flow = flow
        self.nodes: dict[str, Node] = {}
        self.counts: dict[str, int] = {}
        self.prefix = ""
        # Whether arguments bind depends only on how many are positional and which are named.
        self._bound: set[tuple[int, int, tuple[str, ...]]] = set()
        # Per task (kept alive by the nodes, so never confused with another): its plain defaults,
        # and for a call with n positional arguments only, the rest of its canonical spelling.
        self._plain: dict[Task[..., Any], tuple[tuple[int, str, Any], ...]] = {}
        self._filled: dict[tuple[Task[..., Any], int], tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def new_id(self, name: str) -> str:
        """The next stable node id for a call of ``name`` under the current prefix."""
        base = self.prefix + name
        n = self.counts.get(base, 0) + 1
        self.counts[base] = n
        return base if n == 1 else f"{base}#{n}"

    def lift(self, value: Any, deps: dict[str, int]) -> Any:
        """Turn refs in ``value`` into slots (adding their nodes to ``deps``)."""
        kind = type(value)
        if kind is Ref:
            if value._trace is not self:
                raise RefUsageError(
                    f"the result of task {value._task.name!r} (node {value._node!r}) belongs to another "
                    f"trace than flow {self.flow!r}: a ref can only be used inside the flow body that made it."
                )
            index = deps.get(value._node)
            if index is None:
                index = deps[value._node] = len(deps)
            return Slot(index, value._path)
        if kind is list or kind is tuple or kind is dict or kind is set or kind is frozenset:
            lifted, found = self._lift_container(value, deps)
            return Nested(lifted) if found else value
        if kind is File or kind is Secret:
            return Nested(value)  # the task receives the path, the secret's value
        if kind is Model:
            return Nested(value.for_run())  # the task receives the model; this call's copy keeps what it resolved to
        return value

    def _lift_container(self, value: Any, deps: dict[str, int]) -> tuple[Any, bool]:
        kind = type(value)
        found = False
        if kind is dict:
            out: Any = {}
            for k, v in value.items():
                out[k], f = self._lift_inner(v, deps)
                found = found or f
            return out, found
        items = []
        for v in value:
            lv, f = self._lift_inner(v, deps)
            items.append(lv)
            found = found or f
        return (items if kind is list else kind(items)), found

    def _lift_inner(self, value: Any, deps: dict[str, int]) -> tuple[Any, bool]:
        kind = type(value)
        if kind is Ref:
            return self.lift(value, deps), True
        if kind is File or kind is Secret:
            return value, True
        if kind is Model:
            return value.for_run(), True
        if kind is list or kind is tuple or kind is dict or kind is set or kind is frozenset:
            return self._lift_container(value, deps)
        return value, False

    def _bind_check(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        shape = (id(task), len(args), tuple(kwargs) if kwargs else ())
        if shape in self._bound:
            return
        try:
            task.signature.bind(*args, **kwargs)
            self._bound.add(shape)
        except TypeError as exc:
            raise ParameterError(
                f"task {task.name!r} was called with arguments that do not match its signature "
                f"{task.name}{task.signature}: {exc}"
            ) from None

    def _add(self, node_id: str, task: Task[..., Any], kind: str, args: tuple[Any, ...],
             kwargs: dict[str, Any] | None, deps: dict[str, int],
             source_path: tuple[Any, ...] | None = None,
             canon: tuple[tuple[Any, ...], dict[str, Any] | None] | None = None) -> Node:
        node = Node(node_id, task, kind, args, kwargs or None, tuple(deps), source_path, canon)
        self.nodes[node_id] = node
        return node

    def _defaults(self, task: Task[..., Any]) -> tuple[tuple[int, str, Any], ...]:
        found = self._plain.get(task)
        if found is None:
            found = self._plain[task] = plain_defaults(task)
        return found

    def _lift_call(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   deps: dict[str, int], first: int = 0) -> tuple[tuple[Any, ...], dict[str, Any] | None,
                                                                 tuple[tuple[Any, ...], dict[str, Any] | None] | None]:
        """Lift a call as written, and its canonical spelling when that differs (refs share slots).

        ``first`` arguments at the front are already lifted (a map's item).
        """
        defaults = self._defaults(task)
        canon = None
        if kwargs or defaults:
            if kwargs:
                key_args, key_kwargs = canonical_call(task, args, kwargs, defaults)
            else:  # only positional arguments: the spelling depends on how many (memoized)
                tail = self._filled.get((task, len(args)))
                if tail is None:
                    full_args, full_kwargs = canonical_call(task, args, kwargs, defaults)
                    tail = self._filled[(task, len(args))] = (full_args[len(args):], full_kwargs)
                key_args, key_kwargs = args + tail[0], tail[1]
        try:
            if (kwargs or defaults) and (len(key_args) != len(args) or list(key_kwargs) != list(kwargs)):
                canon = (args[:first] + tuple([self.lift(a, deps) for a in key_args[first:]]),
                         {k: self.lift(v, deps) for k, v in key_kwargs.items()} or None)
            lifted_args = args[:first] + tuple([self.lift(a, deps) for a in args[first:]]) if args else ()
            lifted_kwargs = {k: self.lift(v, deps) for k, v in kwargs.items()} if kwargs else None
        except RecursionError:  # a value that holds itself, or one nested past the interpreter's limit
            raise _unliftable(task, args, kwargs) from None
        return lifted_args, lifted_kwargs, canon

    def call(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Ref:
        """Record one call of ``task`` and return the ref to its value."""
        self._bind_check(task, args, kwargs)
        deps: dict[str, int] = {}
        if kwargs or self._defaults(task):
            lifted_args, lifted_kwargs, canon = self._lift_call(task, args, kwargs, deps)
        else:  # the common call, kept fast: positional arguments only, nothing to spell differently
            try:
                lifted_args, lifted_kwargs, canon = tuple([self.lift(a, deps) for a in args]) if args else (), None, None
            except RecursionError:
                raise _unliftable(task, args, kwargs) from None
        node_id = self.new_id(task.name)
        self._add(node_id, task, "task", lifted_args, lifted_kwargs, deps, canon=canon)
        return Ref(self, node_id, task)

    def map(self, task: Task[..., Any], iterable: Iterable[Any] | Ref, fixed: dict[str, Any]) -> Ref:
        """Record ``task`` mapped over ``iterable``; return a ref to the list of results."""
        if type(iterable) is Ref and iterable._items is None:
            return self._dynamic_map(task, iterable, fixed)
        items = list(iterable._items if type(iterable) is Ref else iterable)  # type: ignore[union-attr,arg-type]
        if items:
            self._bind_check(task, (items[0],), fixed)
        else:
            self._bind_check_partial(task, fixed)
        map_id = self.new_id(task.name)
        children = []
        for k, item in enumerate(items):  # item k is the call task(item, **fixed)
            deps: dict[str, int] = {}
            lifted_args, lifted_fixed, canon = self._lift_call(task, (item,), fixed, deps)
            child_id = f"{map_id}[{k}]"
            self._add(child_id, task, "task", lifted_args, lifted_fixed, deps, canon=canon)
            children.append(Ref(self, child_id, task))
        self._add(map_id, task, "map", tuple(Slot(i) for i in range(len(children))), None,
                  {c._node: i for i, c in enumerate(children)})
        return Ref(self, map_id, task, items=tuple(children))

    def _bind_check_partial(self, task: Task[..., Any], fixed: dict[str, Any]) -> None:
        try:
            task.signature.bind_partial(**fixed)
        except TypeError as exc:
            raise ParameterError(f"task {task.name!r} cannot be mapped with {sorted(fixed)}: {exc}") from None

    def _dynamic_map(self, task: Task[..., Any], source: Ref, fixed: dict[str, Any]) -> Ref:
        self._bind_check(task, (source,), fixed)
        deps: dict[str, int] = {}
        item = self.lift(source, deps)  # the iterable is always slot 0: it stands for each item here
        _, lifted_fixed, canon = self._lift_call(task, (item,), fixed, deps, first=1)
        map_id = self.new_id(task.name)
        # Items are spelled from this template (see `expand_map`): args after the item, kwargs.
        self._add(map_id, task, "dynamic_map", (), lifted_fixed, deps, source_path=source._path,
                  canon=(canon[0][1:], canon[1]) if canon is not None else None)
        return Ref(self, map_id, task)

    def graph(self, params: dict[str, Any], output: Any) -> FlowGraph:
        """Freeze what was recorded into a :class:`FlowGraph`."""
        out_deps: dict[str, int] = {}
        output_template = self.lift(output, out_deps)
        return FlowGraph(self.flow, params, self.nodes, output_template, tuple(out_deps))


def trace_flow(name: str, fn: Callable[..., Any], params: dict[str, Any]) -> FlowGraph:
    """Run the flow body ``fn(**params)`` once under a new trace and return its graph."""
    trace = Trace(name)
    token = _CURRENT.set(trace)
    # Everything a trace allocates stays reachable (nodes, templates, refs the body holds), so the
    # cyclic collector's full passes over the whole heap find nothing here; for a 100,000-call body
    # they were a third of the trace. Reference counting still frees what the body drops.
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        output = fn(**params)
    finally:
        _CURRENT.reset(token)
        if collecting:
            gc.enable()
    return trace.graph(params, output)


def inline_subflow(trace: Trace, name: str, fn: Callable[..., Any], params: dict[str, Any]) -> Any:
    """Trace a flow called inside another flow's body, its node ids under ``name/``."""
    outer = trace.prefix
    trace.prefix = trace.new_id(name) + "/"
    try:
        return fn(**params)
    finally:
        trace.prefix = outer


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _cycle(value: Any) -> str | None:
    """Where a container holds itself: ``"[1]"``, ``"['a'][0]"``... (``None`` if it never does)."""
    stack: list[tuple[Any, str, frozenset[int]]] = [(value, "", frozenset())]
    while stack:
        item, path, above = stack.pop()
        if type(item) not in _CONTAINERS:
            continue
        if id(item) in above:
            return path
        inner = above | {id(item)}
        pairs = item.items() if type(item) is dict else enumerate(item) if type(item) in (list, tuple) else (
            (None, v) for v in item)
        for k, v in pairs:
            stack.append((v, path + (f"[{k!r}]" if k is not None else "{...}"), inner))
    return None


def _unliftable(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> CacheKeyError:
    """The error for a call whose arguments nest too deeply to trace: one that holds itself, named."""
    try:
        bound = task.signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = {f"#{i}": a for i, a in enumerate(args)} | kwargs
    for name, value in bound.items():
        where = _cycle(value)
        if where is not None:
            return CacheKeyError(
                f"task {task.name!r}, argument {name!r}: the {type(value).__name__} contains itself (at "
                f"{name}{where}), so it has no cache key and cannot be traced; pass a value without the cycle "
                f"(a copy, or the data it stands for)")
    names = ", ".join(repr(n) for n in bound) or "(none)"
    return CacheKeyError(f"task {task.name!r}: an argument is nested too deeply to trace (arguments {names}); "
                         f"pass a flatter value, e.g. a DataFrame or an array")
