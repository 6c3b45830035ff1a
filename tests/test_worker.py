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
