"""@fk.task: decoration, option validation, with_options, plain calls."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

import flowkit as fk
from flowkit.errors import DefinitionError


def double(x: int) -> int:
    """Double it."""
    return 2 * x


def test_bare_and_parametrized_decorators_return_tasks_that_keep_the_function():
    t1 = fk.task(double)
    t2 = fk.task(retries=2)(double)
    for t in (t1, t2):
        assert isinstance(t, fk.Task)
        assert t.fn is double
        assert t.name == "double"
        assert t.__doc__ == "Double it."
        assert t.__wrapped__ is double
    assert t2.options.retries == 2


def test_calling_a_task_outside_a_flow_calls_the_plain_function():
    t = fk.task(double)
    assert t(21) == 42
    assert t.map([1, 2, 3]) == [2, 4, 6]


def test_every_design_option_is_accepted_and_stored():
    t = fk.task(
        name="dbl", retries=3, retry_delay=[1, 2, 4], backoff=2.0, jitter=0.1, max_retry_delay=30,
        retry_on=(ConnectionError, TimeoutError), timeout=5, cache=False, cache_version="v2",
        cache_ttl=dt.timedelta(hours=1), serializer="parquet", nout=2, tags=("ml", "nightly"),
        resources={"GPU": 1}, checks=[],
    )(double)
    o = t.options
    assert (t.name, o.retries, o.retry_delay, o.backoff, o.jitter, o.max_retry_delay) == (
        "dbl", 3, (1.0, 2.0, 4.0), 2.0, 0.1, 30.0)
    assert o.retry_on == (ConnectionError, TimeoutError)
    assert (o.timeout, o.cache, o.cache_version, o.cache_ttl) == (5.0, False, "v2", 3600.0)
    assert (o.serializer, o.nout, o.tags, o.resources, o.checks) == ("parquet", 2, ("ml", "nightly"),
                                                                     {"GPU": 1}, ())
    assert {f.name for f in dataclasses.fields(fk.TaskOptions)} == {
        "name", "retries", "retry_delay", "backoff", "jitter", "max_retry_delay", "retry_on", "timeout",
        "cache", "cache_version", "cache_ttl", "serializer", "nout", "tags", "resources", "checks"}


def test_checks_are_normalized_to_check_objects_with_names():
    check = lambda value: None  # noqa: E731
    opts = fk.task(checks=[check, fk.checks.rows(min=1)])(double).options
    assert [c.name for c in opts.checks] == ["<lambda>", "rows(min=1)"]
    assert fk.task(checks=check)(double).options.checks[0].name == "<lambda>"
    assert fk.task(double).with_options(checks=[fk.checks.no_nulls()]).options.checks[0].name == "no_nulls()"


def test_single_exception_type_and_predicate_are_valid_retry_on():
    assert fk.task(retry_on=KeyError)(double).options.retry_on == (KeyError,)
    pred = lambda exc: "again" in str(exc)  # noqa: E731
    assert fk.task(retry_on=pred)(double).options.retry_on is pred


@pytest.mark.parametrize(
    ("options", "exc", "words"),
    [
        ({"retries": -1}, ValueError, "retries= must be >= 0"),
        ({"retries": 1.5}, TypeError, "retries= must be an int"),
        ({"retries": True}, TypeError, "retries= must be an int"),
        ({"retry_delay": -2}, ValueError, "retry_delay= must be >= 0"),
        ({"retry_delay": "soon"}, TypeError, "retry_delay= must be a number"),
        ({"backoff": 0}, ValueError, "backoff= must be > 0"),
        ({"jitter": -0.5}, ValueError, "jitter= must be >= 0"),
        ({"timeout": 0}, ValueError, "timeout= must be > 0"),
        ({"retry_on": "ValueError"}, TypeError, "retry_on= must be an exception type"),
        ({"retry_on": (ValueError, 3)}, TypeError, "retry_on="),
        ({"cache": "yes"}, TypeError, "cache= must be True or False"),
        ({"cache_version": 1.5}, TypeError, "cache_version="),
        ({"cache_ttl": -1}, ValueError, "cache_ttl= must be > 0"),
        ({"serializer": "xml"}, ValueError, "serializer= must be one of"),
        ({"nout": 0}, ValueError, "nout= must be an int >= 1"),
        ({"tags": [1]}, TypeError, "tags= must be strings"),
        ({"resources": ["GPU"]}, TypeError, "resources= must be a dict"),
        ({"resources": {"GPU": 0}}, ValueError, "must be > 0"),
        ({"checks": [1]}, TypeError, "checks= takes fk.checks"),
        ({"name": 3}, TypeError, "name must be a string"),
        ({"name": "a/b"}, ValueError, "'/'"),
        ({"name": ""}, ValueError, "non-empty"),
    ],
)
def test_bad_options_fail_at_decoration_time_with_a_clear_error(options, exc, words):
    with pytest.raises(exc, match=None) as info:
        fk.task(**options)(double)
    assert isinstance(info.value, fk.FlowkitError)
    assert words in str(info.value)


def test_unknown_option_names_the_option_and_suggests_the_right_one():
    with pytest.raises(TypeError, match=r"unknown option 'retires'.*did you mean 'retries'"):
        fk.task(retires=3)(double)


def test_non_callables_double_decoration_and_async_functions_are_refused():
    with pytest.raises(DefinitionError, match="must decorate a function"):
        fk.task(42)
    t = fk.task(double)
    with pytest.raises(DefinitionError, match="decorate it only once"):
        fk.task(t)

    async def coro():
        return 1

    with pytest.raises(DefinitionError, match="async"):
        fk.task(coro)


def test_with_options_returns_a_new_task_and_keeps_the_original():
    t = fk.task(retries=1)(double)
    t2 = t.with_options(retries=5, name="double_more")
    assert t2 is not t and t2.fn is t.fn
    assert (t.options.retries, t.name) == (1, "double")
    assert (t2.options.retries, t2.name) == (5, "double_more")
    with pytest.raises(ValueError, match="retries="):
        t.with_options(retries=-3)
    with pytest.raises(TypeError, match="unknown option 'colour'"):
        t.with_options(colour="red")


def test_options_are_frozen():
    t = fk.task(double)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.options.retries = 3  # type: ignore[misc]
