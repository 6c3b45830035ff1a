"""The web view's ASGI app (Starlette + Jinja2) and the server that runs it (uvicorn).

::

    app = create_app(store)                 # tests: starlette.testclient.TestClient(app)
    serve(host="127.0.0.1", port=8765)      # `flowkit ui`, until SIGTERM or Ctrl-C

Pages: ``/`` (runs: filters ``flow``, ``status``, ``trigger``, ``since``/``until`` days; ``page``, 50 a page),
``/runs/{id}`` (graph, timeline, tasks), ``/compare?run=ID&run=ID&metric=NAME``, ``/models``,
``/models/{name}``, ``/artifacts/{id}`` (lineage both ways); JSON: ``/api/runs``,
``/api/runs/{id}``, ``/api/compare?run=...``, ``/api/models``. Everything is read-only and
read through :class:`~flowkit.store.Store` and the registry; endpoints are plain
functions, which Starlette runs in its thread pool (the store keeps a connection
per thread). Jinja2 autoescapes every value; the graph's SVG escapes its own labels.

With a ``token``, every request must carry it: ``?token=`` (which also sets a
cookie, so the links of the page keep working), the ``flowkit_ui_token`` cookie,
or ``Authorization: Bearer``. A host other than loopback needs one.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import math
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowkit.errors import ModelNotFoundError
from flowkit.ml import registry
from flowkit.records import Run, TaskRun
from flowkit.store import Store
from flowkit.ui.charts_svg import line_plot, timeline
from flowkit.ui.graph_svg import COLOURS, render

__all__ = ["PAGE_SIZE", "PREVIEW_MAX_BYTES", "create_app", "serve"]

HERE = Path(__file__).parent
#: Runs per page.
PAGE_SIZE = 50
#: A table artifact larger than this is not loaded for its preview.
PREVIEW_MAX_BYTES = 50 * 2**20
PREVIEW_ROWS = 20
COOKIE = "flowkit_ui_token"
_TABLE_TYPES = ("pandas.core.frame.DataFrame", "pandas.DataFrame")


# --- formatting -----------------------------------------------------------------------------------

def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m {secs:02d}s"


def _plain(value: Any) -> Any:
    """A value JSON can hold: NaN becomes ``None``, numpy scalars plain numbers, anything else its repr."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def _records(frame: Any) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, secs=_secs, short=lambda s: (s or "")[:12],
                       tojson_text=lambda v: json.dumps(_plain(v), ensure_ascii=False, sort_keys=True))
    env.globals["colours"] = COLOURS
    return env


# --- what the pages show --------------------------------------------------------------------------

def _int(text: str | None, default: int) -> int:
    try:
        return max(int(text or default), 1)
    except ValueError:
        return default


def _day(text: str | None, end: bool = False) -> float | None:
    """``YYYY-MM-DD`` (local time) as epoch seconds: its start, or with ``end`` the start of the next day."""
    if not text:
        return None
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None  # a malformed date filters nothing (the form only sends valid ones)
    return (day + dt.timedelta(days=1) if end else day).timestamp()


def runs_data(store: Store, query: dict[str, str]) -> dict[str, Any]:
    """One page of runs under the query's filters, with the counts by status and the paging."""
    flow, status, trigger = (query.get(k) or None for k in ("flow", "status", "trigger"))
    since, until = _day(query.get("since")), _day(query.get("until"), end=True)
    counts = store.db.run_status_counts(flow=flow, trigger=trigger, since=since, until=until)
    total = counts.get(status, 0) if status else sum(counts.values())
    pages = max(math.ceil(total / PAGE_SIZE), 1)
    page = min(_int(query.get("page"), 1), pages)
    runs = store.run_page(flow=flow, status=status, trigger=trigger, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
                          since=since, until=until)
    tasks = store.db.task_run_counts([r.id for r in runs])
    rows = []
    for r in runs:
        by_status = tasks.get(r.id, {})
        n = sum(by_status.values())
        rows.append({"id": r.id, "flow": r.flow, "status": r.status, "trigger": r.trigger, "started": r.started,
                     "ended": r.ended, "duration": r.duration, "tasks": n, "task_counts": by_status,
                     "cached_share": by_status.get("cached", 0) / n if n else None})
    filters = {k: v for k, v in (("flow", flow), ("status", status), ("trigger", trigger)) if v}
    filters.update({k: query[k] for k, v in (("since", since), ("until", until)) if v is not None})
    return {"runs": rows, "counts": counts, "total": total, "page": page, "pages": pages, "filters": filters,
            "flows": store.db.run_flows()}


def _segments(tr: TaskRun) -> list[tuple[float, float, str]]:
    """The timed attempts of a task run as (started, ended, status); its own timings if none are."""
    timed = [a for a in tr.history if a.started is not None and a.ended is not None]
    if timed:
        return [(a.started, a.ended, "failed" if a.error else tr.status) for a in timed]  # type: ignore[misc]
    if tr.started is not None and tr.ended is not None and tr.status != "cached":
        return [(tr.started, tr.ended, tr.status)]
    return []


def _task(tr: TaskRun, metrics: list[dict[str, Any]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"node": tr.node, "task": tr.name, "status": tr.status, "attempts": tr.attempts, "started": tr.started,
            "ended": tr.ended, "duration": tr.duration, "cache_key": tr.cache_key, "artifact_id": tr.artifact_id,
            "error": tr.error, "traceback": tr.traceback, "logs": tr.logs, "source": tr.source,
            "metrics": [m for m in metrics if m["node"] == tr.node],
            "checks": [c for c in checks if c["node"] == tr.node], "segments": _segments(tr)}


def run_data(store: Store, run: Run) -> dict[str, Any]:
    """A run with its task runs (each with its metrics and check results), its graph's edges, and why it ran."""
    metrics, checks = _records(run.metrics()), _records(run.checks())
    task_runs = run.task_runs
    return {"id": run.id, "flow": run.flow, "status": run.status, "params": _plain(run.params),
            "started": run.started, "ended": run.ended, "duration": run.duration, "trigger": run.trigger,
            "error": run.error if isinstance(run.error, str) else (str(run.error) if run.error else None),
            "triggered_by": run.info.get("triggered_by"), "trigger_reason": _plain(run.info.get("trigger_reason")),
            "triggered": "trigger_reason" in run.info,
            "info": {k: _plain(v) for k, v in run.info.items() if k not in ("triggered_by", "trigger_reason")},
            "counts": run.counts(), "tasks": [_task(tr, metrics, checks) for tr in task_runs],
            "edges": store.db.run_edges(run.id)}


def compare_data(store: Store, run_ids: list[str], metric: str | None) -> dict[str, Any]:
    """Runs side by side: their params and last metric values, and one metric's values over steps.

    Raises:
        TrackingError: a run id (or prefix) matches no run, or several.
    """
    import flowkit as fk

    frame = fk.compare_runs(run_ids, store=store)
    rows = _records(frame.astype(object).where(frame.notna(), None)) if len(frame) else []
    ids = [r["run"] for r in rows]
    columns = [c for c in frame.columns if "." in c]
    params = sorted(c.split(".", 1)[1] for c in columns if c.startswith("params."))
    metric_names = sorted(c.split(".", 1)[1] for c in columns if c.startswith("metrics."))
    other = sorted(c for c in columns if not c.startswith(("params.", "metrics.")))

    def table(prefix: str, names: list[str]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            values = [r.get(prefix + name) for r in rows]
            shown = [json.dumps(_plain(v), sort_keys=True) for v in values]
            out.append({"name": name, "values": values, "differs": len(set(shown)) > 1})
        return out

    metric = metric if metric in metric_names else (metric_names[0] if metric_names else None)
    series: list[dict[str, Any]] = []
    if metric is not None:
        values = fk.metrics(ids, store=store)
        values = values[values["name"] == metric]
        for rid in ids:
            mine = values[values["run"] == rid]
            steps = mine["step"].astype(object).where(mine["step"].notna(), None).tolist()
            points = [(float(i if step is None else step), float(v))  # no step: the order it was logged in
                      for i, (step, v) in enumerate(zip(steps, mine["value"].tolist()))]
            series.append({"run": rid, "points": sorted(points)})
    runs = [{"id": r["run"], "flow": r["flow"], "status": r["status"]} for r in rows]
    return {"runs": runs, "params": table("params.", params), "metrics": table("metrics.", metric_names),
            "other": table("", other), "metric": metric, "metric_names": metric_names, "series": series}


def _version(mv: registry.ModelVersion) -> dict[str, Any]:
    return {"version": mv.version, "uri": mv.uri, "artifact_id": mv.artifact_id, "run_id": mv.run_id,
            "task_run_id": mv.task_run_id, "metrics": _plain(mv.metrics), "params": _plain(mv.params),
            "tags": _plain(mv.tags), "aliases": list(mv.aliases), "created_at": mv.created_at,
            "created_by": mv.created_by}


def models_data(store: Store) -> list[dict[str, Any]]:
    return [{"name": m.name, "versions": m.versions, "latest": m.latest, "aliases": m.aliases,
             "created_at": m.created_at, "updated_at": m.updated_at} for m in registry.models(store=store)]


def model_data(store: Store, name: str) -> dict[str, Any]:
    versions = registry.versions(name, store=store)  # ModelNotFoundError: the caller's 404
    history = [{"alias": h.alias, "version": h.version, "previous": h.previous, "when": h.when, "who": h.who,
                "run_id": h.run_id, "reason": h.reason, "action": h.action}
               for h in reversed(registry.history(name, store=store))]
    return {"name": name, "versions": [_version(v) for v in reversed(versions)],
            "aliases": registry.aliases(name, store=store), "history": history}


def artifact_data(store: Store, artifact_id: str) -> dict[str, Any]:
    """An artifact's record, a preview of a small table, and what produced it (upstream, as links)."""
    from flowkit.lineage import lineage

    full = store.find_artifact(artifact_id)  # KeyError: the caller's 404
    record = store.artifact(full)
    assert record is not None
    preview: dict[str, Any] | None = None
    preview_note = None
    if record.type in _TABLE_TYPES and record.removed is None:
        if record.serializer not in ("feather", "parquet"):  # the view never unpickles what the store holds
            preview_note = f"no preview: stored as {record.serializer}, which runs code when it is loaded"
        elif (record.size or 0) < PREVIEW_MAX_BYTES:
            try:
                head = store.load(full).head(PREVIEW_ROWS)
                preview = {"columns": [str(c) for c in head.columns],
                           "rows": [[_plain(v) for v in row] for row in head.itertuples(index=False)]}
            except Exception as exc:  # noqa: BLE001 - a damaged value is said on the page, never a 500
                preview_note = f"cannot load it: {type(exc).__name__}: {exc}"
        else:
            preview_note = f"no preview: larger than {PREVIEW_MAX_BYTES // 2**20} MB"
    upstream = []
    try:
        g = lineage(full, store=store)
    except Exception as exc:  # noqa: BLE001
        g, preview_note = None, (preview_note or "") + f" lineage unavailable: {exc}"
    if g is not None:
        for node, d in g.nodes(data=True):
            if node == full:
                continue
            if d["kind"] == "artifact":
                upstream.append({"kind": "artifact", "id": node, "label": f"{d.get('type')}, {d.get('size')} bytes"})
            elif d["kind"] == "task_run":
                upstream.append({"kind": "task_run", "id": node, "run_id": d.get("run_id"), "node": d.get("node"),
                                 "label": f"task {d.get('node')} of {d.get('flow')}", "started": d.get("started")})
            else:
                upstream.append({"kind": "param", "id": node, "label": f"{d.get('name')} = {d.get('repr')}"})
    downstream = []
    for run_id, node in store.db.artifact_consumers(full):
        step = store.db.step(run_id, node)
        downstream.append({"run_id": run_id, "node": node, "task": step.task if step else node,
                           "flow": step.flow if step else None, "artifact_id": step.artifact_id if step else None,
                           "status": step.status if step else None})
    registered = [{"name": m.name, "version": v.version, "aliases": list(v.aliases)}
                  for m in registry.models(store=store) for v in registry.versions(m.name, store=store)
                  if v.artifact_id == full]
    dtypes = record.dtypes or []
    schema = [{"column": c, "dtype": dtypes[i] if i < len(dtypes) else None} for i, c in enumerate(record.columns or [])]
    return {"id": full, "type": record.type, "size": record.size, "serializer": record.serializer,
            "rows": record.rows, "schema": schema, "created": record.created, "removed": record.removed,
            "removed_by": record.removed_by, "preview": preview, "preview_note": preview_note, "upstream": upstream,
            "downstream": downstream, "registered": registered}


# --- the app --------------------------------------------------------------------------------------

class _TokenGate:
    """Refuses (401) every request without the token; ``?token=`` also sets the cookie."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        if self._ok(from_query):
            async def send_with_cookie(message: Any) -> None:
                if message["type"] == "http.response.start":
                    cookie = f"{COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict"
                    message.setdefault("headers", []).append((b"set-cookie", cookie.encode("latin-1")))
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        if self._ok(request.cookies.get(COOKIE)) or self._ok(bearer):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse("401: this flowkit ui needs its token: open it with ?token=..., or send "
                                     "'Authorization: Bearer ...'", status_code=401,
                                     headers={"www-authenticate": "Bearer"})
        await response(scope, receive, send)


def create_app(store: Store | None = None, *, home: str | os.PathLike[str] | None = None,
               token: str | None = None) -> Any:
    """The ASGI app of the web view over ``store`` (default: the one at ``home``, else ``$FLOWKIT_HOME``).

    With ``token``, every request must carry it (see the module docstring).
    """
    store = store if store is not None else Store.open(home)
    env = _environment()

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(request_path=request.url.path, **context)
        return HTMLResponse(html, status_code=status_code)

    def not_found(what: str) -> HTTPException:
        return HTTPException(404, what)

    def runs_page(request: Request) -> Response:
        data = runs_data(store, dict(request.query_params))

        def link(**changes: Any) -> str:
            query = {**data["filters"], **{k: v for k, v in changes.items() if v is not None}}
            return "/?" + urlencode(query) if query else "/"

        return page(request, "runs.html", title="Runs", link=link, statuses=sorted(COLOURS), **data)

    def find_run(run_id: str) -> Run:
        try:
            return store.run(run_id)
        except KeyError as exc:
            raise not_found(exc.args[0] if exc.args else f"no run {run_id!r}") from None

    def run_page(request: Request) -> Response:
        run = find_run(request.path_params["run_id"])
        data = run_data(store, run)
        svg = render([(t["node"], t["status"]) for t in data["tasks"]], data["edges"])
        gantt, untimed = timeline(data["tasks"])
        return page(request, "run.html", title=f"Run {run.id[:12]} of {run.flow}", run=data,
                    graph=Markup(svg), timeline=Markup(gantt), untimed=untimed, refresh=run.status == "running")

    def compared(request: Request) -> dict[str, Any]:
        from flowkit.errors import TrackingError

        ids = [i for i in request.query_params.getlist("run") if i]
        if not ids:
            raise HTTPException(400, "pick runs to compare: /compare?run=ID&run=ID")
        try:
            return compare_data(store, ids, request.query_params.get("metric") or None)
        except TrackingError as exc:
            raise not_found(str(exc)) from None

    def compare_page(request: Request) -> Response:
        data = compared(request)
        plot = line_plot([(r["run"][:12], r["points"]) for r in data["series"]], title=data["metric"] or "")
        query = [("run", r["id"]) for r in data["runs"]]
        return page(request, "compare.html", title="Compare runs", cmp=data, plot=Markup(plot),
                    metric_link=lambda m: "/compare?" + urlencode([*query, ("metric", m)]))

    def api_compare(request: Request) -> Response:
        return JSONResponse(_plain(compared(request)))

    def models_page(request: Request) -> Response:
        return page(request, "models.html", title="Models", models=models_data(store))

    def model_page(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            data = model_data(store, name)
        except ModelNotFoundError as exc:
            raise not_found(str(exc)) from None
        return page(request, "model.html", title=f"Model {name}", model=data)

    def artifact_page(request: Request) -> Response:
        try:
            data = artifact_data(store, request.path_params["artifact_id"])
        except KeyError as exc:
            raise not_found(exc.args[0] if exc.args else "no such artifact") from None
        return page(request, "artifact.html", title=f"Artifact {data['id'][:12]}", artifact=data)

    def api_runs(request: Request) -> Response:
        data = runs_data(store, dict(request.query_params))
        data.pop("flows")
        return JSONResponse(_plain(data))

    def api_run(request: Request) -> Response:
        return JSONResponse(_plain(run_data(store, find_run(request.path_params["run_id"]))))

    def api_models(request: Request) -> Response:
        out = []
        for m in models_data(store):
            out.append({**m, "versions_detail": model_data(store, m["name"])["versions"]})
        return JSONResponse(_plain({"models": out}))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.status_code, "detail": exc.detail}, status_code=exc.status_code)
        return page(request, "error.html", status_code=exc.status_code, title=f"{exc.status_code}",
                    code=exc.status_code, detail=exc.detail)

    routes = [Route("/", runs_page), Route("/runs/{run_id}", run_page), Route("/models", models_page),
              Route("/models/{name:path}", model_page), Route("/artifacts/{artifact_id}", artifact_page),
              Route("/compare", compare_page),
              Route("/api/runs", api_runs), Route("/api/compare", api_compare), Route("/api/runs/{run_id}", api_run), Route("/api/models", api_models),
              Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.store = store
    return _TokenGate(app, token) if token else app


def serve(host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          home: str | os.PathLike[str] | None = None, *, store: Store | None = None, log_level: str = "info",
          access_log: bool = False) -> None:
    """Serve the web view with uvicorn until stopped (SIGTERM or Ctrl-C).

    Raises:
        ServeError: the port is in use, or a non-loopback ``host`` without a ``token``.
    """
    from flowkit.ml.serve import ServeError, _is_loopback, run_server

    if not _is_loopback(host) and not token:
        raise ServeError(f"refusing to serve the flowkit ui on {host} without a token: anyone who can reach it "
                         f"could read every run. Pass --token (or set FLOWKIT_UI_TOKEN), or keep 127.0.0.1")
    app = create_app(store, home=home, token=token)
    run_server(app, host, port, command="flowkit ui", banner="{url}/ (stop with Ctrl-C or SIGTERM)", lifespan="off",
               log_level=log_level, access_log=access_log, graceful_seconds=10)
