"""The reliability suite: the instrumentation under hostile inputs, SDK faults, races, fork and
cancellation. Every test checks the same rule: whatever one execution's input is, it affects
only that execution, every count returns exactly to 0 once everything has ended, and nothing
reaches the application."""

from __future__ import annotations

from typing import Any

import pytest
from figures import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES.executions and not FIGURES.hostile_inputs:
        return  # a selection that ran none of the suite
    path = FIGURES.write()
    terminalreporter.write_sep("-", "reliability figures")
    for name, value in FIGURES.as_dict().items():
        terminalreporter.write_line(f"{name:>16}: {value:,}")
    terminalreporter.write_line(f"{'written to':>16}: {path}")


@pytest.fixture
def figures():
    return FIGURES
