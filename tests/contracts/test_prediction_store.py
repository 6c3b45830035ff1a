"""The contract every metadata backend keeps for the prediction log: batches written whole, rows back in
the order written, filtered by model, version and time (``since`` inclusive, ``until`` exclusive)."""

from __future__ import annotations

import pytest

from backends import metadata_backend, metadata_url  # noqa: F401 - fixtures
from flowkit.store import open_store
from flowkit.store.migrations import migrations
from flowkit.store.predictions import PredictionRow


def row(model: str = "churn", version: int = 1, time: float = 100.0, request_id: str = "r1") -> PredictionRow:
    return PredictionRow(model, version, time, request_id, '[{"age": 41}]', '{"predictions": [1]}')


def test_the_prediction_table_is_migrated_when_the_store_opens(metadata_url):
    db = open_store(metadata_url)
    assert db.schema_version("predictions") == len(migrations("predictions", db.dialect)) > 0


def test_rows_come_back_in_order_filtered_by_model_version_and_time(metadata_url):
    db = open_store(metadata_url)
    db.add_predictions([row(time=300.0, request_id="late"), row(time=100.0, request_id="early"),
                        row(version=2, time=200.0, request_id="v2"), row(model="fraud", request_id="other")])
    db.add_predictions([])
    assert [r.request_id for r in db.predictions("churn")] == ["late", "early", "v2"]
    assert db.predictions("churn")[0] == row(time=300.0, request_id="late")
    assert [r.request_id for r in db.predictions("churn", since=100.0, until=300.0)] == ["early", "v2"]
    assert [r.request_id for r in db.predictions("churn", version=2)] == ["v2"]
    assert db.predictions("nobody") == []


def test_a_batch_is_written_whole_or_not_at_all(metadata_url):
    db = open_store(metadata_url)
    with pytest.raises(Exception):
        db.add_predictions([row(request_id="kept?"), row(request_id=None)])  # type: ignore[arg-type]
    assert db.predictions("churn") == []
