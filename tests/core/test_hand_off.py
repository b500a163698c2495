"""Executions that cross processes: one process hands an execution off (its span ends there,
still in its status), another carries it on from what travelled with the work (its context and
when its status began), and a process about to end without interpreter shutdown flushes."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry_instrumentation_execstatus import safety, telemetry, tracing
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.semconv import ExecutionLevel, Orchestrator
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

STEP = Identity(Orchestrator.API, ExecutionLevel.STEP, name="task", attempt=0)
RETRY = Identity(Orchestrator.API, ExecutionLevel.STEP, name="task", attempt=1)


def _active(otel) -> dict[str, int]:
    return {dict(k)["execution.status"]: v for k, v in otel.sums("execution.active").items()}


def test_a_handed_off_execution_ends_its_span_in_its_status_with_no_sample(instrument):
    otel = instrument()
    tracker = telemetry.current().tracker
    tracker.transition("t", "running", STEP)
    tracker.transition("t", "retrying", STEP)
    tracker.hand_off("t")
    (span,) = otel.spans()
    assert span.name == "task"
    assert span.attributes["execution.status"] == "retrying"
    assert "cicd.pipeline.task.run.result" not in span.attributes
    assert [event.attributes["execution.status.to"] for event in span.events] == [
        "running",
        "retrying",
    ]
    # The run's time is recorded; the time in retrying belongs to whoever carries it on.
    assert otel.transition_counts() == {("running", "retrying"): 1}
    assert _active(otel) == {"running": 0, "retrying": 0}
    assert tracker.in_flight_count() == 0


def test_the_process_that_carries_it_on_measures_the_status_it_was_handed(instrument):
    """The next attempt starts in the status the last one left, at the time it began (as a
    message's headers carry it), and its span is a child of the context that travelled."""
    otel = instrument()
    tracker = telemetry.current().tracker
    tracker.transition("t", "running", STEP)
    tracker.transition("t", "retrying", STEP)
    retried_at = time.time()
    carrier: dict[str, str] = {}
    tracing.inject(carrier, tracker.context_of("t"))
    tracker.hand_off("t")

    context = tracing.extract(carrier)
    tracker.transition("t#1", "retrying", RETRY, timestamp=retried_at, parent_context=context)
    tracker.transition("t#1", "running", RETRY)
    tracker.transition("t#1", "succeeded", RETRY)
    first, second = otel.spans()
    assert second.parent.span_id == first.context.span_id
    assert second.context.trace_id == first.context.trace_id
    assert abs(second.start_time - retried_at * 1e9) < 1e6  # backdated to the retry
    assert otel.transition_counts() == {
        ("running", "retrying"): 1,
        ("retrying", "running"): 1,
        ("running", "succeeded"): 1,
    }
    assert second.attributes["execution.attempt"] == 1


def test_hand_off_of_nothing_or_of_an_ended_execution_does_nothing(instrument):
    otel = instrument()
    tracker = telemetry.current().tracker
    tracker.hand_off("never seen")
    tracker.transition("t", "running", STEP)
    tracker.transition("t", "succeeded", STEP)
    tracker.hand_off("t")
    (span,) = otel.spans()
    assert span.attributes["execution.status"] == "succeeded"
    assert otel.transition_counts() == {("running", "succeeded"): 1}


def test_extract_without_a_trace_is_a_root_not_the_current_context(instrument):
    instrument()
    with trace.get_tracer("test").start_as_current_span("current"):
        context = tracing.extract({"unrelated": 1})
    assert trace.get_current_span(context) is trace.INVALID_SPAN


def test_flush_exports_what_a_batch_processor_holds():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    # A schedule far longer than the test: only a flush exports.
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))
    live = Telemetry.create(ExecStatusConfig(), tracer_provider=provider)
    live.tracker.transition("t", "running", STEP)
    live.tracker.transition("t", "succeeded", STEP)
    assert exporter.get_finished_spans() == ()
    live.exporters.flush()
    assert [span.name for span in exporter.get_finished_spans()] == ["task"]
    provider.shutdown()


class _FailingFlush(TracerProvider):
    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        raise RuntimeError("exporter broke")


def test_a_flush_that_raises_is_logged_not_raised(caplog, monkeypatch):
    monkeypatch.setattr(safety, "_reported", set())  # logged once per process otherwise
    live = Telemetry.create(ExecStatusConfig(), tracer_provider=_FailingFlush())
    live.exporters.flush()
    assert "flushing the telemetry" in caplog.text
