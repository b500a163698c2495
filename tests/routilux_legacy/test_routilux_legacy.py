"""routilux 0.10: Flow.execute runs and ExecutionTracker records, on the real framework."""

from __future__ import annotations

import itertools

import pytest
import routilux.execution_tracker as execution_tracker_module
from opentelemetry.trace import StatusCode
from routilux import Flow, Routine
from routilux.error_handler import ErrorHandler
from routilux.execution_tracker import ExecutionTracker
from routilux.flow.flow import Flow as FlowClass
from routilux.job_state import JobState

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry

_ids = itertools.count()


class Source(Routine):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.define_slot("trigger", handler=self.run)
        self.define_event("out", ["value"])

    def run(self, **kwargs):
        if self.fail:
            raise RuntimeError("source unavailable")
        self.emit("out", value=21)


class Double(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.seen = []
        self.define_slot("input", handler=self.run)

    def run(self, value=None, **kwargs):
        self.seen.append(value * 2)


def build(fail: bool = False):
    flow = Flow(flow_id=f"legacy_{next(_ids)}")
    source, double = Source(fail), Double()
    source_id = flow.add_routine(source, "source")
    flow.add_routine(double, "double")
    flow.connect("source", "out", "double", "input")
    return flow, source_id, double


def test_successful_run_becomes_a_pipeline_with_its_entry_step(instrument):
    otel = instrument()
    flow, source_id, double = build()
    job_state = flow.execute(source_id)
    assert JobState.wait_for_completion(flow, job_state, timeout=10)
    assert double.seen == [42]

    run = otel.span(f"RUN {flow.flow_id}")
    step = otel.span("source")
    assert step.parent.span_id == run.context.span_id
    assert run.attributes["execution.status"] == "succeeded"
    assert step.attributes["execution.status"] == "succeeded"
    assert step.attributes["cicd.pipeline.name"] == flow.flow_id
    assert set(otel.transitions(execution_level="pipeline")) == {("running", "succeeded")}
    assert set(otel.transitions(execution_level="step")) == {("running", "succeeded")}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_failing_entry_routine_fails_step_and_run(instrument):
    otel = instrument()
    flow, source_id, _ = build(fail=True)
    job_state = flow.execute(source_id)
    assert job_state.status == "failed"  # routilux's own result is unchanged
    run, step = otel.span(f"RUN {flow.flow_id}"), otel.span("source")
    assert step.status.status_code is StatusCode.ERROR
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["error.type"] == "failed"
    assert set(otel.transitions(execution_level="step")) == {("running", "failed")}


class Interrupted(Routine):
    """An entry routine stopped from outside while it runs (Ctrl-C, ``sys.exit``)."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupt: type[BaseException] = KeyboardInterrupt
        self.define_slot("trigger", handler=self.run)

    def run(self, **kwargs):
        raise self.interrupt("stopped")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupted_entry_routine_cancels_step_and_run(instrument, interrupt):
    otel = instrument()
    flow = Flow(flow_id=f"legacy_{next(_ids)}")
    routine = Interrupted()
    routine.interrupt = interrupt
    entry_id = flow.add_routine(routine, "interrupted")
    with pytest.raises(interrupt, match="stopped"):  # routilux lets it through, and so do we
        flow.execute(entry_id)

    run, step = otel.span(f"RUN {flow.flow_id}"), otel.span("interrupted")
    assert step.parent.span_id == run.context.span_id
    for span in (run, step):
        assert span.attributes["execution.status"] == "cancelled"
        assert "error.type" not in span.attributes
        assert span.status.status_code is not StatusCode.ERROR
    assert set(otel.transitions(execution_level="pipeline")) == {("running", "cancelled")}
    assert set(otel.transitions(execution_level="step")) == {("running", "cancelled")}
    assert telemetry.current().tracker.in_flight_count() == 0


class CrashingHandler(ErrorHandler):
    """An error handler that fails itself: routilux lets its exception out of Flow.execute."""

    def handle_error(self, error, routine, routine_id, flow, job_state=None):
        raise LookupError("handler crashed")


def test_exception_out_of_execute_fails_step_and_run_with_its_type(instrument):
    otel = instrument()
    flow, source_id, _ = build(fail=True)
    flow.set_error_handler(CrashingHandler())
    with pytest.raises(LookupError, match="handler crashed"):
        flow.execute(source_id)

    run, step = otel.span(f"RUN {flow.flow_id}"), otel.span("source")
    for span in (run, step):
        assert span.attributes["execution.status"] == "failed"
        assert span.attributes["error.type"] == "LookupError"
        assert span.status.status_code is StatusCode.ERROR
    assert telemetry.current().tracker.in_flight_count() == 0


def test_execute_error_propagates_unchanged(instrument):
    otel = instrument()
    flow, _, _ = build()
    with pytest.raises(ValueError, match="not found in flow"):
        flow.execute("no_such_routine")
    run = otel.span(f"RUN {flow.flow_id}")
    assert run.attributes["error.type"] == "ValueError"


def test_tracker_used_directly_outside_flow_execute(instrument):
    otel = instrument()
    tracker = ExecutionTracker(flow_id="hand_rolled")
    tracker.record_routine_start("processor", {"input": "data"})
    tracker.record_routine_end("processor", status="skipped")
    assert tracker.routine_executions["processor"][0]["status"] == "skipped"
    step = otel.span("processor")
    assert step.attributes["execution.status"] == "skipped"
    assert step.attributes["cicd.pipeline.task.run.result"] == "skip"
    assert "input" not in str(dict(step.attributes))  # parameters are never captured


def test_uninstrument_restores_originals(instrument):
    originals = (
        FlowClass.__dict__["execute"],
        ExecutionTracker.__dict__["record_routine_start"],
        ExecutionTracker.__dict__["record_routine_end"],
        JobState.__dict__["wait_for_completion"],
    )
    instrument()
    assert FlowClass.__dict__["execute"] is not originals[0]
    ExecStatusInstrumentor().uninstrument()
    assert (
        FlowClass.__dict__["execute"],
        execution_tracker_module.ExecutionTracker.__dict__["record_routine_start"],
        ExecutionTracker.__dict__["record_routine_end"],
        JobState.__dict__["wait_for_completion"],
    ) == originals
