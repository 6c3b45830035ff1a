"""Cache keys: Merkle-style identities of nodes, known before anything runs.

``key(node) = digest(task fingerprint, cache_version, token of the argument
template, keys of the upstream nodes in slot order)``. A constant's token is
``dask.base.tokenize(value)``; an ``fk.File``'s token is the digest of its
bytes; a ref contributes its slot (index and path) plus its upstream's key.
So a whole graph's keys follow from code and parameters alone, and a change
anywhere changes exactly the keys downstream of it.

A ``cache=False`` task's key also covers the run's *salt* (its own run id, or
the run it resumes), so its result, and everything downstream, is never
served to another run.

**Early cutoff.** Beside its key, a cache entry carries a *content key*: the
same digest with the upstream keys replaced by the digests of the upstream
values (:meth:`KeyMaker.content`), and for an item of a map over a run-time
list, the token of its element (:meth:`KeyMaker.item_content`). When an
upstream task reruns and reproduces bytes seen before, its dependents miss by
key but hit by content, and nothing below them reruns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flowkit._template import Slot, path_token
from flowkit.errors import CacheKeyError
from flowkit.graph import Node
from xxhash import xxh3_128_hexdigest

from flowkit.hashing import fingerprint, token
from flowkit.task import Task

if TYPE_CHECKING:
    from flowkit.store import Store

__all__ = ["KeyMaker"]


_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})


def _scalar_token(value: Any) -> str:
    if type(value) is Slot:
        return f"${value.index}{path_token(value.path) if value.path else ''}"
    return repr(value)


def value_token(value: Any, inputs: Any = None) -> str | None:
    """A constant's token for lineage records (cheap for scalars); ``None`` if it has none.

    ``inputs`` (the run's store) resolves run-time inputs such as ``fk.File``.
    """
    if type(value) in _SCALARS:
        text = repr(value)
        if len(text) > 200:  # a long string or bytes: recorded by digest, not copied into every record
            return f"{type(value).__name__}:xxh3:{xxh3_128_hexdigest(text.encode())}"
        return f"{type(value).__name__}:{text}"
    try:
        return token(value, inputs=inputs)
    except CacheKeyError:
        return None


class KeyMaker:
    """Computes node keys for one run, memoizing task fingerprints.

    ``store`` resolves the run-time inputs among the arguments (``fk.File`` by its
    size+mtime shortcut table, ``fk.Model`` by the registry); it is passed to every
    token explicitly.
    """

    def __init__(self, salt: str, store: Store | None = None) -> None:
        self.salt = salt
        self.store = store
        self._fingerprints: dict[int, str] = {}
        self._heads: dict[str, str] = {}  # node -> what its key covers besides its upstream, joined
        self._task_parts: dict[tuple[int, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}  # see parts()

    def fingerprint(self, task: Task[..., Any]) -> str:
        fp = self._fingerprints.get(id(task))
        if fp is None:
            fp = self._fingerprints[id(task)] = fingerprint(task.fn)
        return fp

    def args_token(self, node: Node) -> str:
        """The token of a node's argument template (refs as slots)."""
        args, kwargs = node.canon if node.canon is not None else (node.args, node.kwargs)
        # Fast path for the common case: slots and plain scalars, whose repr is unambiguous.
        said = []
        for a in args:
            if type(a) is not Slot and type(a) not in _SCALARS:
                break
            said.append(_scalar_token(a))
        else:
            if not kwargs:
                return ",".join(said)
            if all(type(v) is Slot or type(v) in _SCALARS for v in kwargs.values()):
                return ",".join(said) + ";" + ",".join(f"{k!r}={_scalar_token(v)}" for k, v in kwargs.items())
        try:
            return token((args, kwargs), inputs=self.store)
        except CacheKeyError:
            self._blame(node)
            raise

    def _blame(self, node: Node) -> None:
        """Re-raise the token error for the one argument at fault, by its parameter name."""
        names = list(node.task.signature.parameters)
        args, kwargs = node.spelling()
        first = 1 if node.kind == "dynamic_map" else 0  # a map's item is argument 0; its args come next
        for i, value in enumerate(args, first):
            name = names[i] if i < len(names) else f"#{i}"
            token(value, task=node.task.name, argument=name, inputs=self.store)
        for name, value in (kwargs or {}).items():
            token(value, task=node.task.name, argument=name, inputs=self.store)

    def parts(self, node: Node) -> list[str]:
        """What a node's key covers besides its upstream: its code, options and arguments."""
        if node.kind == "map":
            return ["map"]
        task = node.task
        opts = task.options
        if opts.cache:
            known = self._task_parts.get((id(task), node.kind))
            if known is None:  # what depends on the task alone, once per task
                # A value is cached only as checked: other checks, another key.
                checks = (token(opts.checks, task=task.name, argument="checks=", inputs=self.store),) \
                    if opts.checks else ()
                known = self._task_parts[(id(task), node.kind)] = (
                    (node.kind, self.fingerprint(task), repr(opts.cache_version)), checks)
            parts = [*known[0], self.args_token(node), *known[1]]
        else:  # unique to this run (or the run it resumes): never served elsewhere
            parts = [node.kind, f"nocache:{self.salt}:{node.id}"]
        if node.source_path:
            parts.append(path_token(node.source_path))
        return parts

    def key(self, node: Node, dep_keys: Iterable[str]) -> str:
        """The key of one node, given its upstream keys in slot order."""
        head = self._heads[node.id] = "\x00".join(self.parts(node))  # kept for its content key, if it runs
        tail = "\x00".join(dep_keys)
        return xxh3_128_hexdigest((head + "\x00" + tail if tail else head).encode())

    def content(self, node: Node, digests: Iterable[str]) -> str:
        """The content key of a node whose upstream values have these digests, in slot order."""
        head = self._heads.get(node.id)
        if head is None:
            head = "\x00".join(self.parts(node))
        return xxh3_128_hexdigest(("content\x00" + head + "\x00" + "\x00".join(digests)).encode())

    def item_content(self, mapped: Node, element: Any, others: Iterable[str] = ()) -> str | None:
        """The content key of an item of the map node ``mapped``: its call with this element, not its position.

        ``others`` are the digests of the map's other upstream values (keyword refs).
        ``None`` when the element has no token (then the item is found by its key only).
        """
        tok = value_token(element, self.store)
        if tok is None:
            return None
        return xxh3_128_hexdigest("\x00".join(["item", *self.parts(mapped), tok, *others]).encode())

    def keys(self, nodes: dict[str, Node], known: dict[str, str] | None = None) -> dict[str, str]:
        """Keys of ``nodes`` (in a topological order), extending ``known``."""
        keys = known if known is not None else {}
        for node_id, node in nodes.items():
            if node_id not in keys:
                keys[node_id] = self.key(node, [keys[d] for d in node.deps])
        return keys
