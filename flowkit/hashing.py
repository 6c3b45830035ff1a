"""Hashing: content digests, argument tokens, code fingerprints, file digests.

- :func:`digest` / :class:`Hasher`: xxh3-128 over bytes, hex (fast: several GB/s).
- :func:`token`: a deterministic token of a constant (``dask.base.tokenize``
  with ``ensure_deterministic``, frozensets sorted first: :func:`canonical`), or a
  :class:`~flowkit.errors.CacheKeyError` naming the task and the argument.
- :func:`fingerprint`: the identity of a task's code: its source without
  decorators (as an AST, so comments and formatting do not count) plus,
  transitively, the user-code functions, classes and simple constants it
  references by global name. Installed packages and the standard library are
  not included (their version is the environment's business).
- :func:`file_digest`: the digest of a file's bytes, for :class:`~flowkit.files.File`
  inputs (the class lives in :mod:`flowkit.files`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import os
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

import xxhash

from flowkit.errors import CacheKeyError, RegistryError

__all__ = ["Hasher", "canonical", "digest", "file_digest", "fingerprint", "short_repr", "token", "user_modules"]

Hasher = xxhash.xxh3_128


def digest(data: bytes | memoryview) -> str:
    """The hex xxh3-128 digest of ``data``."""
    return xxhash.xxh3_128_hexdigest(data)


class _SortedFrozenset:
    """Stands in for a frozenset while it is tokenized: its elements sorted by ``str``.

    dask would pickle a frozenset, in hash order, which changes from one process
    to the next for strings. Registering a normalizer in dask's global registry
    would change the user's own ``dask.base.tokenize`` too, so flowkit swaps its
    frozensets for this stand-in instead (:func:`canonical`). It prints, hashes
    and compares as the frozenset, so sets and dicts around it sort as before.
    """

    __slots__ = ("original", "items")

    def __init__(self, original: frozenset[Any], items: tuple[Any, ...]) -> None:
        self.original = original
        self.items = items

    def __str__(self) -> str:
        return str(self.original)

    __repr__ = __str__

    def __hash__(self) -> int:
        return hash(self.original)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SortedFrozenset) and other.original == self.original

    def __dask_tokenize__(self) -> tuple[str, Any]:
        from dask.tokenize import _normalize_seq_func

        return "frozenset", _normalize_seq_func(self.items)


class _CanonicalDataclass:
    """Stands in for a dataclass instance holding a frozenset: tokenized as dask does one, fields canonical."""

    __slots__ = ("original", "fields")

    def __init__(self, original: Any, fields: list[tuple[str, Any]]) -> None:
        self.original = original
        self.fields = fields

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        from dask.base import normalize_token
        from dask.tokenize import normalize_object

        params = self.original.__dataclass_params__
        return (normalize_object(type(self.original)), [(a, getattr(params, a)) for a in params.__slots__],
                [(name, normalize_token(value)) for name, value in self.fields])


_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})


class Resolved:
    """What a run-time input resolved to: tokenized as ``token``, exactly."""

    __slots__ = ("token",)

    def __init__(self, token: Any) -> None:
        self.token = token

    def __dask_tokenize__(self) -> Any:
        return self.token


def canonical(value: Any, inputs: Any = None) -> Any:
    """``value`` with its frozensets swapped for sorted stand-ins and its run-time inputs resolved.

    A *run-time input* is an object whose type has ``__flowkit_token__(inputs)``
    (``fk.File``, ``fk.Model``): it is replaced by what that method returns, given
    ``inputs`` (the run's store, which knows file digests and the model registry;
    ``None`` outside a run). Containers and dataclass fields are walked. Returns
    ``value`` itself when there is nothing to replace, so the common case copies nothing.
    """
    return _canonical(value, set(), inputs)


def _canonical(value: Any, active: set[int], inputs: Any = None) -> Any:
    kind = type(value)
    if kind in _ATOMS:
        return value
    resolve = getattr(kind, "__flowkit_token__", None)
    if resolve is not None:
        return resolve(value, inputs)
    if kind is dict:
        if _ATOMS.issuperset(map(type, value)) and _ATOMS.issuperset(map(type, value.values())):
            return value  # the common case, checked at C speed
    elif kind is list or kind is tuple or kind is set:
        if _ATOMS.issuperset(map(type, value)):
            return value
    elif kind is not frozenset and not (dataclasses.is_dataclass(value) and not isinstance(value, type)
                                        and not hasattr(value, "__dask_tokenize__")):
        return value
    if id(value) in active:  # a container that holds itself: dask marks the cycle
        return value
    active.add(id(value))
    try:
        if kind is frozenset:
            return _SortedFrozenset(value, tuple(_canonical(v, active, inputs) for v in sorted(value, key=str)))
        if kind is dict:
            pairs = [(_canonical(k, active, inputs), _canonical(v, active, inputs)) for k, v in value.items()]
            same = all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items()))
            return value if same else dict(pairs)
        if kind is list or kind is tuple or kind is set:
            items = [_canonical(v, active, inputs) for v in value]
            return value if all(a is b for a, b in zip(items, value)) else kind(items)
        fields = [(f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)]
        walked = [(name, _canonical(v, active, inputs)) for name, v in fields]
        same = all(a is b for (_, a), (_, b) in zip(walked, fields))
        return value if same else _CanonicalDataclass(value, walked)
    finally:
        active.discard(id(value))


def token(value: Any, *, task: str = "?", argument: str = "?", inputs: Any = None) -> str:
    """A deterministic token of ``value``; a clear error when there is none.

    ``inputs`` resolves run-time inputs (see :func:`canonical`).
    """
    from dask.base import tokenize

    try:
        return tokenize(canonical(value, inputs), ensure_deterministic=True)
    except FileNotFoundError as exc:
        raise CacheKeyError(f"task {task!r}, argument {argument!r}: input file {exc.filename} does not exist") from exc
    except RegistryError:  # an fk.Model input that resolves to nothing: its own message says what is missing
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means: no stable identity
        raise CacheKeyError(
            f"task {task!r}, argument {argument!r}: cannot compute a deterministic cache key for "
            f"{short_repr(value, 80)} ({type(exc).__name__}: {exc}). Pass a value that is hashable by content "
            f"(numbers, strings, containers, DataFrames, arrays, dataclasses, picklable objects), give its type "
            f"a __dask_tokenize__() method, or mark the task @fk.task(cache=False)."
        ) from exc


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)``, shortened to ``limit`` characters (and never raising)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- code fingerprints -------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(os.path.dirname(os.__file__))
    return tuple(os.path.realpath(r) + os.sep for r in roots)


@functools.lru_cache(maxsize=4096)
def _is_user_module(name: str) -> bool:
    if name == "flowkit" or name.startswith("flowkit."):
        return False
    module = sys.modules.get(name)
    if module is None:
        return name == "__main__"
    path = getattr(module, "__file__", None)
    if path is None:
        return name == "__main__"  # builtins and namespace packages are not user code
    real = os.path.realpath(path)
    if "site-packages" in real or "dist-packages" in real:
        return False
    return not real.startswith(_library_roots())


def _is_user_object(obj: Any) -> bool:
    if not isinstance(obj, (types.FunctionType, type)):
        return False
    return _is_user_module(getattr(obj, "__module__", None) or "__main__")


_SIMPLE = (int, float, complex, str, bytes, bool, type(None))
_CONTAINERS = (list, tuple, dict, set, frozenset)


def said_by_bytes(value: Any, budget: int = 100_000) -> bool:
    """Whether a value's stored bytes say everything about it, so equal bytes mean an equal value.

    Not so for an instance of a class of *your* code (pickle names the class; editing its
    methods changes no byte), for an ``fk.File`` (the bytes are its path, not the file's),
    or for a container holding either. Early cutoff compares inputs by their bytes only
    when this holds. Objects of installed libraries count by their bytes, as in cache keys;
    containers larger than ``budget`` items are not walked and do not count.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SIMPLE:
            continue
        if kind in _CONTAINERS:
            budget -= len(item)
            if budget < 0:
                return False
            stack.extend(item.items() if kind is dict else item)
            continue
        module = getattr(kind, "__module__", None) or "__main__"
        if module == "flowkit.files" or _is_user_module(module):
            return False
    return True


def _is_simple_constant(value: Any, depth: int = 0) -> bool:
    """Immutable literals (numbers, strings, tuples of them...): configuration, not state.

    Mutable globals (lists, dicts, objects) are left out on purpose: they are
    often state that changes while a program runs, which must not change code identity.
    """
    if isinstance(value, _SIMPLE):
        return True
    if depth < 3 and type(value) in (tuple, frozenset) and len(value) <= 256:
        return all(_is_simple_constant(v, depth + 1) for v in value)
    return False


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _code_shape(code: types.CodeType) -> str:
    """Source-free identity of a code object (when no source is available)."""
    parts = []
    for c in _code_objects(code):
        consts = [repr(sorted(k, key=repr)) if isinstance(k, frozenset) else repr(k)
                  for k in c.co_consts if not isinstance(k, types.CodeType)]
        parts.append(f"{c.co_name}|{c.co_code.hex()}|{consts}|{c.co_names}|{c.co_varnames}")
    return "\n".join(parts)


def _source_identity(obj: Any) -> str:
    """The AST of ``obj``'s source without decorators, or its bytecode shape."""
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        code = getattr(obj, "__code__", None)
        return _code_shape(code) if code is not None else f"<{getattr(obj, '__qualname__', type(obj).__name__)}>"
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = []
            break
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _assigned_globals(code: types.CodeType) -> set[str]:
    """Global names the code assigns to (``global x; x = ...``)."""
    import dis

    return {ins.argval for c in _code_objects(code) for ins in dis.get_instructions(c)
            if ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL")}


def _referenced(obj: Any) -> list[tuple[str, Any]]:
    """The (name, value) pairs of globals, closure cells and base classes that ``obj``'s code uses."""
    functions: list[types.FunctionType] = []
    found_bases: list[type] = []
    if isinstance(obj, types.FunctionType):
        functions.append(obj)
    elif isinstance(obj, type):
        for base in obj.__mro__[1:]:  # an edit to a user-code base class changes the subclass's behaviour
            if _is_user_object(base):
                found_bases.append(base)
        for attr in vars(obj).values():
            attr = getattr(attr, "__func__", attr)
            if isinstance(attr, types.FunctionType):
                functions.append(attr)
            elif isinstance(attr, property):
                functions.extend(f for f in (attr.fget, attr.fset, attr.fdel) if isinstance(f, types.FunctionType))
    found: dict[str, Any] = {f"<base>{b.__module__}.{b.__qualname__}": b for b in found_bases}
    for fn in functions:
        names: set[str] = set()
        for code in _code_objects(fn.__code__):
            names.update(code.co_names)
        names -= _assigned_globals(fn.__code__)  # `global counter; counter += 1` is state, not code
        fn_globals = fn.__globals__
        modules = []
        for name in names:
            if name in fn_globals:
                value = fn_globals[name]
                found[name] = value
                if isinstance(value, types.ModuleType) and _is_user_module(value.__name__):
                    modules.append(value)
        for module in modules:  # helpers.clean(x): co_names holds "helpers" and "clean"
            for name in names:
                value = getattr(module, name, None)
                if _is_user_object(value):
                    found[f"{module.__name__}.{name}"] = value
        if fn.__closure__:
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
                try:
                    found[f"<closure>{name}"] = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
    return sorted(found.items(), key=lambda kv: kv[0])


def _unwrap(obj: Any) -> Any:
    fn = getattr(obj, "fn", None)  # a flowkit Task or Flow
    if fn is not None and type(obj).__module__ in ("flowkit.task", "flowkit.flow"):
        return fn
    return obj


def _feed(hasher: Any, obj: Any, seen: set[int]) -> None:
    obj = _unwrap(obj)
    if id(obj) in seen:
        hasher.update(b"<seen>")
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        _feed(hasher, obj.func, seen)
        hasher.update(token((obj.args, obj.keywords)).encode())
        return
    if not isinstance(obj, (types.FunctionType, type)):
        # A callable object: its class's code plus its state.
        _feed(hasher, type(obj), seen)
        hasher.update(token(obj).encode())
        return
    hasher.update(_source_identity(obj).encode())
    if getattr(obj, "__name__", "") == "<lambda>":  # its source line may hold other lambdas too
        hasher.update(_code_shape(obj.__code__).encode())
    for name, value in _referenced(obj):
        value = _unwrap(value)
        if _is_user_object(value):
            hasher.update(f"\x00{name}=code\x00".encode())
            _feed(hasher, value, seen)
        elif _is_simple_constant(value):
            hasher.update(f"\x00{name}={token(value)}\x00".encode())
        elif name.startswith("<closure>") and not isinstance(value, types.ModuleType):
            # A value baked in by a factory (`make(config)` returning a task) is part of what the
            # task computes, so its content counts. A resource with no content identity (a lock,
            # a connection, a client) counts by its type only.
            try:
                identity = token(value)
            except CacheKeyError:
                identity = f"<{type(value).__module__}.{type(value).__qualname__}>"
            hasher.update(f"\x00{name}={identity}\x00".encode())


def user_modules(fn: Callable[..., Any]) -> set[str]:
    """The user-code modules ``fn`` comes from or uses, transitively (for shipping code to workers)."""
    found: set[str] = set()
    todo, seen = [_unwrap(fn)], set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not _is_user_object(obj):
            continue
        seen.add(id(obj))
        found.add(obj.__module__)
        for _, value in _referenced(obj):
            value = _unwrap(value)
            if isinstance(value, types.ModuleType) and _is_user_module(value.__name__):
                found.add(value.__name__)
            else:
                todo.append(value)
    return found


def fingerprint(fn: Callable[..., Any]) -> str:
    """The identity of ``fn``'s code and of the user code it depends on (hex digest)."""
    hasher = Hasher()
    _feed(hasher, fn, set())
    return hasher.hexdigest()


# --- files ---------------------------------------------------------------------------------------

_CHUNK = 1 << 22


def file_digest(path: str | os.PathLike[str]) -> str:
    """The digest of a file's bytes, read in chunks."""
    hasher = Hasher()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
