"""Spans reserved where an execution starts and written where it ends (``reserved_spans``), as
an adapter does it (a Celery canvas): ``Adapter.reserve_span`` in the process that starts the
run, its work under ``tracing.reserved_parent`` wherever it runs, and the run reported under
``tracing.opening_reserved`` by the process that sees it end. "Another process" is simulated
by what crosses one: text in a carrier, and no span current where the run is written."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import NoOpTracerProvider, SpanContext, TraceFlags

from opentelemetry_instrumentation_execstatus import safety, telemetry, tracing
from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)

RUN_NAME = "RUN remote"


class _RemoteRunAdapter(Adapter):
    """A run that starts here and ends elsewhere: what starts it reserves its span and hands
    on a message (a dict); its steps and its end are reported from that message alone."""

    name = "remote-runs"
    orchestrator = Orchestrator.UNKNOWN
    top_module = "json"
    distribution = None

    def patches(self) -> list:
        return []

    def start(self, run_id: str = "run-1") -> dict[str, Any]:
        """Where the run starts: its reserved span, the caller's context, the start time."""
        parent: dict[str, str] = {}
        tracing.inject(parent)
        reserved = self.reserve_span(RUN_NAME)
        return {"id": run_id, "span": reserved, "parent": parent, "started": time.time()}

    def step(self, message: dict[str, Any], name: str) -> None:
        """A step of the run, run anywhere: under its run's reserved span."""
        key = self.key(message["id"], name)
        identity = self.identity(ExecutionLevel.STEP, name=name, pipeline="remote")
        under = tracing.reserved_parent(message["span"])
        self.report(key, ExecutionStatus.RUNNING, identity, parent_context=under)
        self.report(key, ExecutionStatus.SUCCEEDED, identity)

    def open_run(self, message: dict[str, Any]) -> tuple:
        """Where the run ends: its span opened now, under the ids reserved at its start,
        from its start time."""
        key = self.key("run", message["id"])
        identity = self.identity(ExecutionLevel.PIPELINE, pipeline="remote", run_id=message["id"])
        parent = tracing.extract(message["parent"])
        opening = tracing.opening_reserved(parent, message["span"])
        self.report(
            key,
            ExecutionStatus.RUNNING,
            identity,
            timestamp=message["started"],
            parent_context=opening,
        )
        return key, identity

    def end_run(self, message: dict[str, Any]) -> None:
        key, identity = self.open_run(message)
        self.report(key, ExecutionStatus.SUCCEEDED, identity)


@pytest.fixture
def internal_errors(monkeypatch, caplog) -> Any:
    """What the instrumentation logged of its own errors (each of them, not only the first of
    each place in the process): call it for the messages so far."""
    monkeypatch.setattr(safety, "_reported", set())
    caplog.set_level(logging.WARNING, logger=safety._LOG.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == safety._LOG.name]


def _ids(text: str) -> SpanContext:
    """The span context a reservation's text names (``tracing.reserved_parent``'s)."""
    context = tracing.reserved_parent(text)
    assert context is not None, text
    return trace.get_current_span(context).get_span_context()


def _sampled_by(sampler: Any) -> tuple[telemetry.Telemetry, InMemorySpanExporter]:
    """A telemetry of its own, on an SDK whose sampler is ``sampler``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return telemetry.Telemetry.create(ExecStatusConfig(), tracer_provider=provider), exporter


def test_a_reserved_span_is_written_with_its_ids_under_its_parent_from_its_start(instrument):
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())
    caller = otel.tracer_provider.get_tracer("caller")
    with caller.start_as_current_span("caller") as parent:
        message = adapter.start()
    reserved = _ids(message["span"])
    assert reserved.trace_id == parent.get_span_context().trace_id
    assert reserved.trace_flags.sampled
    time.sleep(0.01)  # the run's span begins at its start, not when it is written
    adapter.end_run(message)
    run = otel.span(RUN_NAME)
    assert (run.context.trace_id, run.context.span_id) == (reserved.trace_id, reserved.span_id)
    assert run.parent.span_id == parent.get_span_context().span_id
    assert abs(run.start_time - message["started"] * 1e9) < 1e6
    assert run.attributes["execution.level"] == "pipeline"
    assert run.attributes["cicd.pipeline.run.id"] == "run-1"
    assert otel.transition_counts(execution_level="pipeline") == {("running", "succeeded"): 1}


def test_a_reserved_root_is_written_as_that_root(instrument):
    """No span current where the run starts: its reserved trace is a new one, its own."""
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())
    message = adapter.start()
    adapter.end_run(message)
    run, reserved = otel.span(RUN_NAME), _ids(message["span"])
    assert run.parent is None
    assert (run.context.trace_id, run.context.span_id) == (reserved.trace_id, reserved.span_id)


def test_steps_under_the_reserved_parent_are_children_of_the_span_written_later(instrument):
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())
    with otel.tracer_provider.get_tracer("caller").start_as_current_span("caller"):
        message = adapter.start()
    adapter.step(message, "first")  # the steps end before their run's span is written
    adapter.step(message, "second")
    adapter.end_run(message)
    run = otel.span(RUN_NAME)
    for name in ("first", "second"):
        step = otel.span(name)
        assert step.parent.span_id == run.context.span_id
        assert step.context.trace_id == run.context.trace_id
        assert step.context.span_id != run.context.span_id


def test_children_opened_under_the_written_span_get_ids_of_their_own(instrument):
    """The run's context, once its span is open, no longer asks for the reserved ids: a child
    opened under it (as its parent execution, or as the current context) is a new span."""
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())
    tracker = telemetry.current().tracker
    message = adapter.start()
    run_key, run_identity = adapter.open_run(message)
    child = adapter.identity(ExecutionLevel.STEP, name="by key", parent=run_key)
    adapter.report(("c", 1), ExecutionStatus.RUNNING, child)
    adapter.report(("c", 1), ExecutionStatus.SUCCEEDED, child)
    token = tracing.attach(tracker.context_of(run_key))
    try:
        current = adapter.identity(ExecutionLevel.STEP, name="by context")
        adapter.report(("c", 2), ExecutionStatus.RUNNING, current)
        adapter.report(("c", 2), ExecutionStatus.SUCCEEDED, current)
    finally:
        tracing.detach(token)
    adapter.report(run_key, ExecutionStatus.SUCCEEDED, run_identity)
    run = otel.span(RUN_NAME)
    by_key, by_context = otel.span("by key"), otel.span("by context")
    assert run.context.span_id == _ids(message["span"]).span_id
    for step in (by_key, by_context):
        assert step.parent.span_id == run.context.span_id
        assert step.context.span_id != run.context.span_id
    assert by_key.context.span_id != by_context.context.span_id


class _OnRunStart(SpanProcessor):
    """Calls ``meanwhile`` while the reserved span is being started (its ids handed out to
    the thread starting it), once."""

    def __init__(self, meanwhile: Any) -> None:
        self._meanwhile = meanwhile

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.name == RUN_NAME and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()

    def called(self) -> bool:
        return self._meanwhile is None


def test_spans_started_meanwhile_on_other_threads_and_after_keep_their_own_ids(instrument):
    """The reserved ids go to the one span the writing thread starts: spans another thread
    starts meanwhile, and the next ones of the writing thread, get new ones."""
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())
    message = adapter.start()

    def another_thread_starts_a_step() -> None:
        other = threading.Thread(target=adapter.step, args=(message, "meanwhile"))
        other.start()
        other.join(10)

    on_run_start = _OnRunStart(another_thread_starts_a_step)
    otel.tracer_provider.add_span_processor(on_run_start)
    adapter.end_run(message)
    assert on_run_start.called()
    adapter.step(message, "after")
    reserved = _ids(message["span"])
    run, meanwhile, after = otel.span(RUN_NAME), otel.span("meanwhile"), otel.span("after")
    assert run.context.span_id == reserved.span_id
    for step in (meanwhile, after):
        assert step.context.span_id != reserved.span_id
        assert step.parent.span_id == reserved.span_id


def test_a_root_the_sampler_drops_is_reserved_unsampled_and_nothing_of_it_is_exported():
    live, exporter = _sampled_by(ParentBased(ALWAYS_OFF))
    adapter = _RemoteRunAdapter(live)
    message = adapter.start()
    assert not _ids(message["span"]).trace_flags.sampled
    adapter.step(message, "step")
    adapter.end_run(message)
    assert exporter.get_finished_spans() == ()
    assert live.tracker.in_flight_count() == 0


def test_a_reservation_under_a_sampled_parent_is_sampled_as_the_sdk_samples_its_children():
    """The same sampler keeps what a sampled caller starts: the decision is the sampler's,
    asked at the reservation as the SDK asks it at a span's start."""
    live, exporter = _sampled_by(ParentBased(ALWAYS_OFF))
    adapter = _RemoteRunAdapter(live)
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = tracing.attach(trace.set_span_in_context(trace.NonRecordingSpan(caller)))
    try:
        message = adapter.start()
    finally:
        tracing.detach(token)
    assert _ids(message["span"]).trace_flags.sampled
    adapter.step(message, "step")
    adapter.end_run(message)
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == [RUN_NAME, "step"]
    run = next(span for span in exporter.get_finished_spans() if span.name == RUN_NAME)
    assert (run.context.trace_id, run.parent.span_id) == (0xABC, 0xDEF)


TRACE, SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
GARBAGE = [
    "junk",
    None,
    42,
    b"00-" + TRACE.encode() + b"-" + SPAN.encode() + b"-01",
    f"01-{TRACE}-{SPAN}-01",  # a version not written
    f"00-{'0' * 32}-{SPAN}-01",  # a zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # a zero span id
    f"00-{TRACE}-{SPAN}",  # a part missing
    f"00-{TRACE}-{SPAN}-01-00",  # a part too many
    f"00-{TRACE}-{SPAN}-zz",  # not hex
    f"00-{'f' * 40}-{SPAN}-01",  # a trace id too long
    "",
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=repr)
def test_garbage_for_a_reservation_changes_nothing_and_never_raises(
    instrument, internal_errors, garbage
):
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())
    parent = tracing.extract({"traceparent": f"00-{TRACE}-{SPAN}-01"})
    assert tracing.opening_reserved(parent, garbage) is parent
    assert tracing.reserved_parent(garbage) is None
    message = {"id": "g", "span": garbage, "parent": {}, "started": time.time()}
    with otel.tracer_provider.get_tracer("caller").start_as_current_span("caller") as caller:
        adapter.step(message, "step")  # no reserved parent: under the current context
    message["parent"] = {"traceparent": f"00-{TRACE}-{SPAN}-01"}
    adapter.end_run(message)
    run, step = otel.span(RUN_NAME), otel.span("step")
    assert (f"{run.context.trace_id:032x}", f"{run.parent.span_id:016x}") == (TRACE, SPAN)
    assert run.context.span_id != int(SPAN, 16)
    assert step.parent.span_id == caller.get_span_context().span_id
    assert internal_errors() == []


def test_a_failing_id_generator_still_reserves_random_valid_ids(instrument, internal_errors):
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())

    class _Broken:
        def generate_span_id(self) -> int:
            raise RuntimeError("no ids")

        def generate_trace_id(self) -> int:
            return 0

    tracer = telemetry.current().tracker._spans._tracer
    working, tracer.id_generator = tracer.id_generator, _Broken()
    try:
        message = adapter.start()
    finally:
        tracer.id_generator = working
    assert _ids(message["span"]).is_valid
    adapter.end_run(message)
    assert otel.span(RUN_NAME).context.span_id == _ids(message["span"]).span_id
    assert len(internal_errors()) == 1  # logged, once: "reserving a span's ids"


def test_without_an_sdk_reserving_gives_text_and_nothing_raises(internal_errors):
    live = telemetry.Telemetry.create(ExecStatusConfig(), tracer_provider=NoOpTracerProvider())
    adapter = _RemoteRunAdapter(live)
    message = adapter.start()
    assert isinstance(message["span"], str)
    assert _ids(message["span"]).is_valid
    adapter.step(message, "step")
    adapter.end_run(message)
    assert live.tracker.in_flight_count() == 0
    assert internal_errors() == []


def test_with_the_apis_proxy_tracer_reserving_works_before_and_after_the_sdk_arrives():
    """In a fresh interpreter (the global provider can be set once): instrumented before any
    SDK, the instrumentation's tracer is the API's proxy. Before the SDK, reserving gives text
    and nothing raises; once it is set, a reserved span is written under its reserved ids,
    even as the first span the proxy makes."""
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry
        from opentelemetry_instrumentation_execstatus import tracing
        from opentelemetry_instrumentation_execstatus.identity import Identity
        from opentelemetry_instrumentation_execstatus.semconv import (
            ExecutionLevel, Orchestrator,
        )

        ExecStatusInstrumentor().instrument()
        tracker = telemetry.current().tracker
        run = Identity(Orchestrator.API, ExecutionLevel.PIPELINE, pipeline="p")

        def write(key, reserved):
            opening = tracing.opening_reserved(tracing.Context(), reserved)
            tracker.transition(key, "running", run, parent_context=opening)
            tracker.transition(key, "succeeded", run)

        before = tracker.reserve_span(tracing.Context(), "RUN p")
        write("before", before)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        after = tracker.reserve_span(tracing.Context(), "RUN p")
        write("after", after)
        (span,) = exporter.get_finished_spans()
        print(type(before).__name__, tracing.reserved_parent(before) is not None)
        print(after == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["str", "True", "True"]


def test_reserving_does_not_start_or_record_anything(instrument):
    """A reservation is only ids: no span, no sample, nothing in flight until it is written."""
    otel = instrument()
    adapter = _RemoteRunAdapter(telemetry.current())
    first, second = adapter.start("a"), adapter.start("b")
    assert _ids(first["span"]).span_id != _ids(second["span"]).span_id
    assert otel.spans() == []
    assert otel.points("execution.status_transition.duration") == []
    assert telemetry.current().tracker.in_flight_count() == 0
