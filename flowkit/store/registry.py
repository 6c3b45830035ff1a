"""The model registry part of the metadata protocol: versions, aliases and the history of their moves.

A registered model is a name with versions 1, 2, 3... Each version points to an
artifact (the model's bytes, stored like any task output) and, when a task
registered it or produced its artifact, to that task run. Aliases
(``production``, ``staging``...) are movable names for versions; every move is
appended to an alias history that is never rewritten, so "which version was
``production`` on March 3rd" has an answer.

Rules a backend keeps (``tests/contracts/test_registry_store.py`` checks them):

- **Unique versions**: :meth:`RegistryStore.add_model_version` allocates the next
  version of a name inside its write transaction; concurrent callers, in several
  processes, get distinct versions with no gap.
- **Idempotent per cache key**: a version registered with a cache key is returned
  again, not duplicated, when the same (name, cache key) is registered once more.
- **Append-only history**: alias moves are only ever added to the history.
- **One transaction per change**: a version with its artifact record and first
  aliases, or one alias move, is written whole or not at all.

Times are epoch seconds passed in by the caller (the registry reads its clock),
so ``as_of`` queries can be tested without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = ["ANY", "AliasRecord", "ModelSummary", "ModelVersionRecord", "RegistryStore"]


class _Any:
    """The ``expect`` of an alias move that accepts whichever version holds the alias now."""

    def __repr__(self) -> str:
        return "ANY"


#: Pass as ``expect`` to :meth:`RegistryStore.move_alias` to move the alias from whatever holds it.
ANY: Any = _Any()


@dataclass(frozen=True, slots=True)
class ModelVersionRecord:
    """One version of a registered model, as stored.

    Attributes:
        name: the model's name.
        version: 1, 2, 3... per name (allocated by the store: ``0`` in what is passed to
            :meth:`RegistryStore.add_model_version`).
        artifact_id: the artifact holding the model.
        run_id, task_run_id: the run and task run (``"<run id>/<node>"``) that registered it or
            produced its artifact; ``None`` for a model registered from outside any run.
        cache_key: the cache key of the task that registered it (what makes a retry idempotent).
        metrics, params, tags: as given to ``register`` (decoded JSON).
        signature: the input columns and dtypes (``{"inputs": [{"name", "dtype"}...]}``) or ``None``.
        library_versions: ``{"python": "3.12.1", "numpy": "2.1.0", ...}`` at registration.
        created: when it was registered; ``user``: who registered it.
        aliases: the aliases that point to it now, by name (filled by queries that read them).
        serializer, inline: how its artifact loads, read with it (``None`` when the artifact's
            bytes are gone, or in what is passed to ``add_model_version``); ``inline`` holds the
            bytes of a small artifact kept in the metadata store.
    """

    name: str
    version: int
    artifact_id: str
    run_id: str | None
    task_run_id: str | None
    cache_key: str | None
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, Any]
    signature: dict[str, Any] | None
    library_versions: dict[str, str]
    created: float
    user: str | None
    aliases: tuple[str, ...] = ()
    serializer: str | None = None
    inline: bytes | None = None


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """One move of an alias, as the history keeps it.

    Attributes:
        name, alias: which alias of which model.
        version: the version it points to after the move (``None``: the alias was deleted).
        previous: the version it pointed to before (``None``: it was not set).
        time, user: when and by whom.
        run_id: the run the change was made from (a task that promoted), else ``None``.
        reason: the text given with the change.
        action: ``"set"``, ``"promote"``, ``"rollback"`` or ``"delete"``.
        seq: the order of the move among all moves (increasing).
    """

    name: str
    alias: str
    version: int | None
    previous: int | None
    time: float
    user: str | None
    run_id: str | None
    reason: str | None
    action: str
    seq: int


class ModelSummary(NamedTuple):
    """A registered model at a glance: how many versions, the latest, when first and last registered."""

    name: str
    versions: int
    latest: int
    created: float
    updated: float


class RegistryStore(Protocol):
    """What a metadata store offers the model registry (part of :class:`~flowkit.store.protocols.MetadataStore`)."""

    def add_model_version(self, record: ModelVersionRecord, aliases: Sequence[str] = (),
                          artifact: Any = None) -> tuple[ModelVersionRecord, bool]:
        """Register a version in one transaction; return it and whether it is new.

        The version number is allocated here (the record's ``version`` is ignored):
        one more than the name's highest, unique across processes. When the record
        has a ``cache_key`` already registered under that name, nothing is written
        and that version is returned (``False``). ``artifact`` (an
        :class:`~flowkit.store.protocols.ArtifactRow`) is recorded in the same
        transaction, as a batch records one; each of ``aliases`` is set to the new
        version with a history entry (action ``"set"``, the record's time, user and run).
        """
        ...

    def find_model_version(self, name: str, version: int | None = None, alias: str | None = None,
                           as_of: float | None = None) -> ModelVersionRecord | None:
        """The version asked for, in one query, with its current aliases; ``None`` if there is none.

        ``version``: that version. ``alias``: the version the alias points to (at ``as_of``,
        from the history, if given). Neither: the latest version (registered at or before
        ``as_of``, if given). With ``version`` and ``as_of``, ``None`` if it was registered after.
        """
        ...

    def model_version_for_key(self, name: str, cache_key: str) -> ModelVersionRecord | None:
        """The version of ``name`` registered with this cache key, if any."""
        ...

    def relink_model_version(self, name: str, version: int, run_id: str, task_run_id: str) -> ModelVersionRecord:
        """Link a version to another run and task run (a re-execution of the task that registered it)."""
        ...

    def model_versions(self, name: str) -> list[ModelVersionRecord]:
        """Every version of a model, oldest first, with their current aliases."""
        ...

    def models(self) -> list[ModelSummary]:
        """Every registered model, by name."""
        ...

    def model_aliases(self, name: str) -> dict[str, int]:
        """The aliases of a model now, by alias name."""
        ...

    def move_alias(self, name: str, alias: str, version: int | None, *, when: float, user: str | None,
                   action: str, reason: str | None = None, run_id: str | None = None,
                   expect: Any = ANY) -> AliasRecord | None:
        """Point an alias at ``version`` (``None``: delete it) and append the move to the history, in one transaction.

        The version must exist (the caller checks; versions are never deleted). ``expect``
        is what the alias must point to for the move to happen (a version, or ``None``:
        unset); with :data:`ANY`, any holder will do, but deleting an alias that is not
        set moves nothing. Returns the history record, or ``None`` when nothing moved.
        """
        ...

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasRecord]:
        """The moves of a model's aliases (of one alias, if given), oldest first."""
        ...

    def registered_producers(self, artifact_ids: Iterable[str]) -> dict[str, str]:
        """For artifacts that are registered model versions linked to a task run: that task run's id
        (of the newest such version). Lineage uses it: a model registered inside a task is not that
        task run's output."""
        ...
