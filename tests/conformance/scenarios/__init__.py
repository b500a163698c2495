"""Per adapter, the smallest real run of its framework, and what the adapter reports of it.

A new adapter brings its scenario: a module here whose ``SCENARIO`` runs one pipeline with one
step on the real framework, listed in ``SCENARIOS`` under the adapter's name. The modules
import their framework, so each is imported only where its adapter is enabled.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from conformance.workload import Behaviour, Outcome, Step
from opentelemetry_instrumentation_execstatus.adapters import Adapter

SpanKey = tuple[str, str]
"""A span of the run: its ``execution.level`` and its name."""

Reported = Mapping[Behaviour, Mapping[SpanKey, str]]
"""For each way the step ends: every span one run reports, with its ``execution.status``."""

ENDING = {
    Behaviour.RETURN: "succeeded",
    Behaviour.RAISE: "failed",
    Behaviour.INTERRUPT: "cancelled",
}
"""How an execution the step's end unwinds ends, by the one outcome rule of every adapter."""


def ending_with_the_step(*spans: SpanKey, succeeding: tuple[SpanKey, ...] = ()) -> Reported:
    """What a run reports when each of ``spans`` ends as its step does (``ENDING``), and each
    of ``succeeding`` (work done before the step, such as a source) succeeds whatever it does."""
    return {
        behaviour: {
            **{span: status for span in spans},
            **{span: "succeeded" for span in succeeding},
        }
        for behaviour, status in ENDING.items()
    }


class Scenario(ABC):
    """One framework's smallest run, and the executions the adapter must report of it."""

    options: ClassVar[Mapping[str, Any]] = {}
    """``instrument()`` options every check passes (``item_spans`` where the step is an item)."""

    step: ClassVar[SpanKey]
    """The span of the step itself."""

    reported: ClassVar[Reported]
    """What one run reports. Each execution is one span: a second span of the same execution
    is a failure."""

    @abstractmethod
    def run(self, step: Step) -> Outcome:
        """Run the pipeline once, its step calling ``step``, to the end (every thread of the
        framework done); never raises, what reached the caller is ``Outcome.raised``."""


SCENARIOS: Mapping[str, str] = {
    "routilux": "conformance.scenarios.routilux",
    "routilux-legacy": "conformance.scenarios.routilux_legacy",
    "orcapod": "conformance.scenarios.orcapod",
    "loom": "conformance.scenarios.loom",
    "sqlalchemy": "conformance.scenarios.sqlalchemy",
    "tangle": "conformance.scenarios.tangle",
    "celery": "conformance.scenarios.celery",
    "dask": "conformance.scenarios.dask",
}
"""Adapter name -> the module of its scenario."""


def scenario_for(adapter: type[Adapter]) -> Scenario:
    """The adapter's scenario; an enabled adapter without one fails every check."""
    if adapter.name not in SCENARIOS:
        pytest.fail(
            f"adapter {adapter.name!r} has no conformance scenario: add one under "
            "tests/conformance/scenarios/ and list it in SCENARIOS"
        )
    return importlib.import_module(SCENARIOS[adapter.name]).SCENARIO
