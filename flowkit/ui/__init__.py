"""``flowkit ui``: a local, read-only web view over the store.

Server-rendered pages (Starlette + Jinja2, no JavaScript, nothing fetched from
the network): runs (``/``), a run with its graph (``/runs/{id}``), models
(``/models``, ``/models/{name}``), artifacts (``/artifacts/{id}``), and the same
data as JSON under ``/api/``. :func:`flowkit.ui.app.create_app` builds the ASGI
app; :func:`flowkit.ui.app.serve` runs it with uvicorn. Importing this package
imports neither Starlette nor Jinja2; :mod:`flowkit.ui.app` does.
"""
