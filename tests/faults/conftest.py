"""The fault scenarios' session report: the soak figures (``tests/faults/harness.py``), printed as JSON under ``--soak``
(and written to ``$FLOWKIT_SOAK_FIGURES`` when set)."""

from __future__ import annotations

import json
import os

from tests.faults.harness import FIGURES


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    target = os.environ.get("FLOWKIT_SOAK_FIGURES")
    if not FIGURES or not (config.getoption("--soak") or target):
        return
    figures = {scenario: dict(sorted(counts.items())) for scenario, counts in sorted(FIGURES.items())}
    terminalreporter.section("fault scenario figures")
    terminalreporter.write_line(json.dumps(figures, indent=1))
    if target:
        with open(target, "w") as f:
            json.dump(figures, f, indent=1)
