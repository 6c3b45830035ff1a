"""The store: ``$FLOWKIT_HOME`` (default ``./.flowkit``), metadata plus artifacts.

- metadata: a :class:`~flowkit.store.protocols.MetadataStore` opened from a URL
  by :func:`open_store` (``Store(home, db_url=...)`` or ``$FLOWKIT_DB``; by
  default SQLite in ``<home>/flowkit.db``, :mod:`flowkit.store.sqlite`);
- ``artifacts/``: content-addressed files (:mod:`flowkit.store.artifacts`);
  small values (up to 32 KiB) are kept in the metadata store instead. The
  artifact root may be moved elsewhere, an fsspec URL included (``s3://bucket/prefix``:
  :mod:`flowkit.store.s3`), with ``Store(home, artifacts=...)`` or ``$FLOWKIT_ARTIFACTS``,
  so that the workers of a remote Dask cluster can write and read it.

:class:`Store` is what the engine, the lineage queries and the CLI use; it
holds policy (what gc removes, how a run record is assembled) and leaves every
query to its metadata store. It pickles as its home, metadata URL and artifact
root, so it can travel to a worker.

SQLite and PostgreSQL (``postgresql://``, :mod:`flowkit.store.postgres`, with
``flowkit[postgres]``) come with flowkit. Another metadata backend plugs in by
URL scheme::

    def open_mine(url: str) -> MetadataStore:
        return MyMetadataStore(url)

    register_backend("mine", open_mine)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flowkit.errors import ArtifactSignatureError, CacheCorruptionError, StoreError
from flowkit.hashing import file_digest
from flowkit.records import Attempt, Run, TaskRun
from flowkit.store import owner
from flowkit.store.artifacts import BadArtifactId, DamagedArtifact, artifact_files
from flowkit.store.protocols import ArtifactRecord, FileRecord, MetadataStore, RunRecord
from flowkit.store.serializers import load_artifact
from flowkit.store.signing import Signer, sign_from_env, signer_for

__all__ = ["GCReport", "Store", "default_home", "open_store", "register_backend"]

def default_home() -> Path:
    """``$FLOWKIT_HOME``, else ``./.flowkit``."""
    return Path(os.environ.get("FLOWKIT_HOME") or ".flowkit")


_BACKENDS: dict[str, Callable[[str], MetadataStore]] = {}


def register_backend(scheme: str, factory: Callable[[str], MetadataStore]) -> None:
    """Make :func:`open_store` open URLs of ``scheme`` (``"postgresql"``) with ``factory(url)``.

    A backend lives in a leaf module that imports its driver at its top and calls
    this when imported; a scheme registered again is replaced.
    """
    if not scheme or "://" in scheme or ":" in scheme:
        raise ValueError(f"a URL scheme is a name like 'postgresql', not {scheme!r}")
    _BACKENDS[scheme.lower()] = factory


def _open_sqlite(url: str) -> MetadataStore:
    from flowkit.store.sqlite import SQLiteMetadataStore

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise StoreError(f"a SQLite URL names a file: sqlite:///absolute/path/flowkit.db or "
                         f"sqlite:relative/flowkit.db, not {url!r}")
    return SQLiteMetadataStore(parts.path)


register_backend("sqlite", _open_sqlite)

#: Backends that come with flowkit, imported when a URL first names them (their drivers are extras).
_BUILT_IN = {"postgresql": "flowkit.store.postgres", "postgres": "flowkit.store.postgres"}


def open_store(url: str | os.PathLike[str]) -> MetadataStore:
    """The metadata store at ``url``: a registered scheme (``sqlite:///path/flowkit.db``), or a folder.

    A plain path (no ``scheme://``) is a store's home folder: SQLite in
    ``<folder>/flowkit.db``.

    Raises:
        StoreError: the scheme is not registered (the message names those that are),
            or the store cannot be opened.
    """
    text = os.fspath(url)
    if "://" not in text and not text.lower().startswith("sqlite:"):
        return _open_sqlite("sqlite:" + os.fspath(Path(text) / "flowkit.db"))
    scheme = text.split(":", 1)[0].lower()
    if scheme not in _BACKENDS and scheme in _BUILT_IN:
        try:
            importlib.import_module(_BUILT_IN[scheme])  # registers the scheme
        except ImportError as exc:
            raise StoreError(f"cannot open {scheme}:// metadata stores: {exc}") from None
    factory = _BACKENDS.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted({*_BACKENDS, *_BUILT_IN}))
        raise StoreError(f"no metadata store for URL scheme {scheme!r}; the known schemes are: {known}, "
                         f"or a plain folder path")
    return factory(text)


_OPEN: dict[tuple[Path, str | None, str | None, bool], Store] = {}
_OPEN_LOCK = threading.Lock()


def _reopen(home: str, artifacts: str, db_url: str | None = None, sign: bool = False) -> Store:
    return Store.open(home, artifacts=artifacts, db_url=db_url, sign=sign)


@dataclass
class GCReport:
    """What :meth:`Store.gc` removed (or would remove, with ``dry_run``).

    ``temporaries`` are the temporary files of writes that never finished (named relative to
    the artifact root); ``crashed`` the runs found dead and recorded ``crashed`` first.
    """

    artifacts: list[str] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False
    temporaries: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)


#: The error a crashed run reads with.
CRASHED = ("the process running it stopped without recording how the run ended (killed, or its machine lost); "
           "run the flow again to resume from what it committed")


class Store:
    """A metadata store plus an artifact store under one home directory.

    Args:
        home: the store's folder (default :func:`default_home`).
        db_url: where the metadata lives (see :func:`open_store`); default
            ``$FLOWKIT_DB``, else SQLite in ``home``.
        artifacts: the artifact root, a folder or an fsspec URL; default
            ``$FLOWKIT_ARTIFACTS``, else ``home/artifacts``.
        sign: sign the artifacts and cache entries this store records with the project's key,
            and refuse, before anything is unpickled, those not signed with it (default
            ``$FLOWKIT_SIGN_ARTIFACTS``, else off). The key is ``$FLOWKIT_SIGNING_KEY``, else
            ``home/signing.key`` (made on first use, mode 0600): see :mod:`flowkit.store.signing`.

    Attributes:
        db: the :class:`~flowkit.store.protocols.MetadataStore`.
        files: the :class:`~flowkit.store.protocols.ArtifactStore`.
        stale_after: seconds without a sign of life after which a run another host
            owns reads as ``crashed`` (:mod:`flowkit.store.owner`).
    """

    stale_after: float = owner.STALE_AFTER

    def __init__(self, home: str | os.PathLike[str] | None = None, *, db_url: str | None = None,
                 artifacts: str | os.PathLike[str] | None = None, sign: bool | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the flowkit store at {self.home}: {exc}. Set FLOWKIT_HOME to a "
                             f"writable folder.") from exc
        self.db_url = db_url or os.environ.get("FLOWKIT_DB") or None
        self.db: MetadataStore = open_store(self.db_url or self.home)
        root = artifacts or os.environ.get("FLOWKIT_ARTIFACTS") or self.home / "artifacts"
        self.artifacts_root = os.fspath(root)
        self.files = artifact_files(root)
        self._file_memo: dict[tuple[str, int, int], str] = {}
        self.sign = sign_from_env() if sign is None else bool(sign)
        self._signing: Signer | None = None

    @property
    def signer(self) -> Signer | None:
        """The :class:`~flowkit.store.signing.Signer` when signing is on (its key read on first use), else ``None``."""
        return self.signing() if self.sign else None

    def signing(self) -> Signer:
        """The signer of this store's key, made on first use whether signing artifacts is on or not
        (the scheduler signs the parameters it stores with it)."""
        if self._signing is None:
            self._signing = signer_for(self.home)
        return self._signing

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None, *, db_url: str | None = None,
             artifacts: str | os.PathLike[str] | None = None, sign: bool | None = None) -> Store:
        """The store at ``home`` (default: :func:`default_home`), shared within this process."""
        path = (Path(home) if home is not None else default_home()).absolute()
        root = os.fspath(artifacts) if artifacts else os.environ.get("FLOWKIT_ARTIFACTS")
        url = db_url or os.environ.get("FLOWKIT_DB") or None
        signed = sign_from_env() if sign is None else bool(sign)
        with _OPEN_LOCK:
            store = _OPEN.get((path, root, url, signed))
            if store is None:
                store = _OPEN[(path, root, url, signed)] = cls(path, db_url=url, artifacts=root, sign=signed)
            return store

    def __reduce__(self) -> tuple[object, ...]:
        return (_reopen, (str(self.home), self.artifacts_root, self.db_url, self.sign))

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    # --- files as inputs -----------------------------------------------------------------------

    def file_digest(self, path: Path) -> str:
        """A file's content digest, reusing the recorded one while its size and mtime are unchanged."""
        real = os.path.realpath(path)
        st = os.stat(real)
        memo_key = (real, st.st_size, st.st_mtime_ns)
        cached = self._file_memo.get(memo_key)
        if cached is not None:
            return cached
        known = self.db.file_record(real)
        if known is not None and known.size == st.st_size and known.mtime_ns == st.st_mtime_ns:
            d = known.digest
        else:
            d = file_digest(real)
            self.db.record_file(FileRecord(real, st.st_size, st.st_mtime_ns, d))
        self._file_memo[memo_key] = d
        return d

    # --- artifacts -----------------------------------------------------------------------------

    def artifact(self, artifact_id: str) -> ArtifactRecord | None:
        """The record of an artifact: uri, serializer, type, size, columns, dtypes, rows, created.

        An artifact that gc (or damage) removed keeps its record: ``removed`` says when, and
        ``removed_by`` why (``"gc"`` or ``"damaged"``); both are ``None`` while its bytes exist.
        The record also reads as a mapping (``record["type"]``).
        """
        return self.db.artifact(artifact_id)

    def load(self, artifact_id: str) -> Any:
        """The value of an artifact; :class:`~flowkit.CacheCorruptionError` if its bytes are damaged."""
        record = self.artifact(artifact_id)
        if record is None:
            raise KeyError(f"no artifact {artifact_id!r} in the store at {self.home}")
        if record.removed is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.removed))
            cause = "by gc" if record.removed_by == "gc" else f"({record.removed_by})"
            raise KeyError(f"artifact {artifact_id} was removed {cause} at {when}; its record and lineage are "
                           f"kept, and rerunning the flow that made it recomputes it")
        self.check_signed(record)
        inline = self.db.inline_data(artifact_id) if record.inline else None
        try:
            return load_artifact(self.files, artifact_id, record.serializer, inline, record.versions)
        except DamagedArtifact as exc:
            raise CacheCorruptionError(f"artifact {artifact_id} is damaged ({exc}); rerun the flow that made it "
                                       f"to recompute it") from exc

    def check_signed(self, record: ArtifactRecord | str, serializer: str | None = None) -> None:
        """With signing on, refuse an artifact not signed with this store's key (nothing of it is read).

        ``record`` is the artifact's record, or its id (its record is read, and ``serializer``,
        if given, must be the one recorded: how the caller is about to decode it).

        Raises:
            ArtifactSignatureError: naming the artifact and the task that made it.
        """
        signer = self.signer
        if signer is None:
            return
        if isinstance(record, str):
            found = self.artifact(record)
            if found is None:
                raise KeyError(f"no artifact {record!r} in the store at {self.home}")
            record = found
        if (serializer is None or serializer == record.serializer) and \
                signer.valid_artifact(record.id, record.serializer, record.signature):
            return
        step = self.db.newest_producers([record.id]).get(record.id)
        made = f" (the value of task {step.task!r}, run {step.run_id})" if step else " (no recorded task made it)"
        raise ArtifactSignatureError(
            f"artifact {record.id}{made} is not signed with this store's key ({signer.source}): flowkit did not "
            f"write it with that key, or its record was changed since; it was not loaded. Rerun the flow that "
            f"made it to recompute it", record.id)

    # --- runs ----------------------------------------------------------------------------------

    def runs(self, flow: str | None = None, limit: int | None = None, status: str | None = None) -> list[Run]:
        """Run records, newest first.

        A run recorded ``running`` whose process is gone reads as ``crashed``
        (:mod:`flowkit.store.owner`), and ``status="running"`` / ``"crashed"`` select by what it reads as.
        """
        now = time.time()
        if status not in ("running", "crashed"):
            return [self._run(r, now) for r in self.db.runs(flow=flow, status=status, limit=limit)]
        records = self.db.runs(flow=flow, status="running")
        if status == "crashed":
            records += self.db.runs(flow=flow, status="crashed")
            records.sort(key=lambda r: r.started or 0.0, reverse=True)
        found = [run for run in (self._run(r, now) for r in records) if run.status == status]
        return found[:limit] if limit is not None else found

    def run_page(self, *, flow: str | None = None, status: str | None = None, trigger: str | None = None,
                 limit: int = 50, offset: int = 0, since: float | None = None,
                 until: float | None = None) -> list[Run]:
        """One page of run records, newest first: at most ``limit`` after skipping ``offset`` (one indexed query).

        ``status`` selects by the recorded status; a run recorded ``running`` whose process is
        gone still reads as ``crashed``. Counts for the same filters: ``store.db.run_status_counts``.
        """
        now = time.time()
        return [self._run(r, now) for r in self.db.run_page(flow=flow, status=status, trigger=trigger,
                                                           limit=limit, offset=offset, since=since, until=until)]

    def run(self, run_id: str) -> Run:
        """One run record by id (a unique prefix of it is enough)."""
        ids = self.db.run_ids_like(run_id)
        if not ids:
            raise KeyError(f"no run {run_id!r} in the store at {self.home}")
        if len(ids) > 1:
            raise KeyError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        record = self.db.get_run(ids[0])
        if record is None:  # removed between the two reads
            raise KeyError(f"no run {run_id!r} in the store at {self.home}")
        return self._run(record, time.time())

    def _status(self, r: RunRecord, now: float) -> str:
        return owner.status(r.status, r.host, r.owner_pid, r.owner_start, r.heartbeat, r.started, now,
                            self.stale_after)

    def _run(self, r: RunRecord, now: float) -> Run:
        info = {"host": r.host, "user": r.user, "git_commit": r.git_commit, "flow_file": r.flow_file,
                "scheduled": r.scheduled}
        if r.triggered_by is not None or r.trigger_reason is not None:
            info["triggered_by"] = r.triggered_by
            info["trigger_reason"] = json.loads(r.trigger_reason) if r.trigger_reason else None
        status, ended, error = self._status(r, now), r.ended, r.error
        if status == "crashed" and r.status == "running":  # not reconciled yet: read as the store will record it
            ended, error = r.heartbeat or r.started, CRASHED
        return Run(r.id, r.flow, status, r.params, r.started, ended, None, r.trigger, error, info=info,
                   load=self.task_runs, store=self)

    def reconcile(self, now: float | None = None) -> list[str]:
        """Record ``crashed`` the runs still recorded ``running`` whose process is gone; return their ids.

        :meth:`gc` does it first, so what a dead run pinned is kept no longer than any other
        run's (``keep_days``); readers already see such runs as ``crashed``.
        """
        now = time.time() if now is None else now
        dead = [r.id for r in self.db.runs(status="running") if self._status(r, now) == "crashed"]
        if dead:
            self.db.mark_crashed(dead, now, CRASHED)
        return dead

    def task_runs(self, run_id: str) -> tuple[TaskRun, ...]:
        """The task runs of a run, in the order they were recorded."""
        history: dict[str, list[Attempt]] = {}
        for a in self.db.attempts(run_id):
            history.setdefault(a.node, []).append(Attempt(a.number, a.started, a.ended, a.error))
        out = []
        for r in self.db.task_runs(run_id):
            attempts = history.get(r.node)
            if attempts is None and r.status == "completed":
                attempts = [Attempt(1, r.started, r.ended, None)]
            out.append(TaskRun(f"{r.run_id}/{r.node}", r.run_id, r.node, r.task, r.status, r.attempts, r.started,
                               r.ended, r.cache_key, r.artifact_id, r.error, r.traceback, r.worker,
                               history=tuple(attempts or ()), logs=r.logs, source=r.source))
        return tuple(out)

    def cache_salt(self, run_id: str) -> tuple[str, str]:
        """(flow, cache salt) of a run, for ``resume=``."""
        record = self.db.get_run(run_id)
        if record is None:
            raise KeyError(run_id)
        return record.flow, record.cache_salt or run_id

    # --- the cache -----------------------------------------------------------------------------

    def cache_entries(self) -> list[dict[str, Any]]:
        """Every cache entry with its task, artifact and size, newest first."""
        return [asdict(e) for e in self.db.cache_entries()]

    def clear_cache(self, *, tasks: list[str] | None = None, dry_run: bool = False) -> int:
        """Forget cache entries (all, or those of some tasks); return how many. Artifacts go at the next gc."""
        return self.db.clear_cache(tasks, dry_run=dry_run)

    # --- garbage collection --------------------------------------------------------------------

    def gc(self, *, keep_days: float = 30.0, dry_run: bool = False, now: float | None = None,
           grace_seconds: float = 3600.0) -> GCReport:
        """Remove artifacts nothing needs any more, and temporary files writes left behind.

        An artifact is kept while a cache entry points to it, or a run that
        started in the last ``keep_days`` days (or that is still running)
        produced or consumed it. Files younger than ``grace_seconds`` are kept
        too: a running flow may have written them without recording them yet.
        What is removed keeps its record, marked ``removed_by="gc"``. A temporary
        file (``.tmp-*``: a write a killed process never finished; on S3 also a pending
        multipart upload, aborted) older than ``grace_seconds`` is removed. Runs whose process died are recorded
        ``crashed`` first (:meth:`reconcile`, with ``dry_run`` too), so they pin nothing.
        """
        now = time.time() if now is None else now
        report = GCReport(dry_run=dry_run, crashed=self.reconcile(now))
        keep = self.db.referenced_artifacts(now - keep_days * 86400)
        for artifact_id, size in self.db.stored_artifacts().items():
            if artifact_id not in keep:
                report.artifacts.append(artifact_id)
                report.bytes += size or 0
        doomed = set(report.artifacts)
        on_disk = list(self.files.digests())
        for d, mtime in on_disk:  # files never recorded (an interrupted run), past the grace period
            if d not in keep and d not in doomed and now - mtime > grace_seconds:
                report.artifacts.append(d)
        fresh = {d for d, mtime in on_disk if now - mtime <= grace_seconds}
        report.artifacts = [a for a in report.artifacts if a not in fresh]
        report.temporaries = [name for name, mtime in self.files.temporaries() if now - mtime > grace_seconds]
        if dry_run:
            return report
        if report.artifacts:
            self.db.mark_removed(report.artifacts, now, "gc")  # the records stay, so lineage can say what was there
            for a in report.artifacts:
                with contextlib.suppress(BadArtifactId):  # a record whose id is no digest has no file to remove
                    self.files.delete(a)
        for name in report.temporaries:
            self.files.remove_temporary(name)
        return report

    # --- read-only queries for the CLI ---------------------------------------------------------

    def computed_by(self, cache_keys: Iterable[str]) -> dict[str, TaskRun]:
        """The task run that computed each cache entry, by cache key (keys not in the cache are left out).

        A ``cached`` task run's own timings are those of loading the value; this is
        where to read how long computing it took (:attr:`TaskRun.run_time`).
        """
        by_run: dict[str, dict[str, str]] = {}  # run id -> {node: key}
        for key, task_run_id in self.db.cache_sources(dict.fromkeys(cache_keys)).items():
            run_id, _, node = task_run_id.partition("/")
            by_run.setdefault(run_id, {})[node] = key
        out: dict[str, TaskRun] = {}
        for run_id, nodes in by_run.items():
            for tr in self.task_runs(run_id):
                if tr.node in nodes:
                    out[nodes[tr.node]] = tr
        return out

    def find_artifact(self, prefix: str) -> str:
        """The full id of the artifact whose id starts with ``prefix``; ``KeyError`` if none or several do."""
        prefix = prefix.lower()
        hexadecimal = bool(prefix) and all(c in "0123456789abcdef" for c in prefix)
        ids = self.db.artifact_ids_like(prefix) if hexadecimal else []
        if not ids:
            raise KeyError(f"no artifact {prefix!r} in the store at {self.home}; `flowkit artifacts ls` lists them")
        if len(ids) > 1:
            raise KeyError(f"artifact id prefix {prefix!r} is ambiguous; give more characters")
        return ids[0]

    def artifact_list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Artifact records, newest first: ``id``, ``type``, ``size``, ``rows``, ``created``, ``serializer``,
        ``removed``, and ``task``, ``node``, ``run_id`` of the newest completed task run that produced it
        (``None`` when no recorded run did)."""
        records = self.db.artifacts(limit)
        producers = self.db.newest_producers(r.id for r in records)
        out = []
        for r in records:
            step = producers.get(r.id)
            out.append({"id": r.id, "type": r.type, "size": r.size, "rows": r.rows, "created": r.created,
                        "serializer": r.serializer, "removed": r.removed,
                        "task": step.task if step else None, "node": step.node if step else None,
                        "run_id": step.run_id if step else None})
        return out
