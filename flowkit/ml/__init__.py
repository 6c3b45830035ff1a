"""The MLOps layer: tracking, checks, drift and the model registry, over the same store and lineage.

- :mod:`flowkit.ml.tracking`: ``fk.log_metric`` & co inside tasks; ``fk.metrics``, ``fk.compare_runs``.
- :mod:`flowkit.ml.checks`: ``@fk.task(checks=[...])`` gates (``fk.checks``).
- :mod:`flowkit.ml.drift`: ``fk.drift.compare`` / ``check`` / ``history``: data and prediction drift.
- :mod:`flowkit.ml.registry`: versioned models with aliases and history (``fk.registry``), ``fk.Model``.
- :mod:`flowkit.ml.serve`: ``fk.serve`` / ``flowkit serve``, a model behind HTTP (Starlette on uvicorn);
  :mod:`flowkit.ml.prediction_log`: what it answered, read back by ``fk.registry.predictions``.

Nothing here is imported by the engine at module level, and ``import flowkit``
imports no pandas: each module imports its heavy libraries where it uses them.
"""
