"""The browsing part of the metadata protocol: a page of runs, their counts, a run's edges.

What a web view over many runs needs without reading them all: one page of runs
under filters (``LIMIT``/``OFFSET`` over the ``started`` indexes), how many runs
each status has under the same filters, how many task runs of each status the
runs of a page have, and the edges between a run's task runs (from what each
consumed; a ``cached`` task run shows the edges of the task run that computed it),
and the task runs that consumed an artifact (its lineage downstream).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flowkit.store.protocols import RunRecord

__all__ = ["BrowseStore"]


class BrowseStore(Protocol):
    """What a metadata store offers for browsing (part of :class:`~flowkit.store.protocols.MetadataStore`)."""

    def run_page(self, *, flow: str | None = None, status: str | None = None, trigger: str | None = None,
                 limit: int = 50, offset: int = 0, since: float | None = None,
                 until: float | None = None) -> list[RunRecord]:
        """At most ``limit`` runs matching the filters (each ``None``: any), newest first, after skipping ``offset``.

        ``since``/``until``: started at or after / before these epoch seconds.

        The order is that of :meth:`~flowkit.store.protocols.MetadataStore.runs`; ``status`` is the
        recorded status.
        """
        ...

    def run_status_counts(self, *, flow: str | None = None, trigger: str | None = None, since: float | None = None,
                          until: float | None = None) -> dict[str, int]:
        """How many runs matching the filters are recorded in each status."""
        ...

    def run_flows(self) -> list[str]:
        """The names of the flows that have runs, sorted."""
        ...

    def task_run_counts(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """For each of these runs that has task runs: how many are in each status."""
        ...

    def run_edges(self, run_id: str) -> list[tuple[str, str]]:
        """(upstream node, node) pairs between the task runs of a run, without repeats.

        A task run's edges come from the artifacts it consumed; a ``cached`` one, which
        consumed nothing, shows those of the task run that computed its value (node ids
        are stable across runs). Only edges whose two ends are task runs of this run.
        """
        ...

    def artifact_consumers(self, artifact_id: str) -> list[tuple[str, str]]:
        """(run id, node) of every task run that consumed this artifact as an input, without repeats.

        Oldest run first (then node). A ``cached`` task run consumed nothing: it is not listed.
        """
        ...
