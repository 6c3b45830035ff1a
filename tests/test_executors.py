"""The executor protocol: what every session declares to the engine."""

from __future__ import annotations

import pytest

import flowkit as fk
from flowkit.executors import Session

DECLARED = [
    ("sequential", lambda: fk.LocalExecutor(), False, True),
    ("threads", lambda: fk.LocalExecutor(max_workers=2), False, True),
    pytest.param("dask", lambda: fk.DaskExecutor(n_workers=1, processes=False), True, False,
                 marks=pytest.mark.dask),
]


@pytest.mark.parametrize(("name", "make", "eager", "in_process"), DECLARED)
def test_every_session_declares_whether_it_is_eager_and_in_process(name, make, eager, in_process):
    with make().session(fk.ManualClock()) as session:
        assert isinstance(session, Session)
        assert (session.eager, session.in_process) == (eager, in_process)
