"""The prediction log: what a model service answered, written off the request path, read back as a DataFrame.

::

    log = PredictionLog(store)             # starts its writer thread
    log.append("churn", 3, time.time(), request_id, records, {"predictions": [...]})   # never blocks
    log.close()                            # writes everything still queued, then stops
    fk.registry.predictions("churn", since=datetime(2026, 11, 1))   # the monitoring flow's input

:meth:`PredictionLog.append` puts the request's Python objects on a bounded
queue and returns; a writer thread (with its own connection to the store)
encodes them as JSON and appends them in batches, one transaction per batch,
as fast as the store takes them: under load a batch grows, idle the log is
written within milliseconds. When the queue is full (the store is slower than
the traffic, or locked for longer than its busy timeout), the request is not
held up: the entry is dropped and counted, and ``/health`` shows the count. A
batch the store refuses is counted the same way, with the error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import numbers
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowkit.store import Store
from flowkit.store.predictions import PredictionRow

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PredictionLog", "predictions"]

logger = logging.getLogger("flowkit.serve")

_STOP = object()


class PredictionLog:
    """A bounded, batched, non-blocking writer of prediction rows into ``store``.

    Args:
        store: where the rows go (its metadata store's ``add_predictions``).
        max_queue: entries (requests) that may wait to be written; beyond it they are dropped and counted.
        max_batch: entries written per transaction at most.
    """

    def __init__(self, store: Store, *, max_queue: int = 10_000, max_batch: int = 500) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="flowkit-prediction-log", daemon=True)
        self._thread.start()

    def append(self, model: str, version: int, time: float, request_id: str, inputs: Any, outputs: Any) -> bool:
        """Queue one answered request (its objects are encoded later: do not change them); ``False`` if dropped."""
        try:
            self._queue.put_nowait((model, version, time, request_id, inputs, outputs))
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False

    @property
    def pending(self) -> int:
        """Entries queued and not yet written."""
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        """Written, dropped and pending entries, and the last write error (for ``/health``)."""
        return {"written": self.written, "dropped": self.dropped, "pending": self.pending,
                "last_error": self.last_error}

    def close(self, timeout: float = 60.0) -> None:
        """Write every entry still queued, then stop the writer (waits up to ``timeout`` seconds)."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)  # blocks only while the queue is full, as the writer empties it
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("the prediction log did not finish writing within %.0f s; %d entries may be lost",
                         timeout, self.pending)

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is _STOP or _STOP in batch:
                stopping = True
                batch = [e for e in batch if e is not _STOP]
                while True:  # what was queued before the stop is written too
                    try:
                        entry = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if entry is not _STOP:
                        batch.append(entry)
            for start in range(0, len(batch), self.max_batch):
                self._write(batch[start:start + self.max_batch])
        self.store.db.close()  # this thread's connection

    def _write(self, batch: Sequence[tuple[Any, ...]]) -> None:
        if not batch:
            return
        try:
            rows = [PredictionRow(m, v, t, r, json.dumps(i, default=_jsonable), json.dumps(o, default=_jsonable))
                    for m, v, t, r, i, o in batch]
            self.store.db.add_predictions(rows)
        except Exception as exc:  # noqa: BLE001 - the service keeps answering; /health shows the loss
            with self._lock:
                self.dropped += len(batch)
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.error("could not write %d prediction log entries: %s", len(batch), self.last_error)
            return
        self.written += len(batch)


def _jsonable(value: Any) -> Any:
    """What JSON cannot hold as is: numpy scalars and arrays become numbers and lists, the rest its repr."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, numbers.Number):
        return float(value)  # type: ignore[arg-type]
    return repr(value)


def _per_record(values: Any) -> list[Any] | None:
    return values if isinstance(values, list) else None


def _at(values: list[Any] | None, i: int) -> Any:
    """The ``i``-th output, or ``None``: a row written with fewer outputs than records (a server before
    the output check logged a DataFrame model's column names, say) reads back with gaps, not an error."""
    return values[i] if values is not None and i < len(values) else None


def _epoch(value: dt.datetime | float | None, what: str) -> float | None:
    from flowkit.ml.registry import epoch

    return epoch(value, what)


def predictions(name: str, since: dt.datetime | float | None = None, until: dt.datetime | float | None = None,
                *, version: int | None = None, store: Store | None = None) -> pd.DataFrame:
    """What ``flowkit serve`` answered for model ``name``: one row per input record, oldest first.

    Columns: one per input column (as the records were sent), then ``prediction``,
    ``probabilities`` (when the model gave them: a list per row), ``version`` (the
    version that answered), ``time`` (a UTC timestamp of the request) and
    ``request_id``. ``since`` is inclusive, ``until`` exclusive (datetimes or epoch
    seconds); ``version`` keeps one version's answers. A logged request with fewer
    predictions (or probabilities) than records gets ``None`` for the records without one.
    """
    import pandas as pd

    db = (store if store is not None else Store.open()).db
    rows = db.predictions(name, _epoch(since, "since"), _epoch(until, "until"), version)
    records: list[dict[str, Any]] = []
    extra: dict[str, list[Any]] = {"prediction": [], "probabilities": [], "version": [], "time": [],
                                   "request_id": []}
    with_probabilities = False
    for row in rows:
        inputs, outputs = json.loads(row.inputs), json.loads(row.outputs)
        outputs = outputs if isinstance(outputs, dict) else {}
        predicted = _per_record(outputs.get("predictions"))
        probabilities = _per_record(outputs.get("probabilities"))
        with_probabilities = with_probabilities or probabilities is not None
        for i, record in enumerate(inputs if isinstance(inputs, list) else ()):
            records.append(record if isinstance(record, dict) else {})
            extra["prediction"].append(_at(predicted, i))
            extra["probabilities"].append(_at(probabilities, i))
            extra["version"].append(row.version)
            extra["time"].append(row.time)
            extra["request_id"].append(row.request_id)
    if not with_probabilities:
        del extra["probabilities"]
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    named = {}  # an input column called "prediction" or "time" keeps its name: the log's own gets a "_"
    for column, values in extra.items():
        named[column] = column if column not in frame.columns else f"{column}_"
        frame[named[column]] = values
    frame[named["version"]] = frame[named["version"]].astype("int64")
    frame[named["time"]] = pd.to_datetime(frame[named["time"]].astype(float), unit="s", utc=True)
    return frame
