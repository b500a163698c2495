"""Patching, per adapter: a second ``instrument()`` does nothing, ``uninstrument()`` puts back
every object it replaced, and a run reports each execution once."""

from __future__ import annotations

import pytest

from conformance.patched import Attributes, patched_modules, wraps_attributes
from conformance.reports import declared, reported
from conformance.workload import Behaviour, Step
from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry


@pytest.mark.parametrize("behaviour", list(Behaviour), ids=lambda b: b.value)
def test_a_second_instrument_does_nothing(adapter, scenario, instrument, behaviour):
    modules = patched_modules(adapter)
    bare = Attributes(modules)
    otel = instrument(**scenario.options)
    assert bare.changes() or not wraps_attributes(adapter), "instrument() patched nothing"
    once = Attributes(modules)
    instrument(**scenario.options)
    assert once.changes() == []

    step = Step(behaviour)
    scenario.run(step)
    assert reported(otel) == declared(scenario, behaviour)
    assert step.in_flight and min(step.in_flight) >= 1, "the step ran with nothing in flight"
    assert telemetry.current().tracker.in_flight_count() == 0


@pytest.mark.parametrize("behaviour", [Behaviour.RETURN, Behaviour.RAISE], ids=lambda b: b.value)
def test_uninstrument_restores_every_patched_attribute(adapter, scenario, instrument, behaviour):
    modules = patched_modules(adapter)
    scenario.run(Step(behaviour))  # so that the framework's lazily made state exists before
    before = Attributes(modules)
    otel = instrument(**scenario.options)
    assert before.changes() or not wraps_attributes(adapter), "instrument() patched nothing"
    scenario.run(Step(behaviour))
    ExecStatusInstrumentor().uninstrument()

    assert before.changes() == []
    spans = len(otel.spans())
    scenario.run(Step(behaviour))
    assert len(otel.spans()) == spans  # nothing reports any more
