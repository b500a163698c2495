"""The host, per adapter: with no SDK nothing is recorded, and an exception inside the core
never reaches it; either way the run's result and the step's own exception are exactly those
of a bare run."""

from __future__ import annotations

import pytest
from support import known_workers

from conformance.patched import Attributes, patched_modules, wraps_attributes
from conformance.workload import Behaviour, Step, as_seen

BEHAVIOURS = pytest.mark.parametrize("behaviour", list(Behaviour), ids=lambda b: b.value)


def _bare(scenario, behaviour):
    step = Step(behaviour)
    return as_seen(scenario.run(step), step)


@BEHAVIOURS
def test_without_an_sdk_nothing_is_recorded(adapter, scenario, instrument_without_sdk, behaviour):
    bare = _bare(scenario, behaviour)
    before = Attributes(patched_modules(adapter))
    live = instrument_without_sdk(**scenario.options)
    assert live is not None and live.tracker.is_off(), "a global provider is set: not a no-SDK run"
    assert before.changes() or not wraps_attributes(adapter), "instrument() patched nothing"

    step = Step(behaviour)
    assert as_seen(scenario.run(step), step) == bare
    assert step.in_flight and set(step.in_flight) == {0}
    assert live.tracker.in_flight_count() == 0
    assert known_workers(live) == 0


@BEHAVIOURS
def test_an_exception_inside_the_core_never_reaches_the_host(
    scenario, instrument, broken_core, behaviour
):
    bare = _bare(scenario, behaviour)
    otel = instrument(**scenario.options)
    raised = broken_core()

    step = Step(behaviour)
    assert as_seen(scenario.run(step), step) == bare
    assert raised, "the adapter never called the core"
    assert otel.spans() == []
