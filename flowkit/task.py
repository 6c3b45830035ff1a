"""Tasks: ``@task``, :class:`Task` and its options, :class:`TaskOptions`.

A task is an inert definition: the user's function plus a frozen set of
options. Called outside a flow it is the plain function; called while a flow
is traced it records a node and returns a :class:`~flowkit.Ref`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import functools
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, overload

from flowkit.errors import DefinitionError, InvalidOptionValue
from flowkit.tracing import current_trace


__all__ = ["Task", "TaskOptions", "task"]

P = ParamSpec("P")
R = TypeVar("R")

#: Serializer names a task may ask for; "auto" (``None``) picks one by type.
SERIALIZERS = ("pickle", "cloudpickle", "feather", "parquet", "npy")

_NAME = re.compile(r"^[^/#\[\]\s][^/#\[\]]*$")


def check_name(name: object, what: str) -> str:
    """Validate a task or flow name: a non-empty string without ``/ # [ ]``."""
    if not isinstance(name, str):
        raise DefinitionError(f"{what} name must be a string, got {type(name).__name__} {name!r}")
    if not _NAME.match(name):
        raise InvalidOptionValue(
            f"{what} name {name!r} is not usable: it must be non-empty, not start with a space, and not "
            f"contain '/', '#', '[' or ']' (they are used in node ids)"
        )
    return name


def _number(owner: str, option: str, value: object, *, minimum: float = 0.0, strict: bool = False,
            optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DefinitionError(f"{owner}: option {option}= must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InvalidOptionValue(f"{owner}: option {option}= must be {bound}, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """Every option of a task, validated on construction.

    Attributes:
        name: the task's name (default: the function's name).
        retries: how many times a failed attempt is retried.
        retry_delay: seconds before a retry, or a list of delays, one per retry.
        backoff: the factor the delay grows by per retry.
        jitter: up to this fraction of the delay is added at random.
        max_retry_delay: the cap on any one delay, in seconds.
        retry_on: exception types to retry, or a predicate ``(exc) -> bool``.
        timeout: seconds an attempt may run before it fails with TaskTimeoutError.
        cache: ``False`` marks the task non-deterministic (never served from cache).
        cache_version: bump it to invalidate cached results by hand.
        cache_ttl: seconds (or a ``timedelta``) a cached result stays valid.
        serializer: how results are stored (one of ``SERIALIZERS``; ``None`` = by type). A result
            the serializer does not take (``"npy"`` for a list) is pickled, with a warning, so that
            it loads back as it was.
        nout: the number of values the task returns, so ``a, b = t(x)`` unpacks.
        tags: labels shown in UIs and dashboards.
        resources: abstract resources an attempt needs, e.g. ``{"GPU": 1}``: on Dask, only a worker
            that offers them runs it (``dask worker --resources "GPU=1"``); ``LocalExecutor`` has
            no resources to count and runs it as any other task.
        checks: gates on the task's result before it is committed (:mod:`flowkit.ml.checks`):
            ``fk.checks.*`` checks, callables ``(value) -> None | bool | str``, pandera schemas.
    """

    name: str | None = None
    retries: int = 0
    retry_delay: float | tuple[float, ...] = 0.0
    backoff: float = 1.0
    jitter: float = 0.0
    max_retry_delay: float | None = None
    retry_on: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (Exception,)
    timeout: float | None = None
    cache: bool = True
    cache_version: str | int | None = None
    cache_ttl: float | None = None
    serializer: str | None = None
    nout: int | None = None
    tags: tuple[str, ...] = ()
    resources: Mapping[str, float] | None = None
    checks: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        owner = f"task {self.name!r}" if isinstance(self.name, str) else "@fk.task"
        put = functools.partial(object.__setattr__, self)
        if self.name is not None:
            check_name(self.name, "task")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise DefinitionError(f"{owner}: option retries= must be an int, got {self.retries!r}")
        if self.retries < 0:
            raise InvalidOptionValue(f"{owner}: option retries= must be >= 0, got {self.retries}")
        if isinstance(self.retry_delay, (list, tuple)):
            put("retry_delay", tuple(_number(owner, "retry_delay", d) for d in self.retry_delay))
        else:
            put("retry_delay", _number(owner, "retry_delay", self.retry_delay))
        put("backoff", _number(owner, "backoff", self.backoff, strict=True))
        put("jitter", _number(owner, "jitter", self.jitter))
        put("max_retry_delay", _number(owner, "max_retry_delay", self.max_retry_delay, optional=True))
        put("retry_on", _check_retry_on(owner, self.retry_on))
        put("timeout", _number(owner, "timeout", self.timeout, strict=True, optional=True))
        if not isinstance(self.cache, bool):
            raise DefinitionError(f"{owner}: option cache= must be True or False, got {self.cache!r}")
        if self.cache_version is not None and (
            isinstance(self.cache_version, bool) or not isinstance(self.cache_version, (str, int))
        ):
            raise DefinitionError(f"{owner}: option cache_version= must be a str or int, got {self.cache_version!r}")
        ttl = self.cache_ttl
        if isinstance(ttl, _dt.timedelta):
            ttl = ttl.total_seconds()
        put("cache_ttl", _number(owner, "cache_ttl", ttl, strict=True, optional=True))
        if self.serializer is not None and self.serializer not in SERIALIZERS:
            raise InvalidOptionValue(
                f"{owner}: option serializer= must be one of {', '.join(SERIALIZERS)} (or None to choose by "
                f"type), got {self.serializer!r}"
            )
        if self.nout is not None and (
            isinstance(self.nout, bool) or not isinstance(self.nout, int) or self.nout < 1
        ):
            raise InvalidOptionValue(f"{owner}: option nout= must be an int >= 1 or None, got {self.nout!r}")
        tags = (self.tags,) if isinstance(self.tags, str) else self.tags
        if not isinstance(tags, Iterable) or not all(isinstance(t, str) for t in tags):
            raise DefinitionError(f"{owner}: option tags= must be strings, got {self.tags!r}")
        put("tags", tuple(tags))
        if self.resources is not None:
            if not isinstance(self.resources, Mapping):
                raise DefinitionError(f"{owner}: option resources= must be a dict like {{'GPU': 1}}, "
                                      f"got {self.resources!r}")
            for key, amount in self.resources.items():
                if not isinstance(key, str):
                    raise DefinitionError(f"{owner}: resources= keys must be strings, got {key!r}")
                _number(owner, f"resources[{key!r}]", amount, strict=True)
            put("resources", dict(self.resources))
        if self.checks:
            from flowkit.ml.checks import Check, as_check

            checks = (self.checks,) if callable(self.checks) or isinstance(self.checks, Check) else self.checks
            if not isinstance(checks, Iterable) or isinstance(checks, (str, bytes)):
                raise DefinitionError(f"{owner}: option checks= must be a list of checks, got {self.checks!r}")
            put("checks", tuple(as_check(c, owner) for c in checks))
        else:
            put("checks", ())


def _check_retry_on(owner: str, retry_on: object) -> Any:
    def is_exc_type(x: object) -> bool:
        return isinstance(x, type) and issubclass(x, BaseException)

    if is_exc_type(retry_on):
        return (retry_on,)
    if isinstance(retry_on, (tuple, list)) and all(is_exc_type(x) for x in retry_on):
        return tuple(retry_on)
    if callable(retry_on) and not isinstance(retry_on, type):
        return retry_on
    raise DefinitionError(
        f"{owner}: option retry_on= must be an exception type, a tuple of them, or a predicate "
        f"(exception) -> bool, got {retry_on!r}"
    )


_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(TaskOptions))

#: The task options a flow may set for all its tasks with ``task_defaults``.
DEFAULTABLE = ("retries", "retry_delay", "backoff", "jitter", "max_retry_delay", "retry_on", "timeout")


def check_task_defaults(owner: str, defaults: object) -> dict[str, Any]:
    """Validate a flow's ``task_defaults``: only execution options, with valid values."""
    if not isinstance(defaults, Mapping):
        raise DefinitionError(f"{owner}: option task_defaults= must be a dict like {{'retries': 2}}, "
                              f"got {defaults!r}")
    bad = [k for k in defaults if k not in DEFAULTABLE]
    if bad:
        raise DefinitionError(f"{owner}: task_defaults= cannot set {', '.join(map(repr, bad))}; it may set: "
                              f"{', '.join(DEFAULTABLE)}")
    TaskOptions(**defaults)  # validates the values
    return dict(defaults)


def effective_options(task: Task[..., Any], defaults: Mapping[str, Any] | None) -> TaskOptions:
    """A task's options with a flow's ``task_defaults`` filling those it did not set itself."""
    if not defaults:
        return task.options
    fill = {k: v for k, v in defaults.items() if k not in task.explicit}
    return dataclasses.replace(task.options, **fill) if fill else task.options


def make_options(cls: type[Any], owner: str, options: dict[str, Any], valid: tuple[str, ...]) -> Any:
    """Build an options dataclass, turning unknown names into a helpful error."""
    unknown = [k for k in options if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, valid, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DefinitionError(f"{owner}: unknown option {', '.join(hints)}; valid options are: {', '.join(valid)}")
    return cls(**options)


class Task(Generic[P, R]):
    """A function decorated with :func:`task`: the function plus its options.

    Attributes:
        fn: the original function.
        options: the :class:`TaskOptions`.
        name: the task's name.
    """

    def __init__(self, fn: Callable[P, R], options: TaskOptions, explicit: frozenset[str] = frozenset()) -> None:
        if isinstance(fn, Task) or _is_flow(fn):
            raise DefinitionError(f"{fn!r} is already a flowkit {type(fn).__name__.lower()}; decorate it only once")
        if not callable(fn):
            raise DefinitionError(f"@fk.task must decorate a function, got {type(fn).__name__} {fn!r}")
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise DefinitionError(f"@fk.task cannot wrap async function {getattr(fn, '__name__', fn)!r}: "
                                  "tasks are plain functions; call your coroutine with asyncio.run inside one")
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        self.fn = fn
        self.options = options
        #: The options given explicitly (a flow's ``task_defaults`` fill in the others).
        self.explicit = explicit
        self.name: str = options.name or check_name(getattr(fn, "__name__", type(fn).__name__), "task")
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"@fk.task cannot read the signature of {fn!r}: {exc}") from None
        # How a call binds, for ``flowkit.tracing.canonical_call``: the positional parameters in
        # order (``None`` for a positional-only one: a keyword of that name goes to ``**kwargs``),
        # and the names a keyword argument binds to.
        params = self.signature.parameters.values()
        self.positional_names: tuple[str | None, ...] = tuple(
            p.name if p.kind is p.POSITIONAL_OR_KEYWORD else None
            for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        self.keyword_names: frozenset[str] = frozenset(
            p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        trace = current_trace()
        if trace is None:
            return self.fn(*args, **kwargs)
        return trace.call(self, args, kwargs)  # type: ignore[return-value]

    def map(self, iterable: Iterable[Any], **fixed: Any) -> list[R]:
        """Call the task once per item of ``iterable``, with ``fixed`` keyword arguments.

        Inside a flow this returns a ref to the list of results; the iterable
        may itself be a ref, whose length is then known only at run time.
        Outside a flow it is a plain list comprehension.
        """
        trace = current_trace()
        if trace is None:
            return [self.fn(item, **fixed) for item in iterable]  # type: ignore[arg-type, call-arg]
        return trace.map(self, iterable, fixed)  # type: ignore[return-value]

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A new task with some options changed (``dataclasses.replace``)."""
        make_options(dict, f"task {self.name!r}", changes, _OPTION_NAMES)
        return Task(self.fn, dataclasses.replace(self.options, **changes), self.explicit | frozenset(changes))

    def __repr__(self) -> str:
        return f"<Task {self.name!r}>"

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Decorating a method: bind like a function would.
        if instance is None:
            return self
        return functools.partial(self, instance)


def _is_flow(obj: object) -> bool:
    from flowkit.flow import Flow

    return isinstance(obj, Flow)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a flowkit task; use bare (``@fk.task``) or with options.

    Example::

        @fk.task(retries=3, retry_delay=2.0, backoff=2.0)
        def fetch(url: str) -> bytes: ...

    See :class:`TaskOptions` for every option. A bad option raises
    :class:`~flowkit.errors.DefinitionError` (a ``TypeError``; a bad value is
    also a ``ValueError``) right here, at decoration time.
    """
    if fn is not None and options:
        raise DefinitionError("@fk.task takes options as keywords only: @fk.task(retries=2)")
    opts = make_options(TaskOptions, "@fk.task", options, _OPTION_NAMES)
    explicit = frozenset(options)
    if fn is not None:
        return Task(fn, opts, explicit)
    return lambda f: Task(f, opts, explicit)

