"""Flows: ``@flow``, :class:`Flow` and :class:`FlowOptions`.

A flow is an inert definition: a function whose body wires tasks together.
``flow(...)`` traces the body into a :class:`~flowkit.FlowGraph` and runs it,
returning the flow's value; ``flow.run(...)`` returns the :class:`~flowkit.Run`
record instead; ``flow.graph(...)`` only traces. Called inside another flow's
body, a flow is inlined: its nodes join the caller's graph under its name.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from flowkit.clock import Clock
from flowkit.errors import DefinitionError, ParameterError
from flowkit.graph import FlowGraph
from flowkit.task import Task, check_name, check_task_defaults, make_options
from flowkit.tracing import current_trace, inline_subflow, trace_flow

if TYPE_CHECKING:
    from flowkit.executors import Executor
    from flowkit.records import Run
    from flowkit.store import Store

__all__ = ["Flow", "FlowOptions", "flow"]

P = ParamSpec("P")
R = TypeVar("R")

#: Keyword names ``Flow.run`` keeps for itself, so a flow may not use them as parameters.
RESERVED_PARAMS = ("refresh", "resume", "fail_fast")


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """Every option of a flow, validated on construction.

    Attributes:
        name: the flow's name (default: the function's name).
        schedule: when to run it (a :class:`~flowkit.Cron`), picked up by the scheduler.
        executor: where its tasks run (default: ``LocalExecutor()``).
        clock: the clock for timings, retries and timeouts (default: the system clock).
        store: where results are cached and runs recorded: ``None`` for the
            default (``$FLOWKIT_HOME``, else ``./.flowkit``), a folder, a
            :class:`~flowkit.Store`, or ``False`` to keep nothing (no caching).
        task_defaults: retry and timeout options for every task of the flow,
            e.g. ``{"retries": 2, "timeout": 600}``; a task's own options win.
    """

    name: str | None = None
    schedule: Any = None
    executor: Executor | None = None
    clock: Clock | None = None
    store: Store | str | os.PathLike[str] | bool | None = None
    task_defaults: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        owner = f"flow {self.name!r}" if isinstance(self.name, str) else "@fk.flow"
        if self.name is not None:
            check_name(self.name, "flow")
        if self.schedule is not None and not callable(getattr(self.schedule, "next_after", None)):
            raise DefinitionError(f"{owner}: option schedule= must be a schedule such as fk.Cron('0 3 * * *'), "
                                  f"got {self.schedule!r}")
        if self.executor is not None and not callable(getattr(self.executor, "session", None)):
            raise DefinitionError(f"{owner}: option executor= must be an executor such as fk.LocalExecutor(), "
                                  f"got {self.executor!r}")
        from flowkit.store import Store  # the runtime side, only to check the option's type

        if not (self.store is None or self.store is False or isinstance(self.store, (Store, str, os.PathLike))):
            raise DefinitionError(f"{owner}: option store= must be a folder, an fk.Store, False or None, "
                                  f"got {self.store!r}")
        if self.task_defaults is not None:
            object.__setattr__(self, "task_defaults", check_task_defaults(owner, self.task_defaults))
        if self.clock is not None and not isinstance(self.clock, Clock):
            raise DefinitionError(f"{owner}: option clock= must have time(), monotonic() and sleep(), "
                                  f"got {self.clock!r}")


_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(FlowOptions))


def describe_params(signature: inspect.Signature) -> str:
    """``a: int, b: float = 0.5, *rest`` for error messages and help (string annotations unquoted)."""
    parts = []
    for p in signature.parameters.values():
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            ann = p.annotation
            text += ": " + (ann if isinstance(ann, str) else inspect.formatannotation(ann))
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        parts.append(text)
    return ", ".join(parts) or "none"


class Flow(Generic[P, R]):
    """A function decorated with :func:`flow`.

    Attributes:
        fn: the original function.
        options: the :class:`FlowOptions`.
        name: the flow's name.
    """

    def __init__(self, fn: Callable[P, R], options: FlowOptions) -> None:
        if isinstance(fn, (Flow, Task)):
            raise DefinitionError(f"{fn!r} is already a flowkit {type(fn).__name__.lower()}; decorate it only once")
        if not callable(fn):
            raise DefinitionError(f"@fk.flow must decorate a function, got {type(fn).__name__} {fn!r}")
        if inspect.iscoroutinefunction(fn):
            raise DefinitionError(f"@fk.flow cannot wrap async function {fn.__name__!r}: a flow body is plain code")
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        self.fn = fn
        self.options = options
        self.name: str = options.name or check_name(getattr(fn, "__name__", type(fn).__name__), "flow")
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"@fk.flow cannot read the signature of {fn!r}: {exc}") from None
        clash = [p for p in self.signature.parameters if p in RESERVED_PARAMS]
        if clash:
            raise DefinitionError(
                f"flow {self.name!r}: parameter name {clash[0]!r} is reserved for flow.run() options "
                f"({', '.join(RESERVED_PARAMS)}); rename the parameter"
            )

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}>"

    def bind(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Bind parameters like a call would, defaults applied; raise ParameterError if they do not fit."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterError(f"flow {self.name!r}: {exc}. Its parameters are: {describe_params(self.signature)}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def bind_mapping(self, params: dict[str, Any]) -> dict[str, Any]:
        """:meth:`bind` for parameters given by name, as ``bind`` returns them (``*rest`` and
        ``**extra`` by their own names); names the signature lacks go to ``**extra`` if it has one."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        positional = True  # a positional parameter left out ends the positional part
        for p in self.signature.parameters.values():
            if p.name not in params:
                positional = positional and p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                continue
            value = params[p.name]
            if p.kind is p.VAR_POSITIONAL:
                if not positional and value:
                    raise ParameterError(f"flow {self.name!r}: *{p.name} given without every positional "
                                         f"parameter before it")
                args.extend(value)
            elif p.kind is p.VAR_KEYWORD:
                kwargs.update(value)
            elif p.kind is not p.KEYWORD_ONLY and positional:
                args.append(value)
            else:
                kwargs[p.name] = value
        kwargs.update((k, v) for k, v in params.items() if k not in self.signature.parameters)
        return self.bind(*args, **kwargs)

    def _body(self, **params: Any) -> Any:
        bound = inspect.BoundArguments(self.signature, params)  # type: ignore[arg-type]
        return self.fn(*bound.args, **bound.kwargs)

    def graph(self, *args: P.args, **kwargs: P.kwargs) -> FlowGraph:
        """Trace the flow with these parameters into a :class:`FlowGraph`, running nothing."""
        return trace_flow(self.name, self._body, self.bind(*args, **kwargs))

    def run(self, *args: Any, refresh: bool | Iterable[str] = False, resume: str | None = None,
            fail_fast: bool = False, **kwargs: Any) -> Run:
        """Run the flow and return its :class:`Run` record.

        Args:
            *args, **kwargs: the flow's parameters.
            refresh: ``True`` recomputes every task; a list of task names
                recomputes those tasks and everything downstream of them.
            resume: the id of an earlier run of this flow: besides everything
                cached, reuse what its ``cache=False`` tasks produced.
            fail_fast: at the first task that fails for good, submit nothing
                more (running tasks finish and are recorded; the rest is skipped).

        A task failure does not raise here: the run's status is ``"failed"``
        and ``run.result()`` raises :class:`~flowkit.FlowRunError`. Bad
        parameters raise :class:`~flowkit.errors.ParameterError` before
        anything runs; Ctrl-C cancels the run and re-raises. For a run id,
        trigger, listeners or another store, see :func:`flowkit.run_flow`.
        """
        from flowkit.runner import run_flow

        return run_flow(self, self.bind(*args, **kwargs), refresh=refresh, resume=resume, fail_fast=fail_fast)

    def store(self) -> Store | None:
        """The store this flow records into (``None`` when ``store=False``)."""
        from flowkit.runner import store_of

        return store_of(self.options.store)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the flow and return its value (inside a flow body: inline it)."""
        trace = current_trace()
        if trace is not None:
            return inline_subflow(trace, self.name, self._body, self.bind(*args, **kwargs))  # type: ignore[no-any-return]
        return self.run(*args, **kwargs).result()  # type: ignore[no-any-return]

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A new flow with some options changed, e.g. ``executor=fk.DaskExecutor()``."""
        make_options(dict, f"flow {self.name!r}", changes, _OPTION_NAMES)
        return Flow(self.fn, dataclasses.replace(self.options, **changes))


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...
@overload
def flow(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a flowkit flow; use bare (``@fk.flow``) or with options.

    Example::

        @fk.flow
        def pipeline(n: int = 3):
            data = load(n)
            return train(data)

        pipeline(n=5)          # runs it, returns train's value
        pipeline.run(n=5)      # runs it, returns the Run record

    See :class:`FlowOptions` for the options.
    """
    if fn is not None and options:
        raise DefinitionError("@fk.flow takes options as keywords only: @fk.flow(name='nightly')")
    opts = make_options(FlowOptions, "@fk.flow", options, _OPTION_NAMES)
    if fn is not None:
        return Flow(fn, opts)
    return lambda f: Flow(f, opts)
