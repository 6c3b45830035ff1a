"""``fk.serve`` / ``flowkit serve``: a registered model behind HTTP, following its alias, logging every answer.

::

    fk.serve("churn@production")                     # http://127.0.0.1:8000, until SIGTERM or Ctrl-C
    app = create_app("churn@production", store=s)    # the ASGI app itself (tests, embedding)

    POST /predict  {"records": [{"age": 41, "plan": "pro"}, ...]}   (or a bare list of records)
                   -> {"predictions": [...], "probabilities": [[...], ...], "model": {"name", "version"},
                       "request_id": ...}
    GET  /health   -> 200 {"status": "ok", ...}, or 503 while no version can be served
    GET  /model    -> name, version, alias, signature

A real ASGI server (uvicorn) runs a Starlette app. What it serves is an
immutable :class:`Served` (version, model, signature) held by a
:class:`ModelService`: a poller thread re-resolves the URI every
``poll_interval`` seconds with ``fk.registry.get``, loads a new version when the
alias has moved, and swaps the reference in one assignment. A request reads
the reference once, when it starts, so a request in flight finishes on the
version it began with and no request sees half a switch. While the URI
resolves to nothing (an alias not set yet, or deleted), ``/predict`` and
``/health`` answer 503 with the reason, until it does.

Requests are checked against the version's signature before the model sees
them: a malformed body is a 400, a missing or mistyped column a 422 naming it
(and the record), as is an integer beyond its dtype's range or a non-finite
float, a body over ``max_body_bytes`` a 413, a model that raises a 500 naming
the exception class (the service stays up), a model answering other than one
output per record, or what JSON cannot hold, a 500 saying so, a bad or missing
bearer token (scheme in any case) a 401. A model's DataFrame, Series or array
is answered one value per record (:func:`_per_record`). Every answered request
goes to the prediction log (:class:`~flowkit.ml.prediction_log.PredictionLog`)
once its answer is rendered, without waiting for the write;
the log is flushed when the server shuts down (SIGTERM, Ctrl-C).

Binding to anything but a loopback address needs a token (``token=`` or
``$FLOWKIT_SERVE_TOKEN`` with the CLI): ``allow_anonymous=True`` overrides the
refusal, with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowkit.errors import FlowkitError, ModelNotFoundError
from flowkit.ml import registry
from flowkit.ml.model import parse_uri
from flowkit.ml.prediction_log import PredictionLog
from flowkit.store import Store

__all__ = ["ModelService", "Served", "ServeError", "create_app", "serve"]

logger = logging.getLogger("flowkit.serve")

#: The largest request body accepted by default (bytes); beyond it, 413.
MAX_BODY_BYTES = 10 * 2**20
#: Requests with more records than this predict in a worker thread, so the server keeps answering meanwhile.
_INLINE_RECORDS = 64
_USAGE = 'send {"records": [{"column": value, ...}, ...]} or a JSON list of such records'


class ServeError(FlowkitError):
    """The service cannot start: the port is in use, or a public address without a token."""


# --- what is served --------------------------------------------------------------------------------

def _int_bounds(kind: str) -> tuple[int, int] | None:
    import numpy as np

    try:
        info = np.iinfo(kind)
    except (TypeError, ValueError):
        return None
    return int(info.min), int(info.max)


def _float_bound(kind: str) -> float:
    import numpy as np

    try:
        return float(np.finfo(kind).max)
    except (TypeError, ValueError):
        return float(np.finfo("float64").max)


def _checker(dtype: str | None) -> tuple[Callable[[Any], bool], str]:
    """A test of a JSON value for a column of this signature dtype, and what it accepts in words.

    Numbers must fit the dtype: an integer within its bounds (``numpy.iinfo``), so that casting
    never wraps; a float finite (no ``NaN``/``Infinity``, nor ``1e400``, which JSON reads as
    infinity) and within the dtype's largest magnitude.
    """
    kind = (dtype or "").lower()
    if kind.startswith(("int", "uint")):
        bounds = _int_bounds(kind)
        if bounds is None:
            return (lambda v: (type(v) is int) or (type(v) is float and v.is_integer())), "a whole number"
        low, high = bounds

        def whole(v: Any) -> bool:
            if type(v) is float:
                if not v.is_integer():
                    return False
                v = int(v)
            return type(v) is int and low <= v <= high

        return whole, f"a whole number from {low} to {high}"
    if kind.startswith("float"):
        largest = _float_bound(kind)

        def finite(v: Any) -> bool:
            if v is None:
                return True
            if type(v) is int:
                return abs(v) <= largest
            return type(v) is float and math.isfinite(v) and abs(v) <= largest

        within = "" if largest == _float_bound("float64") else f" of magnitude at most {largest:g}"
        return finite, f"a number{within} (finite, or null)"
    if kind in ("bool", "boolean"):
        return (lambda v: type(v) is bool), "true or false"
    if kind in ("string", "str", "category") or kind.startswith("datetime"):
        return (lambda v: v is None or type(v) is str), "a string (or null)"
    return (lambda v: not isinstance(v, (dict, list))), "a single value"  # object or unknown: any scalar


@dataclass(frozen=True, slots=True)
class Served:
    """One version as the service serves it: never changed, replaced whole when the alias moves."""

    name: str
    version: int
    artifact_id: str
    alias: str | None
    model: Any
    signature: dict[str, Any] | None
    columns: tuple[str, ...] | None
    dtypes: dict[str, str]
    checks: dict[str, tuple[Callable[[Any], bool], str]]
    has_proba: bool
    loaded_at: float

    @classmethod
    def of(cls, mv: registry.ModelVersion, model: Any, alias: str | None) -> Served:
        inputs = (mv.signature or {}).get("inputs")
        columns = tuple(str(c["name"]) for c in inputs) if inputs else None
        dtypes = {str(c["name"]): c["dtype"] for c in inputs or () if c.get("dtype")}
        checks = {c: _checker(dtypes.get(c)) for c in columns or ()}
        return cls(mv.name, mv.version, mv.artifact_id, alias, model, mv.signature, columns, dtypes, checks,
                   callable(getattr(model, "predict_proba", None)), time.time())

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "alias": self.alias, "signature": self.signature,
                "has_probabilities": self.has_proba}


class Invalid(Exception):
    """A request the signature refuses (422): the message, and the column and record at fault."""

    def __init__(self, detail: str, column: str | None = None, record: int | None = None) -> None:
        super().__init__(detail)
        self.detail, self.column, self.record = detail, column, record


def _describe_json(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "a number", float: "a number", dict: "an object",
            list: "a list", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{json.dumps(value)[:40]} ({kind})"


def frame_of(records: Any, served: Served) -> Any:
    """The DataFrame the model predicts on, in the signature's column order; :class:`Invalid` if it refuses them."""
    import pandas as pd

    if not isinstance(records, list) or not records:
        raise Invalid(f"no records: {_USAGE}")
    columns = served.columns
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise Invalid(f"record {i} is {_describe_json(record)}, not an object of column: value; {_USAGE}",
                          record=i)
        if columns is None:
            continue
        for column in columns:
            if column not in record:
                raise Invalid(f"record {i} has no column {column!r}; model {served.name}:{served.version} takes "
                              f"{', '.join(columns)}", column, i)
            ok, accepted = served.checks[column]
            if not ok(record[column]):
                dtype = served.dtypes.get(column)
                said = f" (its dtype in the signature is {dtype})" if dtype else ""
                raise Invalid(f"column {column!r} must be {accepted}{said}, not {_describe_json(record[column])} "
                              f"in record {i}", column, i)
    frame = pd.DataFrame.from_records(records, columns=list(columns) if columns is not None else None)
    inferred = dict(zip(frame.columns, frame.dtypes)) if served.dtypes else {}
    for column, dtype in served.dtypes.items():
        if str(inferred[column]) != dtype:
            try:
                frame[column] = frame[column].astype(dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise Invalid(f"column {column!r} cannot be read as {dtype}: {exc}", column) from None
    return frame


class BadOutput(Exception):
    """The model answered something the service cannot send back (500, not logged)."""


def predict(served: Served, frame: Any) -> dict[str, Any]:
    """``{"predictions": model.predict(frame)}``, with ``"probabilities"`` when the model has ``predict_proba``.

    Both are made plain JSON values, one per record (:func:`_per_record`); :class:`BadOutput`
    when there are not as many as records. The model raising propagates as it is.
    """
    n = len(frame)
    out = {"predictions": _per_record(served.model.predict(frame), n, served, "predictions", rows_as="dicts")}
    if served.has_proba:
        out["probabilities"] = _per_record(served.model.predict_proba(frame), n, served, "probabilities",
                                           rows_as="lists")
    return out


def _per_record(values: Any, n: int, served: Served, what: str, rows_as: str) -> list[Any]:
    """A model's output as a list of JSON values, one per record.

    A DataFrame of one column gives that column's values; of several, one row per record, as a
    ``{column: value}`` dict (``rows_as="dicts"``, predictions) or a list (``"lists"``,
    probabilities). A Series, an array (a 2-D one gives a list per record), a list or any other
    sequence gives its items. numpy scalars become Python numbers.
    """
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        if values.shape[1] == 1:
            values = values.iloc[:, 0].tolist()
        elif rows_as == "dicts":
            values = [{str(k): v for k, v in row.items()} for row in values.to_dict(orient="records")]
        else:
            values = values.to_numpy().tolist()
    else:
        tolist = getattr(values, "tolist", None)
        if callable(tolist):
            values = tolist()
        elif isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
            raise BadOutput(f"model {served.name}:{served.version} returned {type(values).__name__} as its "
                            f"{what}, not one per record ({n} records)")
        else:
            values = list(values)
    if not isinstance(values, list):  # a 0-d array's tolist() is a scalar
        raise BadOutput(f"model {served.name}:{served.version} returned a single {type(values).__name__} as its "
                        f"{what}, not one per record ({n} records)")
    if len(values) != n:
        raise BadOutput(f"model {served.name}:{served.version} returned {len(values)} {what} for {n} records")
    return [_plain(v) for v in values]


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays (and tuples) made Python numbers and lists, recursively."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars (np.int64(1).tolist() == 1)
    if callable(tolist):
        return _plain(tolist())
    return value  # left to the renderer, which says what it cannot hold


class ModelService:
    """Keeps the version ``uri`` resolves to loaded, and swaps it when the alias moves.

    Args:
        uri: ``"churn@production"`` (follows the alias), ``"churn"`` (the latest version) or ``"churn:3"``.
        store: the store the registry is read from.
        poll_interval: seconds between two resolutions by the poller thread (:meth:`start`).
        wait: how the poller waits between resolutions (``wait(seconds)``, returning ``True`` to stop);
            default: on the service's stop event. Tests pass their own, or call :meth:`refresh` directly.
    """

    def __init__(self, uri: str, store: Store, *, poll_interval: float = 2.0,
                 wait: Callable[[float], bool] | None = None) -> None:
        self.ref = parse_uri(uri)
        self.uri = uri
        self.store = store
        self.poll_interval = poll_interval
        self.current: Served | None = None
        self.reason: str | None = "not resolved yet"
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh(self) -> Served | None:
        """Resolve the URI now; load and swap in a version that differs from the one served. What is served now.

        No such version: nothing is served (503) until there is one. A store or a model that cannot be
        read right now: the version served so far stays, and :attr:`last_error` says why.
        """
        with self._lock:
            served = self.current
            try:
                mv = registry.get(self.uri, store=self.store)
            except ModelNotFoundError as exc:
                if served is not None:
                    logger.warning("%s resolves to no version any more (%s): answering 503 until it does",
                                   self.uri, exc)
                self.current, self.reason = None, str(exc)
                return None
            except Exception as exc:  # noqa: BLE001 - a busy or unreachable store: keep serving what we have
                self.last_error = f"resolving {self.uri}: {type(exc).__name__}: {exc}"
                logger.error("%s", self.last_error)
                return served
            if served is not None and (served.version, served.artifact_id) == (mv.version, mv.artifact_id):
                return served
            try:
                model = registry.load(mv.uri, store=self.store)
            except Exception as exc:  # noqa: BLE001 - the old version keeps answering
                self.last_error = f"loading {mv.uri}: {type(exc).__name__}: {exc}"
                logger.error("%s", self.last_error)
                if served is None:
                    self.reason = f"cannot load {mv.uri}: {type(exc).__name__}: {exc}"
                return served
            self.current = fresh = Served.of(mv, model, self.ref.alias)  # one assignment: the switch
            self.reason = None
            if served is None:
                logger.info("serving %s (%s)", mv.uri, self.uri)
            else:
                logger.info("%s moved: serving %s (was version %d)", self.uri, mv.uri, served.version)
            return fresh

    def start(self) -> None:
        """Resolve once, then keep resolving every ``poll_interval`` seconds in a thread (unless pinned to a version)."""
        self.refresh()
        if self.ref.version is None and self.poll_interval and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="flowkit-serve-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _poll(self) -> None:
        while not self._wait(self.poll_interval) and not self._stop.is_set():
            self.refresh()
        self.store.db.close()  # this thread's connection


# --- the app -------------------------------------------------------------------------------------

def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **{k: v for k, v in extra.items() if v is not None}},
                        status_code=status, headers={"www-authenticate": "Bearer"} if status == 401 else None)


class _JSON(JSONResponse):
    """JSON that survives a model answering NaN or infinity (sent as null) and numpy values (sent as numbers).

    What JSON cannot hold at all raises :class:`TypeError` when the response is made.
    """

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                              default=_numpy_default).encode()
        except ValueError:
            return json.dumps(_finite(_plain(content)), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":"), default=_numpy_default).encode()


def _numpy_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


async def _body(request: Request, limit: int) -> bytes | None:
    """The request's body, or ``None`` when it is over ``limit`` bytes (told by its length, or while reading)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return uuid.uuid4().hex


def create_app(model_uri: str, *, store: Store | None = None, home: str | os.PathLike[str] | None = None,
               token: str | None = None, poll_interval: float | None = 2.0, max_body_bytes: int = MAX_BODY_BYTES,
               log_queue: int = 10_000, clock: Any = None) -> Starlette:
    """The ASGI app serving ``model_uri`` (its lifespan starts the poller and the prediction log, and flushes it).

    Args:
        model_uri: ``"churn@production"``, ``"churn"`` (the latest) or ``"churn:3"``.
        store, home: the store (default: the one at ``home``, else ``$FLOWKIT_HOME``, else ``./.flowkit``).
        token: when set, ``/predict`` and ``/model`` need ``Authorization: Bearer <token>`` (``/health`` does not).
        poll_interval: seconds between re-resolutions of the URI; ``None`` or ``0``: never (call
            ``app.state.service.refresh()``).
        max_body_bytes: larger request bodies get a 413.
        log_queue: prediction log entries that may wait to be written before new ones are dropped (and counted).
        clock: where a request's time in the prediction log is read (default: the system clock).

    Raises:
        RegistryError: a malformed URI.
    """
    store = store if store is not None else Store.open(home)
    service = ModelService(model_uri, store, poll_interval=poll_interval or 0)
    expected = token.encode() if token else None
    now = clock.time if clock is not None else time.time

    def denied(request: Request) -> JSONResponse | None:
        if expected is None:
            return None
        scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
        given = credentials.strip().encode()
        # the scheme is case-insensitive (RFC 9110 11.1); the token is compared in constant time
        if hmac.compare_digest(given, expected) and scheme.lower() == "bearer":
            return None
        return _error(401, "Unauthorized", "send the service's token as 'Authorization: Bearer <token>'")

    def unavailable() -> JSONResponse:
        return _error(503, "Unavailable", f"no model to serve: {service.reason}")

    async def predict_endpoint(request: Request) -> Response:
        started = now()
        refused = denied(request)
        if refused is not None:
            return refused
        served = service.current  # read once: this request finishes on this version whatever happens meanwhile
        if served is None:
            return unavailable()
        body = await _body(request, max_body_bytes)
        if body is None:
            return _error(413, "PayloadTooLarge", f"the body is over {max_body_bytes} bytes; send fewer records "
                                                  f"per request")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, "MalformedJSON", f"the body is not JSON ({exc}); {_USAGE}")
        records = payload.get("records") if isinstance(payload, dict) else payload
        try:
            frame = frame_of(records, served)
        except Invalid as exc:
            return _error(422, "InvalidInput", exc.detail, column=exc.column, record=exc.record)
        try:
            if len(records) <= _INLINE_RECORDS:
                outputs = predict(served, frame)
            else:
                outputs = await run_in_threadpool(predict, served, frame)
        except BadOutput as exc:
            logger.error("%s", exc)
            return _error(500, "BadModelOutput", str(exc))
        except Exception as exc:  # noqa: BLE001 - the model's fault: say which error, keep serving
            logger.error("model %s:%d raised %s: %s", served.name, served.version, type(exc).__name__, exc)
            return _error(500, type(exc).__name__, f"model {served.name}:{served.version} raised "
                                                   f"{type(exc).__name__}: {str(exc)[:500]}")
        request_id = _request_id(request)
        try:  # the body is rendered here: only an answer that could be sent is logged
            response = _JSON({**outputs, "model": {"name": served.name, "version": served.version},
                              "request_id": request_id}, headers={"x-request-id": request_id})
        except (TypeError, ValueError) as exc:
            detail = (f"model {served.name}:{served.version} answered something JSON cannot hold: "
                      f"{type(exc).__name__}: {str(exc)[:500]}")
            logger.error("%s", detail)
            return _error(500, "UnserializableOutput", detail)
        log.append(served.name, served.version, started, request_id, records, outputs)
        return response

    async def health_endpoint(request: Request) -> Response:
        served = service.current
        body = {"status": "ok" if served is not None else "unavailable", "model_uri": model_uri,
                "model": {"name": served.name, "version": served.version} if served is not None else None,
                "reason": service.reason, "last_error": service.last_error,
                "prediction_log": log.stats()}
        return _JSON(body, status_code=200 if served is not None else 503)

    async def model_endpoint(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        served = service.current
        return _JSON(served.describe()) if served is not None else unavailable()

    log: PredictionLog

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal log
        log = app.state.log = PredictionLog(store, max_queue=log_queue)
        service.start()
        try:
            yield
        finally:  # SIGTERM and Ctrl-C come here through uvicorn's graceful shutdown
            service.stop()
            log.close()

    app = Starlette(routes=[Route("/predict", predict_endpoint, methods=["POST"]),
                            Route("/health", health_endpoint, methods=["GET"]),
                            Route("/model", model_endpoint, methods=["GET"])], lifespan=lifespan)
    app.state.service = service
    return app


# --- the server ----------------------------------------------------------------------------------

def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, command: str = "flowkit serve") -> socket.socket:
    """A listening socket on (host, port); :class:`ServeError` naming the port when it is taken.

    ``command`` names, in that message, the kind of server that may hold the port.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ServeError(f"cannot bind to host {host!r}: {exc}; give an address such as 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is already in use (another `{command}`, or another "
                             f"server); choose another with --port, or stop that one") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def run_server(app: Any, host: str, port: int, *, command: str, banner: str, lifespan: str = "on",
               log_level: str = "info", access_log: bool = False, graceful_seconds: float = 30) -> None:
    """Run ``app`` with uvicorn on (host, port) until SIGTERM or Ctrl-C, printing where it listens.

    The socket is bound here (:func:`bind`: a taken port is a :class:`ServeError` naming it);
    ``banner`` is printed after ``command``'s name with the address it got (port 0 picks one).
    """
    import uvicorn

    sock = bind(host, port, command)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"{command}: {banner.format(url=f'http://{shown}:{bound}')}", flush=True)
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan=lifespan,
                            timeout_graceful_shutdown=graceful_seconds)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          home: str | os.PathLike[str] | None = None, *, store: Store | None = None, poll_interval: float = 2.0,
          max_body_bytes: int = MAX_BODY_BYTES, log_queue: int = 10_000, allow_anonymous: bool = False,
          access_log: bool = False, log_level: str = "info") -> None:
    """Serve ``model_uri`` over HTTP with uvicorn until stopped (SIGTERM or Ctrl-C; the prediction log is flushed).

    Args:
        model_uri: ``"churn@production"`` follows the alias as it moves (checked every ``poll_interval`` s);
            ``"churn"`` follows the latest version; ``"churn:3"`` stays on version 3.
        host, port: where to listen (default 127.0.0.1:8000; port 0 picks a free one, printed at start).
        token: the bearer token ``/predict`` and ``/model`` require; needed for a non-loopback host.
        home, store: the store (default ``$FLOWKIT_HOME``, else ``./.flowkit``).
        allow_anonymous: serve a non-loopback host without a token anyway (anyone who can reach it may call it).
        access_log: uvicorn's line per request (off: the prediction log keeps what was asked and answered).
        log_level: uvicorn's log level (``"info"``: the address it listens on, start and stop).
        poll_interval, max_body_bytes, log_queue: as for :func:`create_app`.

    Raises:
        ServeError: the port is in use, or a non-loopback host without a token.
        RegistryError: a malformed URI.
    """
    if not _is_loopback(host) and not token:
        if not allow_anonymous:
            raise ServeError(f"refusing to serve on {host} without a token: anyone who can reach it could call "
                             f"the model. Pass --token (or set FLOWKIT_SERVE_TOKEN), or --allow-anonymous if you "
                             f"mean it")
        logger.warning("serving on %s WITHOUT A TOKEN: anyone who can reach this address can call the model", host)
    app = create_app(model_uri, store=store, home=home, token=token, poll_interval=poll_interval,
                     max_body_bytes=max_body_bytes, log_queue=log_queue)
    run_server(app, host, port, command="flowkit serve", log_level=log_level, access_log=access_log,
               banner=model_uri.replace("{", "{{").replace("}", "}}")
               + " on {url} (POST /predict, GET /health, GET /model)")
