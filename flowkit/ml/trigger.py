"""``fk.trigger``: a run started by another run, which records who started it and why.

Continuous training is a monitoring flow that, when it finds drift, starts the
training flow::

    @fk.task(cache=False)  # it starts a run: never served from the cache
    def retrain_if_drifted(report) -> str | None:
        if not report.drifted:
            return None
        run = fk.trigger(training, trigger="drift",
                         reason={"drifted": report.drifted_columns, "share": report.share_drifted})
        return run.id

Called from inside a running task, the new run records the run of that task as
its ``triggered_by`` and the task as part of its reason; from outside a run it
has no parent. The reason is text or a JSON-compatible dict (a drift report's
artifact id, the drifted columns). ``flowkit runs`` shows the chain, and
``fk.runs()`` records carry it in ``run.info["triggered_by"]`` and
``run.info["trigger_reason"]``. The triggered run is an ordinary run: its gate
decides what it promotes.
"""

from __future__ import annotations

from typing import Any

from flowkit.context import current_task

__all__ = ["trigger"]


def trigger(flow: Any, /, *, trigger: str = "triggered", reason: Any = None, wait: bool = True,
            store: Any = None, **params: Any) -> Any:
    """Run ``flow`` with ``params`` now, recorded as started by the current run (if any) for ``reason``.

    Args:
        flow: the flow to run.
        trigger: the trigger name it is recorded with (``"drift"``, ``"triggered"``...).
        reason: why: text or a JSON-compatible dict.
        wait: run it to the end and return its :class:`~flowkit.Run` (the only mode today:
            ``False`` raises, rather than pretend to run it in the background).
        store: the store to record it in (default: the current task's, else the flow's).
        **params: the flow's parameters.

    Returns:
        The triggered run's record; a failure does not raise (see ``run.status``).
    """
    from flowkit.errors import DefinitionError
    from flowkit.runner import run_flow

    if not wait:
        raise DefinitionError("fk.trigger(..., wait=False) is not supported: the run is started in this process "
                              "and returns when it ends; schedule the flow (fk.Cron) to run it elsewhere")
    ctx = current_task()
    why: Any = reason
    parent = None
    if ctx is not None:
        parent = ctx.run_id
        why = {"task": ctx.node, **(reason if isinstance(reason, dict) else {"reason": reason} if reason else {})}
        if store is None:
            store = ctx.store
    return run_flow(flow, params, trigger=trigger, store=store, triggered_by=parent, reason=why)
