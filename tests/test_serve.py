"""``fk.serve`` / ``flowkit serve``: predictions over HTTP, the hot alias switch, bad input, the prediction log.

The many request cases run in process against the real app with Starlette's
TestClient (its lifespan runs, so the prediction log is a real writer thread
into a real SQLite store). The service itself runs as a real uvicorn process on
127.0.0.1, started and stopped (SIGTERM) by the tests, with the alias moved
under load from this process.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import flowkit as fk
from flowkit.cli import main
from flowkit.ml.prediction_log import PredictionLog
from flowkit.ml.serve import create_app
from flowkit.store import Store

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["age", "income", "tenure"]


def training_frame(rows: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.DataFrame({"age": [20 + i % 50 for i in range(rows)],
                          "income": [1000.0 + 37.5 * (i % 17) for i in range(rows)],
                          "tenure": [i % 11 for i in range(rows)]})
    return frame, (frame["age"] + frame["tenure"] > 45).astype(int)


def register(store: Store, C: float = 1.0, aliases: tuple[str, ...] = ()) -> fk.registry.ModelVersion:
    x, y = training_frame()
    model = LogisticRegression(C=C, max_iter=500).fit(x, y)
    return fk.registry.register("churn", model, aliases=aliases, input_example=x.head(), store=store)


RECORD = {"age": 61, "income": 1500.0, "tenure": 9}


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "home")
    register(store, aliases=("production",))
    return store


@pytest.fixture
def client(store):
    with TestClient(create_app("churn@production", store=store, poll_interval=None)) as c:
        yield c


# --- in process: answers -------------------------------------------------------------------------

def test_predict_answers_with_predictions_probabilities_and_the_version(client, store):
    response = client.post("/predict", json={"records": [RECORD, {**RECORD, "age": 20, "tenure": 0}]})
    assert response.status_code == 200, response.text
    body = response.json()
    model = fk.registry.load("churn:1", store=store)
    frame = pd.DataFrame([RECORD, {**RECORD, "age": 20, "tenure": 0}])
    assert body["predictions"] == model.predict(frame).tolist() == [1, 0]
    assert sum(body["probabilities"], []) == pytest.approx(model.predict_proba(frame).ravel().tolist())
    assert body["model"] == {"name": "churn", "version": 1}
    assert response.headers["x-request-id"] == body["request_id"]
    bare = client.post("/predict", json=[RECORD])  # a bare list of records
    assert bare.status_code == 200 and bare.json()["predictions"] == [1]


def test_health_and_model_describe_what_is_served(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == {"name": "churn", "version": 1}
    described = client.get("/model").json()
    assert (described["name"], described["version"], described["alias"]) == ("churn", 1, "production")
    assert described["signature"] == {"inputs": [{"name": "age", "dtype": "int64"},
                                                 {"name": "income", "dtype": "float64"},
                                                 {"name": "tenure", "dtype": "int64"}]}


def test_columns_are_taken_in_the_signature_order_and_cast_to_its_dtypes(client):
    shuffled = {"tenure": 9, "income": 1500, "age": 61.0, "extra": "ignored"}  # ints for a float, floats for ints
    response = client.post("/predict", json={"records": [shuffled]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [1]


def test_every_answer_is_in_the_prediction_log_after_shutdown(store):
    app = create_app("churn@production", store=store, poll_interval=None)
    with TestClient(app) as c:
        ids = [c.post("/predict", json={"records": [{**RECORD, "age": 20 + i}] * 2},
                      headers={"x-request-id": f"req-{i}"}).json()["request_id"] for i in range(5)]
        assert c.post("/predict", json={"records": [{"age": 1}]}).status_code == 422  # refused: not logged
    logged = fk.registry.predictions("churn", store=store)
    assert list(logged.columns) == COLUMNS + ["prediction", "probabilities", "version", "time", "request_id"]
    assert len(logged) == 10 and list(dict.fromkeys(logged["request_id"])) == ids == [f"req-{i}" for i in range(5)]
    assert logged["age"].tolist() == [20 + i for i in range(5) for _ in range(2)]
    assert set(logged["version"]) == {1} and str(logged["time"].dt.tz) == "UTC"
    later = fk.registry.predictions("churn", since=time.time() + 60, store=store)
    assert later.empty and list(later.columns)[-3:] == ["version", "time", "request_id"]


def test_the_log_is_read_back_by_time_and_version(store):
    clock = fk.ManualClock(1_000.0)
    app = create_app("churn@production", store=store, poll_interval=None, clock=clock)
    with TestClient(app) as c:
        for age in (30, 40, 50):
            assert c.post("/predict", json=[{**RECORD, "age": age}]).status_code == 200
            clock.advance(10)
    assert fk.registry.predictions("churn", since=1_010.0, until=1_020.0, store=store)["age"].tolist() == [40]
    assert len(fk.registry.predictions("churn", since=1_010.0, store=store)) == 2
    assert fk.registry.predictions("churn", version=2, store=store).empty


# --- in process: bad input -----------------------------------------------------------------------

def test_malformed_json_is_a_400(client):
    response = client.post("/predict", content=b'{"records": [', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "MalformedJSON"


@pytest.mark.parametrize("payload, column, words", [
    ({"records": [{"age": 61, "income": 1.0}]}, "tenure", "record 0 has no column 'tenure'"),
    ({"records": [RECORD, {**RECORD, "income": "lots"}]}, "income", "column 'income' must be a number"),
    ({"records": [{**RECORD, "age": 6.5}]}, "age", "column 'age' must be a whole number"),
    ({"records": [{**RECORD, "age": None}]}, "age", "whole number"),
    ({"records": [{**RECORD, "tenure": [1]}]}, "tenure", "(a list)"),
])
def test_a_missing_or_mistyped_column_is_a_422_naming_it(client, payload, column, words):
    response = client.post("/predict", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["column"] == column and words in body["detail"], body


@pytest.mark.parametrize("payload", [{"rows": [RECORD]}, {"records": []}, [], "text", [1, 2], {"records": RECORD}])
def test_a_body_that_is_not_records_is_a_422_saying_what_to_send(client, payload):
    response = client.post("/predict", json=payload)
    assert response.status_code == 422 and '"records"' in response.json()["detail"]


def test_a_body_over_the_limit_is_a_413_told_by_length_or_while_read(store):
    with TestClient(create_app("churn@production", store=store, poll_interval=None, max_body_bytes=1000)) as c:
        big = {"records": [RECORD] * 100}
        assert c.post("/predict", json=big).status_code == 413
        streamed = c.post("/predict", content=iter([json.dumps(big).encode()[i:i + 100] for i in range(0, 4000, 100)]))
        assert streamed.status_code == 413
        assert c.post("/predict", json={"records": [RECORD]}).status_code == 200


class Exploding:
    """A model whose predict raises."""

    def predict(self, frame):
        raise ArithmeticError("the model divided by zero")


def test_a_model_that_raises_is_a_500_naming_the_error_and_the_service_stays_up(tmp_path):
    store = Store.open(tmp_path)
    fk.registry.register("bad", Exploding(), aliases=["production"], store=store)
    with TestClient(create_app("bad@production", store=store, poll_interval=None), raise_server_exceptions=False) as c:
        for _ in range(3):
            response = c.post("/predict", json={"records": [{"x": 1}]})
            assert response.status_code == 500
            assert response.json()["error"] == "ArithmeticError" and "divided by zero" in response.json()["detail"]
        assert c.get("/health").status_code == 200


def test_an_alias_that_points_nowhere_is_a_503_until_it_does(tmp_path):
    store = Store.open(tmp_path)
    v1 = register(store)
    app = create_app("churn@production", store=store, poll_interval=None)
    with TestClient(app) as c:
        for path, method in (("/predict", c.post), ("/health", c.get), ("/model", c.get)):
            response = method(path, **({"json": {"records": [RECORD]}} if path == "/predict" else {}))
            said = response.json()["reason" if path == "/health" else "detail"]
            assert response.status_code == 503 and "no alias 'production'" in said, path
        fk.registry.promote("churn", v1.version, to="production", store=store)
        app.state.service.refresh()
        assert c.post("/predict", json=[RECORD]).json()["model"]["version"] == 1
        fk.registry.delete_alias("churn", "production", store=store)
        app.state.service.refresh()
        assert c.post("/predict", json=[RECORD]).status_code == 503


def test_a_token_guards_predict_and_model_not_health(store):
    with TestClient(create_app("churn@production", store=store, poll_interval=None, token="s3cret")) as c:
        assert c.post("/predict", json=[RECORD]).status_code == 401
        wrong = c.post("/predict", json=[RECORD], headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert c.get("/model").status_code == 401 and c.get("/health").status_code == 200
        ok = c.post("/predict", json=[RECORD], headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200


# --- in process: what models answer, and values at the edges -------------------------------------

class NumpyScalars:
    """predict gives a list of numpy scalars, predict_proba numpy floats with a NaN among them."""

    def predict(self, frame):
        return [np.int64(1) for _ in range(len(frame))]

    def predict_proba(self, frame):
        return [[np.float32(0.25), np.float32("nan")] for _ in range(len(frame))]


class Unserializable:
    def predict(self, frame):
        return [object() for _ in range(len(frame))]


def test_numpy_scalars_are_answered_as_numbers_and_logged(tmp_path):
    store = Store.open(tmp_path)
    fk.registry.register("np", NumpyScalars(), aliases=["production"], store=store)
    with TestClient(create_app("np@production", store=store, poll_interval=None)) as c:
        response = c.post("/predict", json={"records": [{"a": 1}, {"a": 2}]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [1, 1]
    assert response.json()["probabilities"] == [[0.25, None], [0.25, None]]
    assert fk.registry.predictions("np", store=store)["prediction"].tolist() == [1, 1]


def test_an_answer_json_cannot_hold_is_a_json_500_and_not_logged(tmp_path):
    store = Store.open(tmp_path)
    fk.registry.register("odd", Unserializable(), aliases=["production"], store=store)
    with TestClient(create_app("odd@production", store=store, poll_interval=None), raise_server_exceptions=False) as c:
        response = c.post("/predict", json={"records": [{"a": 1}]})
        assert response.status_code == 500 and response.headers["content-type"] == "application/json"
        assert response.json()["error"] == "UnserializableOutput" and "object" in response.json()["detail"]
        assert c.get("/health").status_code == 200
    assert fk.registry.predictions("odd", store=store).empty


class Seen:
    """Answers the values it was given, to show what the model received."""

    def predict(self, frame):
        return frame.iloc[:, 0].tolist()


@pytest.mark.parametrize("dtype, value, ok", [
    ("int64", 2**63 - 1, True), ("int64", -2**63, True), ("int64", 2**63, False), ("int64", 2**70, False),
    ("int64", -2**63 - 1, False), ("int64", 1e19, False), ("uint8", 255, True), ("uint8", 256, False),
    ("uint8", -1, False), ("int32", 2**31, False),
])
def test_an_integer_beyond_its_dtype_is_a_422_not_wrapped(tmp_path, dtype, value, ok):
    store = Store.open(tmp_path)
    fk.registry.register("m", Seen(), aliases=["production"], store=store,
                         input_example=pd.DataFrame({"age": pd.Series([1], dtype=dtype)}))
    with TestClient(create_app("m@production", store=store, poll_interval=None), raise_server_exceptions=False) as c:
        response = c.post("/predict", json={"records": [{"age": 1}, {"age": value}]})
    if ok:
        assert response.status_code == 200 and response.json()["predictions"] == [1, value], response.text
    else:
        body = response.json()
        assert response.status_code == 422 and body["column"] == "age" and body["record"] == 1, body
        assert "whole number from" in body["detail"] and dtype in body["detail"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_a_non_finite_number_is_a_422_naming_the_column(client, literal):
    body = b'{"records": [{"age": 61, "tenure": 9, "income": ' + literal + b'}]}'
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["column"] == "income" and response.json()["record"] == 0
    assert "must be a number (finite, or null)" in response.json()["detail"]


def test_a_float32_column_refuses_what_float32_cannot_hold(tmp_path):
    store = Store.open(tmp_path)
    fk.registry.register("m", Seen(), aliases=["production"], store=store,
                         input_example=pd.DataFrame({"x": pd.Series([1.0], dtype="float32")}))
    with TestClient(create_app("m@production", store=store, poll_interval=None)) as c:
        assert c.post("/predict", json=[{"x": 1.5}]).json()["predictions"] == [1.5]
        refused = c.post("/predict", json=[{"x": 1e39}])
        assert refused.status_code == 422 and refused.json()["column"] == "x"


class Outputs:
    """predict answers what ``kind`` says, for len(frame) records (or one short)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def predict(self, frame):
        n = len(frame)
        return {"frame1": lambda: pd.DataFrame({"label": [7] * n}),
                "frame2": lambda: pd.DataFrame({"label": [7] * n, "score": np.full(n, 0.5)}),
                "series": lambda: pd.Series(np.arange(n)),
                "array2d": lambda: np.ones((n, 2), dtype=np.int64),
                "short": lambda: np.zeros(n - 1),
                "scalar": lambda: np.float64(3.0)}[self.kind]()

    def predict_proba(self, frame):
        return pd.DataFrame({0: [0.25] * len(frame), 1: [0.75] * len(frame)})


@pytest.mark.parametrize("kind, predictions", [
    ("frame1", [7, 7, 7]),
    ("frame2", [{"label": 7, "score": 0.5}] * 3),
    ("series", [0, 1, 2]),
    ("array2d", [[1, 1]] * 3),
])
def test_frames_series_and_arrays_give_one_prediction_per_record(tmp_path, kind, predictions):
    store = Store.open(tmp_path)
    fk.registry.register("o", Outputs(kind), aliases=["production"], store=store)
    with TestClient(create_app("o@production", store=store, poll_interval=None)) as c:
        response = c.post("/predict", json={"records": [{"a": 1}, {"a": 2}, {"a": 3}]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == predictions
    assert response.json()["probabilities"] == [[0.25, 0.75]] * 3  # a probability frame: a list per record
    logged = fk.registry.predictions("o", store=store)
    assert logged["prediction"].tolist() == predictions and logged["a"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("kind, words", [("short", "returned 2 predictions for 3 records"),
                                         ("scalar", "not one per record (3 records)")])
def test_not_one_output_per_record_is_a_json_500_and_not_logged(tmp_path, kind, words):
    store = Store.open(tmp_path)
    fk.registry.register("o", Outputs(kind), aliases=["production"], store=store)
    with TestClient(create_app("o@production", store=store, poll_interval=None), raise_server_exceptions=False) as c:
        response = c.post("/predict", json={"records": [{"a": 1}, {"a": 2}, {"a": 3}]})
        assert response.status_code == 500 and response.json()["error"] == "BadModelOutput"
        assert words in response.json()["detail"], response.json()
    assert fk.registry.predictions("o", store=store).empty


def test_a_logged_row_with_fewer_outputs_than_records_reads_back_with_gaps(store):
    log = PredictionLog(store)
    log.append("old", 1, 1_000.0, "r1", [{"a": 1}, {"a": 2}, {"a": 3}], {"predictions": ["label"]})
    log.append("old", 1, 1_001.0, "r2", [{"a": 4}], {"predictions": [5], "probabilities": [[0.5, 0.5]]})
    log.close()
    logged = fk.registry.predictions("old", store=store)
    assert logged["prediction"].tolist() == ["label", None, None, 5]
    assert logged["probabilities"].tolist() == [None, None, None, [0.5, 0.5]]


@pytest.mark.parametrize("header, status", [
    ("bearer s3cret", 200), ("BEARER s3cret", 200), ("Bearer  s3cret", 200), ("Basic s3cret", 401),
    ("s3cret", 401), ("Bearer s3cre", 401), ("Bearer", 401),
])
def test_the_auth_scheme_is_case_insensitive_the_token_is_not(store, header, status):
    with TestClient(create_app("churn@production", store=store, poll_interval=None, token="s3cret")) as c:
        assert c.post("/predict", json=[RECORD], headers={"authorization": header}).status_code == status
        assert c.post("/predict", json=[RECORD], headers={"authorization": "Bearer S3CRET"}).status_code == 401


# --- in process: the switch ----------------------------------------------------------------------

GATE = threading.Event()
ENTERED = threading.Event()


class Gated:
    """A model that holds its predict until GATE is set (a request in flight during the switch)."""

    def __init__(self, answer: int) -> None:
        self.answer = answer

    def predict(self, frame):
        ENTERED.set()
        GATE.wait(30)
        return [self.answer] * len(frame)


def test_a_request_in_flight_finishes_on_the_old_version_and_the_next_gets_the_new(tmp_path):
    store = Store.open(tmp_path)
    fk.registry.register("gated", Gated(1), aliases=["production"], store=store)
    v2 = fk.registry.register("gated", Gated(2), store=store)
    GATE.clear(), ENTERED.clear()
    app = create_app("gated@production", store=store, poll_interval=None)
    with TestClient(app) as c:
        answers: list[dict] = []
        inflight = threading.Thread(target=lambda: answers.append(c.post("/predict", json=[{"x": 1}]).json()))
        inflight.start()
        assert ENTERED.wait(10)
        fk.registry.promote("gated", v2.version, to="production", store=store)
        assert app.state.service.refresh().version == 2  # swapped while the request is still inside predict
        GATE.set()
        inflight.join(10)
        assert answers[0]["model"]["version"] == 1 and answers[0]["predictions"] == [1]
        after = c.post("/predict", json=[{"x": 1}]).json()
        assert after["model"]["version"] == 2 and after["predictions"] == [2]
    assert fk.registry.predictions("gated", store=store)["version"].tolist() == [1, 2]


def test_the_poller_follows_the_alias_on_its_own(store):
    waits: list[float] = []
    moved = threading.Event()

    def wait(seconds: float) -> bool:  # the poller's clock: one tick per call, no sleeping
        waits.append(seconds)
        return moved.wait(10) and len(waits) > 1

    v2 = register(store, C=0.01)
    app = create_app("churn@production", store=store, poll_interval=0.5)
    app.state.service._wait = wait
    with TestClient(app) as c:
        assert c.get("/health").json()["model"]["version"] == 1
        fk.registry.promote("churn", v2.version, to="production", store=store)
        moved.set()
        deadline = time.monotonic() + 10
        while c.get("/health").json()["model"]["version"] != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.get("/model").json()["version"] == 2 and waits[0] == 0.5


# --- the prediction log under pressure ---------------------------------------------------------

def test_a_full_log_drops_and_counts_instead_of_blocking_then_writes_the_rest_on_close(store):
    holding, release = threading.Event(), threading.Event()

    def hold(conn):  # another writer holds the store's write lock: the log's writer waits on it
        holding.set()
        release.wait(30)

    holder = threading.Thread(target=store.db.write, args=(hold,))
    holder.start()
    assert holding.wait(10)
    log = PredictionLog(store, max_queue=3)
    try:
        started = time.monotonic()
        accepted = [log.append("churn", 1, 100.0 + i, f"r{i}", [RECORD], {"predictions": [i]}) for i in range(50)]
        assert time.monotonic() - started < 1  # appending never waited for the store
        assert log.dropped == accepted.count(False) >= 40 and log.stats()["dropped"] == log.dropped
    finally:
        release.set()
        holder.join()
    log.close()
    logged = fk.registry.predictions("churn", store=store)
    assert len(logged) == accepted.count(True) == log.written
    assert logged["prediction"].tolist() == [i for i, ok in enumerate(accepted) if ok]


# --- a real server -------------------------------------------------------------------------------

def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "FLOWKIT_HOME": str(home), "PYTHONPATH": str(ROOT), "FLOWKIT_SERVE_TOKEN": ""}


def _start(home: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "flowkit", "serve", "churn@production", "--port", "0", *args],
                            env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=60):
        proc.kill()
        pytest.fail("flowkit serve printed no address within 60 s")
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        pytest.fail(f"flowkit serve did not start: {line}{proc.stderr.read()}")
    url = line.split(" on ", 1)[1].split()[0]
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"flowkit serve never became healthy: {proc.stderr.read()}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode in (0, -signal.SIGTERM), err
    return err


def test_a_real_server_switches_versions_under_load_without_a_failed_request(tmp_path):
    home = tmp_path / "home"
    store = Store.open(home)
    register(store, aliases=("production",))
    v2 = register(store, C=0.01)
    proc, url = _start(home, "--poll-interval", "0.2")
    try:
        assert httpx.get(url + "/model").json()["version"] == 1
        results: list[tuple[int, int | None]] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=url, timeout=10) as http:
                while not stop.is_set():
                    try:
                        r = http.post("/predict", json={"records": [RECORD]})
                        results.append((r.status_code, r.json().get("model", {}).get("version")))
                    except httpx.HTTPError as exc:
                        results.append((0, None))
                        print("request failed:", exc)

        clients = [threading.Thread(target=load) for _ in range(2)]
        for t in clients:
            t.start()
        deadline = time.monotonic() + 30
        while len(results) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        fk.registry.promote("churn", v2.version, to="production", store=store)
        while not any(v == 2 for _, v in results[-5:]) and time.monotonic() < deadline:
            time.sleep(0.01)
        count = len(results)
        while len(results) < count + 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for t in clients:
            t.join(10)
        statuses = {s for s, _ in results}
        versions = [v for _, v in results]
        assert statuses == {200}, [r for r in results if r[0] != 200][:5]
        assert versions[0] == 1 and versions[-1] == 2 and set(versions) == {1, 2}
        health = httpx.get(url + "/health").json()
        assert health["prediction_log"]["dropped"] == 0
    finally:
        _stop(proc)
    logged = fk.registry.predictions("churn", store=store)
    assert len(logged) == len(results)  # every answer was written, the last ones at SIGTERM
    assert sorted(logged["version"].value_counts().to_dict().items()) == sorted(
        {1: versions.count(1), 2: versions.count(2)}.items())


def test_a_port_in_use_is_a_clear_error(tmp_path, store):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = subprocess.run([sys.executable, "-m", "flowkit", "serve", "churn@production", "--port", str(port)],
                                env=_env(store.home), capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr and "--port" in result.stderr


def test_a_public_address_needs_a_token(store):
    result = CliRunner().invoke(main, ["--home", str(store.home), "serve", "churn@production", "--host", "0.0.0.0"],
                                env={"FLOWKIT_SERVE_TOKEN": ""})
    assert result.exit_code == 2 and "without a token" in result.output and "--allow-anonymous" in result.output


def test_a_malformed_uri_is_refused_at_once(store):
    result = CliRunner().invoke(main, ["--home", str(store.home), "serve", "churn@"])
    assert result.exit_code == 2 and "name@alias" in result.output
