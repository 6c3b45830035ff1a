"""What a store backend implements: the :class:`MetadataStore` and :class:`ArtifactStore` protocols.

The engine, the recorder, lineage, the scheduler and the CLI reach the store
only through these two protocols and the typed records below, so a new
backend (PostgreSQL, say) is one module that implements :class:`MetadataStore`
and registers itself with :func:`flowkit.store.register_backend`; nothing else
changes. The SQLite implementation (:mod:`flowkit.store.sqlite`) is the
reference: where this text leaves a detail open, it decides.

Records are ``NamedTuple``\\ s where a store builds one per task on a hot path
(a cache hit, a row of a :class:`Batch`) and frozen dataclasses elsewhere.
Times are epoch seconds (``float``); ids and digests are strings.

Rules every backend keeps (``tests/contracts/`` checks them):

- **Concurrency**: several processes may use one store at once; no write is lost.
- **Atomicity**: each method that writes is one transaction; :meth:`MetadataStore.flush`
  writes its whole batch or nothing.
- **Unique fires**: :meth:`MetadataStore.claim_fires` hands each (schedule, slot)
  to exactly one caller, across processes.
- **Lease**: at most one holder has an unexpired lease at any time.
- **Migrations**: opening a store applies the registered migrations it lacks
  (:mod:`flowkit.store.migrations`); a store newer than this flowkit is refused
  with a :class:`~flowkit.StoreError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson

from flowkit.store.predictions import PredictionStore
from flowkit.store.browse import BrowseStore
from flowkit.store.registry import RegistryStore
from flowkit.store.tracking import TrackingStore

__all__ = [
    "ArtifactRecord", "ArtifactRow", "ArtifactStore", "AttemptRecord", "AttemptRow", "Batch", "CacheEntry",
    "CacheHit", "CacheRow", "CachedTaskRunRow", "DamagedArtifact", "FileRecord", "FireRecord", "InputRecord",
    "InputRow", "LineageStep", "MetadataStore", "RunRecord", "ScheduleRecord", "TaskRunRow", "inputs_column",
    "read_inputs_column",
]


# --- records a store returns ----------------------------------------------------------------------

class CacheHit(NamedTuple):
    """A cache entry found for a key, with what loading its value needs.

    Attributes:
        artifact_id: the digest of the stored value.
        created: when the value was computed (epoch seconds).
        serializer: how its bytes decode.
        uri: its file, or ``None`` when the bytes are kept in the metadata store (inline).
        size: its size in bytes.
        expires: when it goes stale because a value it was computed from had a
            ``cache_ttl`` (``None``: never; the task's own ttl is applied on top).
        task_run_id: the task run that computed it.
        file: whether the value is an ``fk.File`` (a result that is gone when its file is).
        key, content: the entry's key and content key (what its signature covers).
        signature, artifact_signature: the entry's and its artifact's signatures under the
            store's key (``None`` when written without signing; :mod:`flowkit.store.signing`).
    """

    artifact_id: str
    created: float | None
    serializer: str
    uri: str | None
    size: int | None
    expires: float | None
    task_run_id: str | None
    file: bool
    key: str = ""
    content: str | None = None
    signature: str | None = None
    artifact_signature: str | None = None


class LineageStep(NamedTuple):
    """One recorded task run, as lineage walks it (``source``: for a cached one, who computed the value)."""

    run_id: str
    node: str
    task: str
    status: str
    started: float | None
    cache_key: str | None
    artifact_id: str | None
    source: str | None
    flow: str | None
    git_commit: str | None

    @property
    def id(self) -> str:
        return f"{self.run_id}/{self.node}"


class InputRecord(NamedTuple):
    """One input of a task run: an artifact (``name``: the upstream node) or a parameter."""

    kind: str
    artifact_id: str | None
    name: str | None
    token: str | None
    repr: str | None


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """The record of a stored value.

    ``removed``/``removed_by`` say when and why (``"gc"`` or ``"damaged"``) its bytes
    went; the record itself is kept so lineage can say what was there. Item access
    (``record["type"]``, ``record.get("rows")``) reads the attribute of that name.

    Attributes:
        id: the digest of its bytes.
        uri: where the bytes live, or ``"inline"`` when the metadata store keeps them.
        serializer: how the bytes decode (a name from :mod:`flowkit.store.serializers`).
        type: the value's type (``module.qualname``).
        size: bytes.
        columns, dtypes, rows: for tables, their column names, dtypes and row count.
        created: when it was first stored.
        inline: whether the metadata store holds the bytes.
        removed, removed_by: see above; ``None`` while the bytes exist.
        signature: its signature under the store's key, if it was written with signing on.
        versions: the versions of Python and of the libraries that matter for loading it
            (``{"python": "3.12.3", "pandas": "2.2.3"}``) in the process that wrote it; ``None`` if not recorded.
    """

    id: str
    uri: str
    serializer: str
    type: str | None
    size: int | None
    columns: list[str] | None
    dtypes: list[str] | None
    rows: int | None
    created: float | None
    inline: bool
    removed: float | None
    removed_by: str | None
    signature: str | None = None
    versions: dict[str, str] | None = None

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A flow run as stored (``params`` decoded; ``cache_salt`` is what ``resume=`` reuses)."""

    id: str
    flow: str
    status: str
    params: dict[str, Any]
    started: float | None
    ended: float | None
    trigger: str | None
    error: str | None
    host: str | None
    user: str | None
    git_commit: str | None
    flow_file: str | None
    scheduled: float | None
    cache_salt: str | None
    owner_pid: int | None = None  # the process that runs it, while it runs (see flowkit.store.owner)
    owner_start: str | None = None  # when that process started, so a reused pid is not mistaken for it
    heartbeat: float | None = None  # the run's last sign of life: its last batch of records
    triggered_by: str | None = None  # the run that started this one (fk.trigger), if any
    trigger_reason: str | None = None  # why, as JSON text


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a task run (recorded when it was retried or failed)."""

    node: str
    number: int
    started: float | None
    ended: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cache entry with its artifact's size and type, as ``flowkit cache list`` shows it."""

    key: str
    task: str | None
    artifact_id: str
    created: float | None
    size: int | None
    type: str | None


@dataclass(frozen=True, slots=True)
class FileRecord:
    """The digest recorded for a file input, valid while its size and mtime are unchanged."""

    path: str
    size: int
    mtime_ns: int
    digest: str


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A stored schedule. ``params_pickle`` keeps parameter types; ``params`` is its JSON for people.

    ``checked`` is the time up to which its slots were handled: the scheduler never
    fires a slot before it.
    """

    name: str
    flow_ref: str
    flow: str
    expr: str
    tz: str
    catchup: str
    overlap: str
    max_catchup: int | None
    params: str
    params_pickle: bytes | None
    paused: bool
    created: float
    checked: float


@dataclass(frozen=True, slots=True)
class FireRecord:
    """One (schedule, slot) claimed by a scheduler: ``pending``, ``running``, ``completed``,
    ``failed``, ``crashed`` (its run's process died), ``missed`` or ``skipped``; ``holder`` is the
    scheduler that claimed it."""

    schedule: str
    slot: float
    status: str
    run_id: str | None
    holder: str | None
    fired: float | None


# --- the rows of a batch ------------------------------------------------------------------------

class ArtifactRow(NamedTuple):
    """A stored value (``uri`` ``None`` and ``data`` its bytes when it is kept inline)."""

    id: str
    uri: str | None
    serializer: str
    type: str | None
    size: int | None
    columns: str | None  # JSON list
    dtypes: str | None  # JSON list
    rows: int | None
    created: float | None
    data: bytes | None
    versions: str | None = None  # JSON: {"python": "3.12.3", "pandas": "2.2.3", ...}


class TaskRunRow(NamedTuple):
    """A task run, as written in a batch and read back by :meth:`MetadataStore.task_runs`;
    ``seq`` orders the task runs of one run.

    ``inputs`` holds the artifact inputs of a task run whose every upstream value was
    computed by a task run of the same run (most of a cold run): which of them fed each
    position (:func:`inputs_column`), their artifacts being those task runs'. Such inputs
    are not also ``inputs`` rows of the batch; the others are (and it is ``None``).
    """

    run_id: str
    node: str
    seq: int
    task: str
    status: str
    attempts: int
    started: float | None
    ended: float | None
    cache_key: str | None
    artifact_id: str | None
    error: str | None
    traceback: str | None
    worker: str | None
    logs: str | None
    source: str | None
    inputs: str | None = None


def inputs_column(pairs: Sequence[tuple[int, str]]) -> str:
    """A task run's ``inputs`` column: ``(position, producing node)`` of each artifact input, in order (JSON)."""
    return orjson.dumps(pairs).decode()  # built per task run of a cold run: orjson, at a tenth of json's cost


def read_inputs_column(text: str) -> list[tuple[int, str]]:
    """The ``(position, producing node)`` pairs of an ``inputs`` column."""
    return [(position, node) for position, node in json.loads(text)]


class CachedTaskRunRow(NamedTuple):
    """A task run served from the cache without loading its value: status ``cached``, no attempts."""

    run_id: str
    node: str
    seq: int
    task: str
    cache_key: str | None
    artifact_id: str | None
    source: str | None


class AttemptRow(NamedTuple):
    run_id: str
    node: str
    number: int
    started: float | None
    ended: float | None
    error: str | None


class InputRow(NamedTuple):
    """What a task run consumed: ``kind`` ``"artifact"`` (``name``: the upstream node) or ``"param"``."""

    run_id: str
    node: str
    position: int | None
    kind: str
    artifact_id: str | None
    name: str | None
    token: str | None
    repr: str | None


class CacheRow(NamedTuple):
    """A cache entry: ``salted`` for a ``cache=False`` task (only ``resume=`` of its run uses it),
    ``content`` the key of its inputs' content (early cutoff)."""

    key: str
    artifact_id: str
    task: str | None
    task_run_id: str | None
    created: float | None
    run_id: str | None
    salted: bool
    expires: float | None
    content: str | None


class Batch:
    """Records waiting to be written together by :meth:`MetadataStore.flush`.

    Each list holds rows of the type its comment names (plain tuples in the same
    field order are accepted: the recorder builds many per task). A backend writes
    them in this order, so a value's artifact exists before anything refers to it:
    ``forget_artifacts``, ``artifacts`` (an id already stored keeps its record; a
    removed one comes back to life with the new uri and bytes), ``task_runs`` and
    ``cached`` (replacing a task run of the same (run, node)), ``attempts``
    (replacing the same number), ``inputs``, ``cache`` (replacing the same key),
    ``uncache`` (keys to delete), ``tracked`` and ``checks`` (what tasks logged, their
    check results: :mod:`flowkit.store.tracking`), ``run_end`` (``(status, ended, error, run_id)``),
    then ``signed_artifacts`` and ``signed_entries`` (``(signature, artifact id)`` and ``(signature,
    cache key)``, set on the rows above: :mod:`flowkit.store.signing`).
    ``heartbeat`` (``(time, run_id)``) is the run's last sign of life, written with the rest
    when there is a rest (it alone does not make a batch worth writing).
    """

    __slots__ = ("artifacts", "task_runs", "cached", "attempts", "inputs", "cache", "uncache", "forget_artifacts",
                 "tracked", "checks", "run_end", "heartbeat", "signed_artifacts", "signed_entries")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.artifacts: list[ArtifactRow] = []
        self.task_runs: list[TaskRunRow] = []
        self.cached: list[CachedTaskRunRow] = []
        self.attempts: list[AttemptRow] = []
        self.inputs: list[InputRow] = []
        self.cache: list[CacheRow] = []
        self.uncache: list[str] = []
        self.forget_artifacts: list[tuple[float, str]] = []  # (when, artifact id): damaged bytes
        self.tracked: list[Any] = []  # TrackedRow
        self.checks: list[Any] = []  # CheckRow
        self.run_end: tuple[str, float, str | None, str] | None = None
        self.heartbeat: tuple[float, str] | None = None
        self.signed_artifacts: list[tuple[str, str]] = []
        self.signed_entries: list[tuple[str, str]] = []

    #: The row lists, in the order a backend writes them (everything but ``run_end`` and ``heartbeat``).
    LISTS = ("forget_artifacts", "artifacts", "task_runs", "cached", "attempts", "inputs", "cache", "uncache",
             "tracked", "checks", "signed_artifacts", "signed_entries")

    def extend(self, other: Batch) -> None:
        """Append ``other``'s rows after these; its end and heartbeat, when it has them, replace these."""
        for name in self.LISTS:
            rows = getattr(other, name)
            if rows:
                getattr(self, name).extend(rows)
        if other.run_end is not None:
            self.run_end = other.run_end
        if other.heartbeat is not None:
            self.heartbeat = other.heartbeat

    def empty(self) -> bool:
        return self.run_end is None and not any(getattr(self, name) for name in self.LISTS)

    def __len__(self) -> int:
        return len(self.task_runs) + len(self.cached) + len(self.artifacts) + len(self.inputs) + len(self.cache)


# --- the protocols ------------------------------------------------------------------------------

@runtime_checkable
class MetadataStore(TrackingStore, RegistryStore, PredictionStore, BrowseStore, Protocol):
    """Runs, task runs, artifacts' records, lineage, the cache, file digests, schedules, tracking, models.

    Tracking (:class:`~flowkit.store.tracking.TrackingStore`), the model registry
    (:class:`~flowkit.store.registry.RegistryStore`) and the prediction log
    (:class:`~flowkit.store.predictions.PredictionStore`) and browsing (:class:`~flowkit.store.browse.BrowseStore`)
    are parts of it, each in its own module.

    An implementation is opened from a URL (see :func:`flowkit.store.open_store`),
    pickles as that URL (a worker reopens it), and is safe to use from several
    threads and processes at once.
    """

    url: str
    #: the SQL dialect its migration steps are written in (``"sqlite"``, ``"postgresql"``)
    dialect: str

    def close(self) -> None:
        """Release this process's connections (the store stays usable: it reconnects on demand)."""

    def defer_checkpoints(self) -> None:
        """Let this thread's commits leave more of the database's upkeep for later (:meth:`checkpoint`).

        The background writer (:mod:`flowkit.store.writer`) calls it on its thread: SQLite
        then checkpoints its write-ahead log less often, in larger pieces. A no-op where
        the server makes its own checkpoints (PostgreSQL).
        """

    def checkpoint(self) -> None:
        """Do the upkeep this thread's commits left (SQLite: copy its write-ahead log into the database)."""

    # migrations
    def migrate(self, name: str | None = None) -> None:
        """Apply the registered migrations this store lacks (those of ``name`` only, if given).

        Called when the store is opened; a feature whose migrations were registered
        after that calls it before using its tables. Cheap when up to date.
        """

    def schema_version(self, name: str = "core") -> int:
        """How many of ``name``'s migrations this store has applied (0: none)."""

    # runs
    def start_run(self, row: dict[str, Any]) -> None:
        """Record a run that started: ``id``, ``flow``, ``status`` and any other field of :class:`RunRecord`
        (``params`` as a JSON text)."""

    def end_run(self, run_id: str, status: str, ended: float, error: str | None) -> None:
        """Record how a run ended (:meth:`flush` does it too, with ``batch.run_end``)."""

    def mark_crashed(self, run_ids: Sequence[str], when: float, error: str) -> int:
        """End as ``crashed`` each of these runs that is still recorded ``running``, and the schedule fires
        that launched them; return how many runs."""

    def runs(self, flow: str | None = None, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first (by ``started``, then by recording order)."""

    def get_run(self, run_id: str) -> RunRecord | None:
        """One run by its full id."""

    def run_ids_like(self, prefix: str) -> list[str]:
        """At most two run ids starting with ``prefix`` (two: it is ambiguous)."""

    def has_other_runs(self, flow: str, run_id: str) -> bool:
        """Whether a run of ``flow`` other than ``run_id`` was recorded."""

    # task runs
    def flush(self, batch: Batch) -> None:
        """Write a batch in one transaction, then clear it; on failure nothing is written and
        the batch is kept."""

    def task_runs(self, run_id: str) -> list[TaskRunRow]:
        """A run's task runs, in the order they were recorded."""

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """A run's recorded attempts, by node and number."""

    # the cache
    def cache_lookup(self, keys: Iterable[str]) -> dict[str, CacheHit]:
        """The entries of those ``keys`` whose artifact is not removed, in one round trip."""

    def content_lookup(self, contents: Iterable[str]) -> dict[str, CacheHit]:
        """For each content key, the newest entry computed from inputs with that content."""

    def unbound_entries(self, keys: Iterable[str]) -> set[str]:
        """Those of these entry ``keys`` that are not bound to the task run they name: that task run
        did not record the entry's artifact as its value, for the entry's task, or is not recorded at all
        (a row re-pointed to another artifact). Keys with no entry are left out."""

    def cache_entries(self) -> list[CacheEntry]:
        """Every cache entry, newest first."""

    def clear_cache(self, tasks: Sequence[str] | None = None, *, dry_run: bool = False) -> int:
        """Delete the cache entries (of these tasks only, if given); return how many matched."""

    # artifacts
    def artifact(self, artifact_id: str) -> ArtifactRecord | None:
        """An artifact's record by its full id, removed or not."""

    def artifact_ids_like(self, prefix: str) -> list[str]:
        """At most two artifact ids starting with ``prefix``."""

    def artifacts(self, limit: int | None = None) -> list[ArtifactRecord]:
        """Artifact records, newest first (at most ``limit``)."""

    def cache_sources(self, keys: Iterable[str]) -> dict[str, str]:
        """For those cache keys that have an entry, the id of the task run that computed it."""

    def newest_producers(self, artifact_ids: Iterable[str]) -> dict[str, LineageStep]:
        """For each artifact, the newest completed task run that computed it (if any)."""

    def inline_data(self, artifact_id: str) -> bytes | None:
        """The bytes of an artifact kept inline, or ``None``."""

    def inline_many(self, artifact_ids: Iterable[str]) -> dict[str, bytes]:
        """The bytes of those artifacts that are kept inline, in one round trip."""

    def stored_artifacts(self) -> dict[str, int | None]:
        """Id and size of every artifact not marked removed."""

    def referenced_artifacts(self, since: float) -> set[str]:
        """What gc keeps: artifacts of unsalted cache entries and of registered model versions, and
        those that a run started at or after ``since`` (or still running) cached, produced or consumed."""

    def mark_removed(self, artifact_ids: Sequence[str], when: float, by: str) -> None:
        """Mark artifacts removed (``by``: ``"gc"`` or ``"damaged"``), dropping their inline bytes
        and the salted cache entries that point to them; their records stay."""

    # lineage
    def producers(self, artifact_id: str) -> list[LineageStep]:
        """Every completed task run that computed these bytes, newest first."""

    def step(self, run_id: str, node: str) -> LineageStep | None:
        """The task run of ``node`` in ``run_id``."""

    def consumed(self, run_id: str, node: str) -> list[InputRecord]:
        """What a task run consumed, in the order recorded."""

    def run_inputs(self, run_id: str) -> dict[str, list[InputRecord]]:
        """What each task run of a run consumed (:meth:`consumed` of each, in a few queries for the run)."""

    # file inputs
    def file_record(self, path: str) -> FileRecord | None:
        """The digest recorded for a file (by its real path)."""

    def record_file(self, record: FileRecord) -> None:
        """Record (or replace) a file's digest."""

    # schedules
    def put_schedule(self, record: ScheduleRecord) -> None:
        """Insert a schedule, or update the one of that name: its ``paused`` flag and ``created``
        stay, its ``checked`` never moves back."""

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    def delete_schedule(self, name: str) -> None:
        """Remove a schedule (its fires stay)."""

    def set_paused(self, name: str, paused: bool, checked: float | None = None) -> None:
        """Pause or resume a schedule, moving ``checked`` forward to ``checked`` if given."""

    def claim_fires(self, schedule: str, due: Sequence[float], missed: Sequence[float], *, holder: str,
                    now: float, skip: bool = False, skip_if_other_running: bool = False) -> list[float]:
        """Claim slots of a schedule in one transaction; return the ``due`` slots this call got.

        Each slot not claimed before is recorded once, by whoever comes first, across
        processes: ``missed`` ones as ``missed``; ``due`` ones as ``pending`` (returned),
        or as ``skipped`` when ``skip`` is true or when ``skip_if_other_running`` is true
        and the schedule's latest ``pending``/``running`` fire belongs to another holder
        that holds an unexpired lease. The schedule's ``checked`` moves forward to ``now``.
        """

    def set_fire_status(self, schedule: str, slots: Sequence[float], status: str,
                        run_ids: Sequence[str] | None = None) -> None:
        """Set the status (and, if given, the run ids, one per slot) of claimed fires, in one transaction."""

    def abandon_fires(self, holder: str) -> int:
        """Record ``crashed`` the fires another holder claimed (``pending``) or marked ``running`` without a run
        ever recorded for them: that scheduler died between its claim and the run's start. Called by the
        holder of the lease, which the other lost; returns how many."""

    def fires(self, schedule: str | None = None) -> list[FireRecord]:
        """Recorded fires (of one schedule, if given), by slot then schedule."""

    def fire(self, schedule: str, slot: float) -> FireRecord | None:
        """One recorded fire."""

    def take_lease(self, holder: str, now: float, seconds: float) -> bool:
        """Take or renew the scheduler lease until ``now + seconds``; ``False`` if another holder's
        lease is unexpired at ``now``."""

    def release_lease(self, holder: str) -> None:
        """Give up the lease if ``holder`` has it."""


class DamagedArtifact(Exception):
    """The bytes of an artifact no longer match their digest (or they are gone).

    ``inline`` says the bytes were those kept in the metadata database (a small value), not a
    file; ``path`` is then where a file of that digest would be, and the message does not name it.
    """

    def __init__(self, path: Path | str, expected: str, actual: str | None, *, inline: bool = False) -> None:
        what = "is missing" if actual is None else f"has digest {actual}"
        where = "its inline value in the metadata database" if inline else f"artifact file {path}"
        super().__init__(f"{where} {what}, expected {expected}")
        self.path = path
        self.expected = expected
        self.actual = actual
        self.inline = inline

    def __reduce__(self) -> tuple[Any, ...]:  # it crosses from a Dask worker to the client
        return (_damaged_artifact, (self.path, self.expected, self.actual, self.inline))


def _damaged_artifact(path: Path | str, expected: str, actual: str | None, inline: bool) -> DamagedArtifact:
    return DamagedArtifact(path, expected, actual, inline=inline)


@runtime_checkable
class ArtifactStore(Protocol):
    """Content-addressed bytes: a value is stored under the digest of its bytes.

    Writes are atomic (a reader sees the whole value or nothing) and reads are
    checked against the digest before anything is deserialized. Implementations
    pickle as their root, so workers can write and read them.
    """

    def path(self, digest: str) -> Path | str:
        """Where the bytes of ``digest`` live: a local path or an fsspec URL (recorded as the artifact's uri)."""

    def write(self, digest: str, data: bytes | memoryview) -> Path | str:
        """Store ``data`` under ``digest`` (which the caller computed); nothing is written if it is there."""

    def write_stream(self, produce: Callable[[Any], None]) -> tuple[str, int, Path | str]:
        """Store what ``produce(file)`` writes, digesting on the way: ``(digest, size, path)``."""

    def read(self, digest: str) -> bytes | memoryview:
        """The bytes of ``digest``, checked; :class:`DamagedArtifact` if they are missing or damaged."""

    def exists(self, digest: str) -> bool:
        """Whether bytes are stored under ``digest`` (without checking them)."""

    def verify(self, digest: str) -> bool:
        """Whether the bytes stored under ``digest`` are there and match it."""

    def delete(self, digest: str) -> None:
        """Remove the bytes of ``digest`` (no error if they are gone)."""

    def digests(self) -> Iterator[tuple[str, float]]:
        """Every stored digest with its modification time (for gc)."""

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """The temporary files of unfinished writes (named relative to the root) with their times (for gc)."""

    def remove_temporary(self, name: str) -> None:
        """Remove a temporary file :meth:`temporaries` listed (no error if it is gone)."""

