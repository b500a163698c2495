"""Interrupts, per adapter: a step interrupted by ``KeyboardInterrupt`` ends ``cancelled``,
with no ``error.type``, and so do the executions it unwinds; the interrupt reaches the caller
exactly where the framework lets it through."""

from __future__ import annotations

from conformance.reports import declared, reported
from conformance.workload import Behaviour, Step, as_seen
from opentelemetry_instrumentation_execstatus import telemetry


def test_an_interrupted_step_ends_cancelled(scenario, instrument):
    bare_step = Step(Behaviour.INTERRUPT)
    bare = scenario.run(bare_step)
    otel = instrument(**scenario.options)

    step = Step(Behaviour.INTERRUPT)
    outcome = scenario.run(step)
    assert as_seen(outcome, step) == as_seen(bare, bare_step)
    if bare.raised is bare_step.error:
        assert outcome.raised is step.error
    assert scenario.reported[Behaviour.INTERRUPT][scenario.step] == "cancelled"
    assert reported(otel) == declared(scenario, Behaviour.INTERRUPT)
    for span in otel.spans():
        if span.attributes.get("execution.status") == "cancelled":
            assert "error.type" not in span.attributes, span.name
    assert telemetry.current().tracker.in_flight_count() == 0
