"""The tracking part of the metadata protocol: metrics, params, tags and check results.

A task logs metrics, params and tags (``fk.log_metric``...) and its checks
produce results; both come back with the task's record and are written in the
same :class:`~flowkit.store.protocols.Batch` as its task run (:class:`TrackedRow`,
:class:`CheckRow`), so they cost no round trip of their own.

Read back per run, a ``cached`` task run shows the entries of the task run that
computed its value (``source`` names it), so a cached rerun still has every
metric and check of its tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

__all__ = ["CheckRecord", "CheckRow", "TaggedTaskRun", "TrackedRecord", "TrackedRow", "TrackingStore"]


class TrackedRow(NamedTuple):
    """A metric (``value``), param or tag (``text``: JSON) as written by a batch."""

    run_id: str
    node: str
    seq: int
    kind: str
    name: str
    step: int | None
    value: float | None
    text: str | None
    time: float


class CheckRow(NamedTuple):
    """A check result as written by a batch (``observed``, ``threshold`` and ``sample`` as JSON)."""

    run_id: str
    node: str
    seq: int
    check: str
    passed: bool
    severity: str
    observed: str | None
    threshold: str | None
    baseline: str | None
    message: str | None
    sample: str | None
    artifact_id: str | None


class TrackedRecord(NamedTuple):
    """A metric, param or tag of a run's task run, as read back.

    ``source`` is the task run that logged it when that is not this one (a ``cached``
    task run shows what its value's task run logged); ``value`` is a float for a
    metric and the decoded JSON value for a param or tag.
    """

    run_id: str
    node: str
    task: str
    kind: str
    name: str
    step: int | None
    value: Any
    time: float
    source: str | None


class CheckRecord(NamedTuple):
    """A check result of a run's task run, as read back (``source`` as in :class:`TrackedRecord`)."""

    run_id: str
    node: str
    task: str
    check: str
    passed: bool
    severity: str
    observed: Any
    threshold: Any
    baseline: str | None
    message: str | None
    sample: Any
    artifact_id: str | None
    source: str | None


class TaggedTaskRun(NamedTuple):
    """A task run, in any run, that carries a given tag (its own or, when ``cached``, its source's).

    ``started`` is when its run started; ``artifact_id`` is its value (``None`` when it failed).
    """

    run_id: str
    node: str
    task: str
    status: str
    started: float | None
    artifact_id: str | None


class TrackingStore(Protocol):
    """What a metadata store offers for tracking (part of :class:`~flowkit.store.protocols.MetadataStore`)."""

    def tracked(self, run_ids: Sequence[str], kind: str | None = None) -> list[TrackedRecord]:
        """The metrics, params and tags of these runs' task runs (``kind`` narrows to one), in logging order."""
        ...

    def check_results(self, run_ids: Sequence[str]) -> list[CheckRecord]:
        """The check results of these runs' task runs, in order."""
        ...

    def tagged(self, name: str, value: str) -> list[TaggedTaskRun]:
        """Every task run tagged ``name`` = ``value`` (``fk.set_tag``), oldest run first.

        A ``cached`` task run carries the tags of the task run that computed its value, so a
        rerun served from the cache is found too.
        """
        ...
