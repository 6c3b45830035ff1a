"""Recording a run in the store: the run listener that writes every record.

A :class:`Recorder` listens to a run's events (:mod:`flowkit.events`) and turns
them into rows (run, task run, artifact, cache entry, inputs). It hands them to
a :class:`~flowkit.store.writer.BatchWriter`, which commits them on a thread of
its own, in one transaction every ``flush_every`` seconds or ``max_rows`` rows,
at once for a slow task, and at the end of the run, which waits for them. So
the run's thread only builds tuples; the database works beside it. A cache
entry is written in the same transaction as the task run that made it, after
its value was stored (workers store values before they report), so another
process never sees an entry without its value.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import socket
import subprocess
from typing import Any

from flowkit._template import Nested, Slot
from flowkit._worker import ArtifactInfo
from flowkit.cache import _SCALARS, value_token
from flowkit.graph import Node
from flowkit.clock import Clock
from flowkit.events import CacheAdopted, CacheForgotten, RunEvent, RunFinished, RunStarted, TaskFinished, TasksCached
from flowkit.errors import StoreError
from flowkit.files import File
from flowkit.hashing import short_repr
from flowkit.records import TaskRun
from flowkit import secrets as _secrets
from flowkit.secrets import mask
from flowkit.store import Store, owner
from flowkit.store.metadata import Batch, CacheHit
from flowkit.store.protocols import inputs_column
from flowkit.store.writer import BatchWriter, merge

__all__ = ["Recorder", "json_default", "json_params", "lineage_rows", "param_rows", "run_context", "settled_constants",
           "short_repr"]


@functools.lru_cache(maxsize=64)
def _git_commit(folder: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_context(flow_file: str | None) -> dict[str, Any]:
    """Where a run happens: host, user, the flow's file and its git commit."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = None
    folder = os.path.dirname(os.path.abspath(flow_file)) if flow_file else None
    return {"host": socket.gethostname(), "user": user, "flow_file": flow_file,
            "git_commit": _git_commit(folder) if folder else None}


def json_default(value: Any) -> Any:
    """How a value that JSON has no type for is recorded (dates as ISO text, sets as lists, paths as text...)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def _json_value(value: Any) -> str | None:
    return None if value is None else mask(json.dumps(value, default=json_default))


def json_params(params: dict[str, Any]) -> str:
    """A run's parameters as the store keeps them: JSON text, secrets masked."""
    # An fk.Secret is its repr, Secret('***'); a known secret's value given as plain text is masked too.
    return mask(json.dumps(params, default=json_default, sort_keys=True))  # type: ignore[return-value]


def _artifacts_of(node_id: str, nodes: dict[str, Node], artifacts: dict[str, str]) -> list[tuple[str, str]]:
    """(producing node, artifact) of each value a node's value consists of (a map's are its items')."""
    node = nodes[node_id]
    if node.kind == "map":
        return [pair for child in node.deps for pair in _artifacts_of(child, nodes, artifacts)]
    artifact_id = artifacts.get(node_id)
    return [(node_id, artifact_id)] if artifact_id else []


def _absolute(value: Any) -> tuple[Any, bool]:
    """``value`` with each ``fk.File`` in it (in lists, tuples, dict values) made absolute; whether it had one."""
    kind = type(value)
    if kind is File:
        return File(os.path.abspath(value.path)), True
    if kind is list or kind is tuple or kind is dict:
        pairs = value.items() if kind is dict else enumerate(value)
        done = [(k, *_absolute(v)) for k, v in pairs]
        if any(found for _, _, found in done):
            items = [v for _, v, _ in done]
            return ({k: v for k, v, _ in done} if kind is dict else kind(items)), True
    return value, False


def _shown(value: Any) -> str:
    """A constant as lineage shows it; an ``fk.File`` by its absolute path, whatever the working folder was."""
    if type(value) is Nested:
        absolute, found = _absolute(value.value)
        if found:  # whole, so that the paths can be read back (OpenLineage's file datasets)
            return short_repr(Nested(absolute), 20_000)
    return short_repr(value)


def lineage_rows(run_id: str, node: Node, nodes: dict[str, Node], artifacts: dict[str, str],
                 inputs: Any = None, params: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
    """What a task run consumed: the artifacts behind each upstream slot, and each constant argument.

    An artifact input names the node of this run that produced it (for a map, the item), so
    lineage follows this run's own task runs rather than whichever run first made those bytes.
    The constants' rows are :func:`param_rows`' (``params``, when they were made already).
    """
    rows: list[tuple[Any, ...]] = []
    node_id = node.id
    for position, dep in enumerate(node.deps):
        if nodes[dep].kind != "map":  # `_artifacts_of`, inlined for the common case
            artifact_id = artifacts.get(dep)
            if artifact_id:
                rows.append((run_id, node_id, position, "artifact", artifact_id, dep, None, None))
            continue
        for producer, artifact_id in _artifacts_of(dep, nodes, artifacts):
            rows.append((run_id, node_id, position, "artifact", artifact_id, producer, None, None))
    if params is None:
        params = param_rows(run_id, node, inputs)
    if params:
        rows += params
    return rows


def settled_constants(node: Node) -> bool:
    """Whether the lineage rows of ``node``'s constants read the same at any time: slots and scalars only.

    Other constants (an ``fk.File``, a list, an object) may read otherwise once a later task
    has run: the file rewritten, the list changed.
    """
    args, kwargs = node.spelling()
    return set(map(type, args)) <= _SETTLED and (not kwargs or set(map(type, kwargs.values())) <= _SETTLED)


_SETTLED = _SCALARS | {Slot}  # a scalar is immutable: it reads the same whenever its row is made


def param_rows(run_id: str, node: Node, inputs: Any = None) -> list[tuple[Any, ...]]:
    """The lineage rows of a task run's constant arguments: each one's name, token and how it reads.

    ``inputs`` (the run's store) resolves run-time inputs such as ``fk.File``, as in the key: so
    they are made as the task run ends, before a later task can change the file. A file is shown
    by its absolute path (``Nested(File('/data/raw.csv'))``).
    """
    args, kwargs = node.canon if node.canon is not None else (node.args, node.kwargs)  # as in its key
    constants = [(i, v) for i, v in enumerate(args) if type(v) is not Slot]
    if kwargs:
        constants += [(k, v) for k, v in kwargs.items() if type(v) is not Slot]
    if not constants:
        return []
    names = list(node.task.signature.parameters)
    rows: list[tuple[Any, ...]] = []
    for where, value in constants:
        name = where if isinstance(where, str) else (names[where] if where < len(names) else f"#{where}")
        rows.append((run_id, node.id, None, "param", None, name, value_token(value, inputs), _shown(value)))
    return rows


class Recorder:
    """Buffers the records of one run and writes them to the store in batches."""

    def __init__(self, store: Store, run_id: str, clock: Clock, *, flush_every: float = 0.5,
                 max_rows: int = 20000, hand_over: int = 1024) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock
        self.flush_every = flush_every
        self.max_rows = max_rows
        # Task runs after which an idle writer gets what there is. Each batch costs the run a few GIL
        # hand-overs, whatever its size, and its end waits for the last one: 1024 cost a cold no-op
        # chain about 2 µs a task less than 256 (or 512), 2048 and 4096 no less or more.
        self.hand_over_every = hand_over
        # Every 64 task runs a busy writer gets the GIL (BatchWriter.make_way): each time costs the run
        # a sleep(0), about 60 µs here (the kernel's timer slack); every 16 cost 1.5-2 µs a task more.
        self.make_way_mask = 63
        self.batch = Batch()
        self.writer = BatchWriter(store.db)
        self._seq = 0
        self._handed = 0  # self._seq when rows last went to the writer
        self._artifacts: set[str] = set()  # artifacts recorded by this run: one row each, however many made them
        self._computed: set[str] = set()  # nodes a task run of this run completed (see _own_inputs)
        self._last_flush = clock.monotonic()

    def on_event(self, event: RunEvent) -> None:
        """Record what an event says (see :mod:`flowkit.events`)."""
        kind = type(event)
        if kind is TaskFinished:
            tr = event[0]
            if tr.status == "cached" and tr.started is None:  # most of a rerun: the narrow row, here
                self._seq += 1
                self.batch.cached.append((tr.run_id, tr.node, self._seq, tr.name, tr.cache_key, tr.artifact_id,
                                          tr.source))
                return
            self.task_run(*event)
        elif kind is TasksCached:
            seq = self._seq
            self.batch.cached.extend((tr.run_id, tr.node, seq + i, tr.name, tr.cache_key, tr.artifact_id, tr.source)
                                     for i, tr in enumerate(event.task_runs, 1))  # type: ignore[union-attr]
            self._seq = seq + len(event.task_runs)  # type: ignore[union-attr]
            if self._seq - self._handed >= self.hand_over_every and self.writer.idle:
                self.hand_over()  # written while the run makes the next ones
        elif kind is CacheAdopted:
            self.adopt(event.key, event.hit, event.content, event.task)  # type: ignore[union-attr]
        elif kind is CacheForgotten:
            self.forget(event.key, event.damaged)  # type: ignore[union-attr]
        elif kind is RunStarted:
            self.start(*event[1:])
        elif kind is RunFinished:
            run = event.run  # type: ignore[union-attr]
            self.finish(run.status, run.ended or 0.0, mask(str(run.error)) if run.error is not None else None)

    def start(self, flow: str, params: dict[str, Any], started: float, trigger: str, salt: str,
              context: dict[str, Any]) -> None:
        me = owner.current()  # so that readers can tell this run from one whose process died
        row = {"id": self.run_id, "flow": flow, "status": "running", "params": json_params(params),
               "started": started, "trigger": trigger, "cache_salt": salt, **context,
               "owner_pid": me.pid, "owner_start": me.start, "heartbeat": started}
        row.setdefault("host", me.host)
        if "trigger_reason" in row:
            row["trigger_reason"] = json.dumps(row["trigger_reason"])
        self.store.db.start_run(row)

    def task_run(self, tr: TaskRun, info: ArtifactInfo | None = None, inputs: list[tuple[Any, ...]] = (),
                 cache: bool = False, salted: bool = False, expires: float | None = None,
                 content: str | None = None) -> None:
        """Record one finished task run, its artifact and cache entry and what it consumed.

        ``salted`` marks the cache entry of a ``cache=False`` task: only ``resume=`` of this
        run can use it, so it expires with the run's history. ``expires`` is when the entry
        goes stale because something upstream of it had a ``cache_ttl`` (the task's own ttl is
        applied when the entry is looked up). ``content`` is the entry's content key (early cutoff).
        """
        batch = self.batch
        self._seq += 1
        error, traceback = tr.error, tr.traceback
        if _secrets._ordered:  # a known secret's value in an exception's text (the logs are masked as captured)
            error, traceback = mask(error), mask(traceback)
        column = None
        if inputs and inputs[0][3] == "artifact":
            column, inputs = self._own_inputs(inputs)
        batch.task_runs.append((tr.run_id, tr.node, self._seq, tr.name, tr.status, tr.attempts, tr.started,
                                tr.ended, tr.cache_key, tr.artifact_id, error, traceback, tr.worker, tr.logs,
                                tr.source, column))
        if tr.status == "completed":
            self._computed.add(tr.node)
        if info is not None:
            digest = info.digest
            if digest not in self._artifacts:
                self._artifacts.add(digest)
                desc = info.description
                columns = desc.get("columns")
                batch.artifacts.append((digest, info.uri, info.serializer, desc["type"], info.size,
                                        json.dumps(columns) if columns is not None else None,
                                        json.dumps(desc["dtypes"]) if columns is not None else None,
                                        desc.get("rows"), tr.ended, info.inline, desc.get("versions")))
            if cache and tr.cache_key is not None:
                batch.cache.append((tr.cache_key, info.digest, tr.name, tr.id, tr.ended, tr.run_id, salted, expires,
                                    content))
        if len(tr.history) > 1 or tr.status == "failed":
            batch.attempts.extend((tr.run_id, tr.node, a.number, a.started, a.ended, mask(a.error)) for a in tr.history)
        if inputs:
            batch.inputs.extend(inputs)
        if tr.tracked:
            self.tracked(tr)
        if tr.checks:
            self.checked(tr)
        # Batch fast tasks, but never let a slow task's result wait: it is committed before the run
        # goes on. Fast ones go to the writer's thread in batches; if the process dies, at most what
        # the writer had not committed is lost and recomputed.
        seq = self._seq
        if tr.started is not None and tr.ended is not None and tr.ended - tr.started >= self.flush_every / 10:
            self.flush()
        elif (seq - self._handed >= self.hand_over_every and self.writer.idle) or (
                self.clock.monotonic() - self._last_flush >= self.flush_every) or (
                not seq & 255 and len(batch) >= self.max_rows):
            self.hand_over()
        elif not seq & self.make_way_mask:
            self.writer.make_way()

    def _own_inputs(self, inputs: list[tuple[Any, ...]]) -> tuple[str | None, list[tuple[Any, ...]]]:
        """The ``inputs`` column of a task run whose artifact inputs were all computed in this run, and the rest.

        Their artifacts are their producers' task runs' (rows of the same transaction or an
        earlier one), so one column says what a row per input said. An input from another
        run (a cached value) keeps every artifact input of the task run in rows.
        """
        computed = self._computed
        pairs = []
        for row in inputs:  # artifact rows come first (lineage_rows)
            if row[3] != "artifact":
                break
            if row[5] not in computed:
                return None, inputs
            pairs.append(row[2:6:3])  # (position, producing node)
        count = len(pairs)
        return inputs_column(pairs), inputs[count:] if count < len(inputs) else []

    def tracked(self, tr: TaskRun) -> None:
        """The metrics (a number each), params and tags (JSON text) the task logged."""
        rows = self.batch.tracked
        for seq, t in enumerate(tr.tracked):
            if t.kind == "metric":
                rows.append((tr.run_id, tr.node, seq, "metric", t.name, t.step, t.value, None, t.time))
            else:
                rows.append((tr.run_id, tr.node, seq, t.kind, t.name, None, None, _json_value(t.value), t.time))

    def checked(self, tr: TaskRun) -> None:
        """The results of the task's checks, on the artifact they checked (none when a check failed)."""
        rows = self.batch.checks
        for seq, c in enumerate(tr.checks):
            rows.append((tr.run_id, tr.node, seq, c.check, c.passed, c.severity, _json_value(c.observed),
                         _json_value(c.threshold), c.baseline, mask(c.message), _json_value(c.sample), tr.artifact_id))

    def adopt(self, key: str, hit: CacheHit, content: str, task: str) -> None:
        """File an entry found by content under the node's own key too, so the next run finds it by key."""
        self.batch.cache.append((key, hit.artifact_id, task, hit.task_run_id, hit.created, self.run_id, False,
                                 hit.expires, content))

    def forget(self, key: str, artifact_id: str | None = None) -> None:
        """Forget a cache entry whose value could not be loaded (and mark damaged bytes removed)."""
        self.batch.uncache.append(key)
        if artifact_id is not None:
            self.batch.forget_artifacts.append((self.clock.time(), artifact_id))
            self._artifacts.discard(artifact_id)  # bytes made again revive its record
        self.flush()

    def hand_over(self) -> None:
        """Give the rows gathered so far to the writer's thread (see :mod:`flowkit.store.writer`)."""
        batch = self.batch
        batch.heartbeat = (self.clock.time(), self.run_id)
        self._sign(batch)
        self.batch = Batch()
        self._handed = self._seq
        self._last_flush = self.clock.monotonic()
        try:
            self.writer.submit(batch)
        except BaseException:
            self._take_back(batch)
            raise
        self.writer.make_way()  # the writer wakes and takes the batch now, not at the next switch interval

    def flush(self) -> None:
        """Commit every record so far before returning (after what the writer holds).

        While the writer's thread runs, it commits them, and reports them before it
        checkpoints; otherwise (a run too small to start it, or slow enough that it ended
        idle) this thread does.
        """
        batch = self.batch
        batch.heartbeat = (self.clock.time(), self.run_id)
        self._sign(batch)
        by_writer = self.writer.running
        try:
            if by_writer:
                self.batch = Batch()
                self.writer.submit(batch)
            self.writer.drain()
        except BaseException:
            self._take_back(batch)
            raise
        if not by_writer:
            self.store.db.flush(batch)
        self._handed = self._seq
        self._last_flush = self.clock.monotonic()

    def _sign(self, batch: Batch) -> None:
        """With signing on, add the signatures of the batch's artifacts and cache entries, as it leaves."""
        signer = self.store.signer
        if signer is not None:
            signer.sign(batch)  # a batch taken back after a failed write is signed again: the same values

    def _take_back(self, batch: Batch) -> None:
        """After a failed or interrupted hand-over: the rows the writer could not write, and ``batch``'s.

        ``batch`` was being handed over; the writer may hold it already (a Ctrl-C just after
        it was queued): then it is not taken back twice, and what the run records next goes
        in a batch of its own.
        """
        held = self.writer.holds(batch)
        if not self.writer.failed:  # interrupted (Ctrl-C): what the writer holds stays its own
            if not held:
                self.batch = batch
            return
        _, failed = self.writer.take_failure()  # with what was queued after it: ``batch`` too, if held
        parts = [part for part in (failed, None if held else batch) if part is not None]
        self.batch = merge(parts) if parts else Batch()

    def finish(self, status: str, ended: float, error: str | None) -> None:
        error = mask(error)
        self.batch.run_end = (status, ended, error, self.run_id)
        try:
            self.flush()
        except StoreError as exc:
            # The store refused the last records (a full disk): record at least how the run ended,
            # which a one-row update may still manage, so it does not read as running or crashed.
            lost = len(self.batch)
            self.batch.clear()
            note = f"({lost} records of this run could not be written; what was committed before is kept)"
            cause = error if error and str(exc) in error else "; ".join(filter(None, (error, str(exc))))
            with contextlib.suppress(StoreError):
                self.store.db.end_run(self.run_id, "failed" if status == "completed" else status, ended,
                                      f"{cause} {note}")
            raise
        finally:
            self.writer.close()
