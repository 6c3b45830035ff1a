"""The cache side of one run: which nodes are hits, when values go stale, early cutoff.

The engine (:mod:`flowkit.engine`) asks a :class:`CachePlan` three questions
and tells it one thing:

- :meth:`CachePlan.lookup`: which of these nodes are in the cache, by key (one
  query)? Refreshed nodes are not; an entry past its ``cache_ttl`` (its own or
  an input's) is not, and neither is anything downstream of it; nor is an
  entry whose value is an ``fk.File`` that no longer exists. A hit whose value
  must be loaded is first checked (:meth:`CachePlan.refusal`): its entry must be
  bound to the task run it names and, with signing on, signed with the store's
  key; if not, the engine recomputes it as it does a value that does not load.
- :meth:`CachePlan.cut_off`: a node is about to run because it missed by key;
  is it in the cache by the *content* of its inputs (early cutoff, see
  :mod:`flowkit.cache`)? Then it becomes a hit found by content, filed under
  its own key too.
- :meth:`CachePlan.item_contents`: a map over a run-time list expanded; which
  of its new items are in the cache by their element's content?
- :meth:`CachePlan.computed`: a node's value was computed (or a map collected);
  note its expiry and that it is *fresh*: only nodes downstream of a fresh one
  are looked up by content, since for the others the key said everything.

Everything it reads or writes goes through the store's interface; it changes
``state.hits`` and nothing else of the engine's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from flowkit._template import slots_in
from flowkit.cache import KeyMaker
from flowkit.clock import Clock
from flowkit.events import CacheAdopted, RunEvent
from flowkit.graph import Node
from flowkit.hashing import said_by_bytes
from flowkit.store.metadata import CacheHit

if TYPE_CHECKING:
    from flowkit.engine import RunState
    from flowkit.store import Store

__all__ = ["CachePlan", "RefusedEntry"]

log = logging.getLogger("flowkit")


class RefusedEntry(Exception):
    """A cache entry whose value is not loaded because it cannot be trusted (see :meth:`CachePlan.refusal`)."""


def _soonest(*times: float | None) -> float | None:
    """The earliest of the times given, ignoring ``None`` (never)."""
    return min((t for t in times if t is not None), default=None)


def _set(mapping: dict[str, float], key: str, value: float | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


class CachePlan:
    """What one run knows about the cache (see the module docstring)."""

    def __init__(self, state: RunState, store: Store | None, keymaker: KeyMaker | None, clock: Clock,
                 forced: Collection[str], emit: Callable[[RunEvent], None]) -> None:
        self.state = state
        self.store = store
        self.keymaker = keymaker
        self.clock = clock
        self.forced: Collection[str] = forced  # refreshed (or stale) nodes: never hits
        self.emit = emit
        self.expiry: dict[str, float] = {}  # node -> when its value goes stale (see `computed`)
        self.inherited: dict[str, float] = {}  # node -> the part of that its inputs decide
        self.cutoff = False  # content lookups happen only in reruns of a flow
        self.fresh: set[str] = set()  # nodes whose value was computed, or found by content, in this run
        self.contents: dict[str, str | None] = {}  # node -> its content key, once known
        self.tried: set[str] = set()  # nodes looked up by content already
        self.inline: dict[str, bytes] = {}  # prefetched bytes of small cached values
        self.uses: dict[str, int] = {}  # artifact id -> how many loads planned will take its prefetched bytes
        self.opaque: set[str] = set()  # nodes whose value's bytes do not say all of it (see `digest_of`)
        self.by_content: set[str] = set()  # nodes found by content in this run
        self.unbound: set[str] = set()  # entry keys refused: not bound to the task run they name
        self.checked: set[str] = set()  # entry keys whose binding was looked up

    # --- by key --------------------------------------------------------------------------------

    def lookup(self, nodes: dict[str, Node]) -> dict[str, CacheHit]:
        """Cache hits among task ``nodes`` (one query), honouring refresh and ``cache_ttl``.

        A hit whose ``cache_ttl`` has passed is recomputed, and so is everything downstream
        of it, whose keys do not change with the new value. So is a hit whose value is an
        ``fk.File`` that no longer exists: the file is the result, not the record of it.
        """
        if self.store is None:
            return {}
        keys = self.state.keys
        wanted: dict[str, list[str]] = {}  # identical calls share a key
        for node_id, node in nodes.items():
            if node.kind == "task" and node_id not in self.forced:
                wanted.setdefault(keys[node_id], []).append(node_id)
        found = self.store.db.cache_lookup(wanted)
        now = self.clock.time()
        hits: dict[str, CacheHit] = {}
        expired: list[str] = []
        for key, node_ids in wanted.items():
            row = found.get(key)
            if row is None:
                continue
            if row.file and not self.file_exists(row):
                expired.extend(node_ids)
                continue
            for node_id in node_ids:
                if (row.expires is None and nodes[node_id].task.options.cache_ttl is None) or \
                        self.fresh_hit(node_id, nodes[node_id], row, now):  # the common case first: no ttl
                    hits[node_id] = row
                else:
                    expired.append(node_id)
        if expired:
            stale = self.downstream(expired)
            self.forced = set(self.forced) | stale
            hits = {n: row for n, row in hits.items() if n not in stale}
        return {n: hits[n] for n in nodes if n in hits}  # in node order: records come out stably

    def prepare(self, flow: str, loads: Iterable[str]) -> None:
        """After planning: prefetch the small values to load (one query); enable cutoff in a rerun."""
        if self.store is None:
            return
        self.loading(loads)
        self.cutoff = self.keymaker is not None and self.store.db.has_other_runs(flow, self.state.run_id)

    def loading(self, loads: Iterable[str]) -> None:
        """These hits will be loaded: their small values and their entries' bindings, one query each."""
        loads = list(loads)
        self.prefetch(loads)
        hits = self.state.hits
        self.check([hits[n].key for n in loads])

    def check(self, entries: Iterable[str]) -> None:
        """Look up which of these entry keys are bound to their task run (one query), for :meth:`refusal`."""
        assert self.store is not None
        todo = [k for k in entries if k and k not in self.checked]
        if todo:
            self.unbound |= self.store.db.unbound_entries(todo)
            self.checked.update(todo)

    def refusal(self, hit: CacheHit) -> RefusedEntry | None:
        """Why the value of a hit about to be loaded must not be (``None``: it may), decided before a byte of
        it is read: its entry is not bound to the task run it names (a row re-pointed to another artifact),
        or, with signing on, the entry or its artifact is not signed with the store's key."""
        if self.store is None:
            return None
        if hit.key and hit.key not in self.checked:  # found after planning (a dynamic map's item, early cutoff)
            self.check([hit.key])
        if hit.key in self.unbound:
            return RefusedEntry(f"its cache entry names artifact {hit.artifact_id}, which the task run it names "
                                f"({hit.task_run_id}) did not record as its value: the entry was changed outside "
                                f"flowkit; nothing of that artifact was read")
        signer = self.store.signer
        if signer is not None and not signer.valid_hit(hit):
            return RefusedEntry(f"its cache entry (artifact {hit.artifact_id}) is not signed with this store's key "
                                f"({signer.source}): it was written without that key, or changed outside flowkit "
                                f"since; nothing of that artifact was read")
        return None

    def prefetch(self, loads: Iterable[str]) -> None:
        """Fetch the bytes of the small values these hits will load, in one query (a map's items, after it expands)."""
        if self.store is None:
            return
        hits, uses = self.state.hits, self.uses
        wanted = []
        for node_id in loads:
            hit = hits[node_id]
            if not hit.uri:
                artifact_id = hit.artifact_id
                count = uses.get(artifact_id, 0)
                uses[artifact_id] = count + 1
                if not count and artifact_id not in self.inline:
                    wanted.append(artifact_id)
        if wanted:
            self.inline.update(self.store.db.inline_many(wanted))

    def inline_bytes(self, hit: CacheHit) -> bytes | None:
        """The bytes of a small cached value kept in the database (``None`` for one in a file)."""
        if hit.uri or self.store is None:
            return None
        artifact_id = hit.artifact_id
        left = self.uses.get(artifact_id, 0) - 1  # many nodes may load the same bytes: kept for the last one
        if left > 0:
            self.uses[artifact_id] = left
            data = self.inline.get(artifact_id)
        else:
            self.uses.pop(artifact_id, None)
            data = self.inline.pop(artifact_id, None)
        return data if data is not None else self.store.db.inline_data(artifact_id)

    def fresh_hit(self, node_id: str, node: Node, hit: CacheHit, now: float) -> bool:
        """Whether a cache entry is still fresh for this node (its ``cache_ttl``, and its inputs')."""
        ttl = node.task.options.cache_ttl
        stale = hit.expires  # when a value it was computed from went stale
        if ttl is not None and hit.created is not None:  # its own ttl counts from when it was made
            stale = _soonest(stale, hit.created + ttl)
        if stale is None:
            return True
        if now > stale:
            return False
        self.expiry[node_id] = stale
        return True

    def file_exists(self, hit: CacheHit) -> bool:
        """Whether the ``fk.File`` a task returned is still there (a value that will not load, or that
        may not be loaded, is not)."""
        assert self.store is not None
        if self.refusal(hit) is not None:
            return False
        try:
            return bool(self.store.load(hit.artifact_id).path.exists())
        except Exception:  # noqa: BLE001 - damaged or unloadable: recompute it
            return False

    def downstream(self, roots: list[str]) -> set[str]:
        """``roots`` and every node that depends on them, in the whole run."""
        children: dict[str, list[str]] = {}
        for node_id, node in self.state.nodes.items():
            for dep in node.deps:
                children.setdefault(dep, []).append(node_id)
        out: set[str] = set()
        stack = list(roots)
        while stack:
            node_id = stack.pop()
            if node_id not in out:
                out.add(node_id)
                stack.extend(children.get(node_id, ()))
        return out

    def computed(self, key: str, node: Node, ended: float) -> None:
        """A node's value was computed: it is fresh, and goes stale with its ``cache_ttl`` or sooner.

        Sooner, if a value it was computed from goes stale first (a fetch with a ttl makes the
        model trained on it stale with it, even where keys alone cannot tell, as in a map over a
        run-time list). Only the inputs' part is stored with the cache entry (``inherited``):
        the task's own ``cache_ttl`` is applied at lookup, so a changed ttl counts for
        existing entries. A map's list is fresh, and goes stale, with its items.
        """
        if node.kind != "map":
            self.fresh.add(key)
        elif any(d in self.fresh for d in node.deps):
            self.fresh.add(key)
        expiry = self.expiry
        ttl = node.task.options.cache_ttl if node.kind != "map" else None
        if ttl is None and not expiry:
            return  # nothing in this run goes stale: the common case stays cheap
        upstream = min((expiry[d] for d in node.deps if d in expiry), default=None)
        _set(self.inherited, key, upstream)
        # A recomputed hit replaces its old entry's expiry, or drops it.
        _set(expiry, key, _soonest(upstream, ended + ttl if ttl is not None else None))

    # --- by content (early cutoff) -------------------------------------------------------------

    def may_cut(self, key: str, node: Node) -> bool:
        """Whether ``key`` may be found by the content of its inputs once they are known.

        Only a cacheable task that missed by key, is not refreshed, and takes a value
        that this run computes (or found by content) qualifies: if all its inputs were
        hits by key, its key already said everything their content could.
        """
        hits = self.state.hits
        return (self.cutoff and node.kind == "task" and key not in hits and bool(node.deps)
                and node.task.options.cache and key not in self.forced
                and any(d not in hits or d in self.fresh for d in node.deps))

    def content_of(self, key: str) -> str | None:
        """A node's content key from its inputs' digests (``None`` if one has none), memoized."""
        contents = self.contents
        if key in contents:
            return contents[key]
        digests = []
        nodes, artifacts, opaque = self.state.nodes, self.state.artifacts, self.opaque
        for dep in nodes[key].deps:
            upstream = nodes[dep]
            if upstream.kind == "map":
                digest = self.digest_of(dep)
            else:  # `digest_of`, inlined: one call fewer per input of every task that runs
                digest = None if dep in opaque or not upstream.task.options.cache else artifacts.get(dep)
            if digest is None:
                contents[key] = None
                return None
            digests.append(digest)
        assert self.keymaker is not None
        content = contents[key] = self.keymaker.content(self.state.nodes[key], digests)
        return content

    def entry_content(self, node: Node) -> str | None:
        """The content key to store with a computed node's cache entry, if it has one."""
        if self.keymaker is None or not node.deps or not node.task.options.cache:
            return None
        return self.content_of(node.id)

    def digest_of(self, node_id: str) -> str | None:
        """The digest of a node's value: its artifact's, or for a map, one over its items'.

        ``None`` (compare by key only) for a value that was not stored, whose bytes do not say
        all of it (:func:`~flowkit.hashing.said_by_bytes`: an ``fk.File``, an object of your own
        classes), or that a ``cache=False`` task made: what is downstream of one always reruns.
        """
        node = self.state.nodes[node_id]
        if node.kind != "map":
            if node_id in self.opaque or not node.task.options.cache:
                return None
            return self.state.artifacts.get(node_id)
        parts = [self.digest_of(child) for child in node.deps]
        if any(p is None for p in parts):
            return None
        return "map:" + ",".join(parts)  # type: ignore[arg-type]

    def cut_off(self, key: str, node: Node) -> bool:
        """Early cutoff: a task about to run whose inputs' content is that of a cached entry becomes a hit."""
        if key in self.tried or not any(d in self.fresh for d in node.deps) or not self.may_cut(key, node):
            return False
        self.tried.add(key)
        content = self.content_of(key)
        if content is None:
            return False
        assert self.store is not None
        hit = self.store.db.content_lookup([content]).get(content)
        if hit is None or not self.usable(key, node, hit, self.clock.time()):
            return False
        self.adopt(key, node, hit, content)
        return True

    def usable(self, key: str, node: Node, hit: CacheHit, now: float) -> bool:
        """Whether an entry found by content may serve ``key``: trusted (it is filed under ``key`` too, and
        signed so with signing on), fresh, and not a file that is gone."""
        refused = self.refusal(hit)
        if refused is not None:
            log.warning("flowkit: task %r: the cache entry found by the content of its inputs is not used: %s",
                        node.task.name, refused)
            return False
        return self.fresh_hit(key, node, hit, now) and (not hit.file or self.file_exists(hit))

    def adopt(self, key: str, node: Node, hit: CacheHit, content: str) -> None:
        """Make ``key`` a hit found by content (it counts as fresh downstream), filed under its key too."""
        self.state.hits[key] = hit
        self.fresh.add(key)
        self.by_content.add(key)
        self.emit(CacheAdopted(self.state.run_id, key, self.state.keys[key], hit, content, node.task.name))

    def item_contents(self, node: Node, deps: tuple[str, ...], children: dict[str, Node], elements: Any) -> None:
        """Content keys of a map's items, by element; items that missed by key are looked up by them.

        A run-time list that grew by one, or was recomputed with the same elements, then
        runs only its new items.
        """
        if self.keymaker is None or self.store is None or not node.task.options.cache:
            return
        # The map's other inputs (keyword refs), the iterable's own node included when a keyword
        # takes a value from it too (``scale=d["scale"]`` beside ``d["items"]``).
        others = [self.digest_of(deps[i]) for i in sorted(slots_in(node.kwargs))]
        contents = self.contents
        if any(d is None for d in others):
            contents.update(dict.fromkeys(children))
            return
        for child, element in zip(children, elements):
            contents[child] = self.keymaker.item_content(node, element, others) \
                if said_by_bytes(element) else None  # type: ignore[arg-type]
        if not (self.cutoff and any(d in self.fresh for d in deps)):
            return  # the list came from the cache: the items' keys say everything
        hits, nodes = self.state.hits, self.state.nodes
        wanted = {c: contents[c] for c in children if c not in hits and c not in self.forced and contents[c]}
        self.tried.update(children)
        found = self.store.db.content_lookup(wanted.values())  # type: ignore[arg-type]
        self.check(hit.key for hit in found.values())
        now = self.clock.time()
        for child, content in wanted.items():
            hit = found.get(content)  # type: ignore[arg-type]
            if hit is not None and self.usable(child, nodes[child], hit, now):
                self.adopt(child, nodes[child], hit, content)  # type: ignore[arg-type]
