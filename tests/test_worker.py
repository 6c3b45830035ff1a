"""What a worker runs for one node: storing its result."""

from __future__ import annotations

import logging
import threading

import flowkit as fk


@fk.task
def make_lock() -> object:
    return threading.Lock()


@fk.task
def use(lock: object) -> int:
    return 1


@fk.flow
def locked() -> int:
    return use(make_lock())


def test_a_result_that_cannot_be_serialized_is_reported_with_its_task_and_type(caplog):
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        assert locked() == 1
    [message] = [r.getMessage() for r in caplog.records if "could not be serialized" in r.getMessage()]
    assert message.startswith("the result of task 'make_lock' (a _thread.lock) could not be serialized, so it "
                              "is not cached: TypeError:")
    assert "mark the task cache=False" in message


class _Files:
    def write(self, digest, data):
        return f"/store/{digest}"


def test_a_plain_result_is_stored_as_the_general_serializer_path_stores_it():
    from flowkit import _worker
    from flowkit.hashing import digest
    from flowkit.store.serializers import describe, dumps

    for value in (None, True, 3, 2.5, "text", b"bytes", "x" * 40_000):
        info = _worker.store_value(_Files(), value, None, "n")
        encoded = dumps(value)
        data = bytes(encoded.data)
        inline = data if len(data) <= _worker.INLINE_MAX else None
        expected = (digest(data), encoded.serializer, len(data), describe(value), inline,
                    None if inline is not None else f"/store/{digest(data)}")
        assert tuple(info) == expected, value
        assert tuple(_worker.store_value(_Files(), value, "pickle", "n")) == expected
