"""The prediction log part of the metadata protocol: what a model service answered, request by request.

``flowkit serve`` appends one :class:`PredictionRow` per answered ``/predict``
request: the model and version that answered, when, the request's id, its
input records and its outputs (both JSON text). Rows are written in batches by
a thread of the service (:mod:`flowkit.ml.prediction_log`), never by the
request itself; the monitoring flow reads them back with
``fk.registry.predictions``.

Rules a backend keeps (``tests/contracts/test_prediction_store.py`` checks them):

- a batch is written whole or not at all (one transaction);
- rows come back in the order they were written, filtered by model, version
  and time (``since`` inclusive, ``until`` exclusive).

Times are epoch seconds passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

__all__ = ["PredictionRow", "PredictionStore"]


class PredictionRow(NamedTuple):
    """One answered request: ``inputs`` is a JSON list of records, ``outputs`` a JSON object
    (``{"predictions": [...]}``, with ``"probabilities"`` when the model gives them)."""

    model: str
    version: int
    time: float
    request_id: str
    inputs: str
    outputs: str


class PredictionStore(Protocol):
    """What a metadata store offers the prediction log (part of :class:`~flowkit.store.protocols.MetadataStore`)."""

    def add_predictions(self, rows: Sequence[PredictionRow]) -> None:
        """Append these rows in one transaction."""
        ...

    def predictions(self, model: str, since: float | None = None, until: float | None = None,
                    version: int | None = None) -> list[PredictionRow]:
        """The rows of a model (of one version, if given) with ``since <= time < until``, oldest first."""
        ...
