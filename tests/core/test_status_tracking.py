"""The core's transition function, driven through the public API (no orchestrator needed)."""

from __future__ import annotations

import copy
import json
import pickle
import threading
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import StatusCode

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry
from opentelemetry_instrumentation_execstatus.identity import Identity


def test_pipeline_and_step_spans_with_status_events_and_parentage(instrument):
    otel = instrument()
    api.report_status("run-1", "queued", level="pipeline", pipeline="nightly")
    api.report_status("run-1", "running")
    api.report_status("run-1/load", "running", name="load", parent_id="run-1")
    api.report_status("run-1/load", "succeeded")
    api.report_status("run-1", "succeeded")

    run, load = otel.span("RUN nightly"), otel.span("load")
    assert load.parent is not None and load.parent.span_id == run.context.span_id
    assert load.context.trace_id == run.context.trace_id
    assert run.parent is None
    assert dict(run.attributes) == {
        "execution.orchestrator": "api",
        "execution.level": "pipeline",
        "cicd.pipeline.name": "nightly",
        "cicd.pipeline.run.id": "run-1",
        "execution.status": "succeeded",
        "execution.cached": False,
        "cicd.pipeline.result": "success",
    }
    assert load.attributes["cicd.pipeline.task.name"] == "load"
    assert load.attributes["cicd.pipeline.name"] == "nightly"  # inherited from the parent
    assert load.attributes["cicd.pipeline.task.run.result"] == "success"
    assert run.status.status_code is StatusCode.UNSET
    assert [
        (e.name, e.attributes.get("execution.status.from"), e.attributes["execution.status.to"])
        for e in run.events
    ] == [
        ("execution.status_change", None, "queued"),
        ("execution.status_change", "queued", "running"),
        ("execution.status_change", "running", "succeeded"),
    ]


def test_histogram_records_time_in_previous_status_with_its_labels(instrument):
    otel = instrument()
    start = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    api.report_status("r", "queued", level="pipeline", pipeline="etl", timestamp=start)
    api.report_status("r", "running", timestamp=start + timedelta(seconds=90))
    api.report_status("r", "failed", timestamp=start + timedelta(seconds=100), error="Timeout")

    metric, scope = otel.metric("execution.status_transition.duration")
    assert metric.unit == "s"
    assert scope.name == "opentelemetry_instrumentation_execstatus"
    assert scope.schema_url.startswith("https://opentelemetry.io/schemas/")
    points = otel.transitions(execution_level="pipeline")
    assert set(points) == {("queued", "running"), ("running", "failed")}
    queued = points[("queued", "running")]
    assert queued.count == 1
    assert queued.sum == pytest.approx(90.0, abs=1e-3)
    assert dict(queued.attributes) == {
        "execution.status.from": "queued",
        "execution.status.to": "running",
        "execution.orchestrator": "api",
        "execution.level": "pipeline",
        "cicd.pipeline.name": "etl",
    }
    assert points[("running", "failed")].sum == pytest.approx(10.0, abs=1e-3)
    assert queued.explicit_bounds[0] == 0.001 and queued.explicit_bounds[-1] == 86400.0
    span = otel.span("RUN etl")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "Timeout"
    assert span.attributes["cicd.pipeline.result"] == "failure"
    assert (span.end_time - span.start_time) == pytest.approx(100e9, rel=1e-6)


def test_exception_gives_qualified_error_type_and_exception_event(instrument):
    otel = instrument()
    api.report_status("s", "running", name="parse")
    api.report_status("s", "system_error", error=KeyError("k"))
    span = otel.span("parse")
    assert span.attributes["error.type"] == "KeyError"
    assert span.attributes["cicd.pipeline.task.run.result"] == "error"
    assert [e.name for e in span.events][-1] == "exception"


def test_no_sample_for_first_status_nor_for_same_canonical_status(instrument):
    otel = instrument()
    api.report_status("a", "running", name="a")
    api.report_status("a", "RUNNING")  # same canonical status: nothing
    api.report_status("a", "cached")
    assert set(otel.transitions()) == {("running", "cached")}
    span = otel.span("a")
    assert span.attributes["execution.cached"] is True
    assert span.attributes["execution.status"] == "cached"
    assert len(span.events) == 2


def test_unknown_status_maps_to_unknown(instrument):
    otel = instrument()
    api.report_status("x", "running", name="x")
    api.report_status("x", "exploded-sideways")
    api.report_status("x", "failed")
    assert set(otel.transitions()) == {("running", "unknown"), ("unknown", "failed")}


def test_negative_duration_clamps_to_zero(instrument):
    otel = instrument()
    now = datetime.now(timezone.utc)
    api.report_status("n", "running", name="n", timestamp=now)
    api.report_status("n", "succeeded", timestamp=now - timedelta(seconds=30))  # clock skew
    assert otel.transitions()[("running", "succeeded")].sum == 0.0


def test_duplicate_and_out_of_order_events_are_tolerated(instrument):
    otel = instrument()
    before = datetime.now(timezone.utc)
    api.report_status("d", "succeeded", name="d")  # an end without a start
    api.report_status("d", "succeeded")  # a second stop
    api.report_status("d", "running", timestamp=before)  # a late event: it happened before
    assert [s.name for s in otel.spans()] == ["d"]
    assert otel.transitions() == {}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_a_reused_id_after_the_end_is_a_new_execution(instrument):
    otel = instrument()
    api.report_status("nightly", "running", name="first", level="pipeline")
    api.report_status("nightly", "succeeded")
    api.report_status("nightly", "running", name="second", level="pipeline")  # a re-run
    api.report_status("nightly", "failed")
    assert [s.name for s in otel.spans()] == ["RUN first", "RUN second"]
    first, second = otel.spans()
    assert second.start_time >= first.end_time
    assert second.attributes["execution.status"] == "failed"
    assert otel.transition_counts() == {("running", "succeeded"): 1, ("running", "failed"): 1}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_active_gauge_follows_status_and_returns_to_zero(instrument):
    otel = instrument()
    api.report_status("g1", "queued", name="g")
    api.report_status("g2", "queued", name="g")
    api.report_status("g1", "running")

    def active():
        return {dict(k)["execution.status"]: v for k, v in otel.sums("execution.active").items()}

    assert active() == {"queued": 1, "running": 1}
    api.report_status("g1", "succeeded")
    api.report_status("g2", "cancelled")
    assert active() == {"queued": 0, "running": 0}


def test_state_is_bounded_and_evicted_spans_end_as_unknown(instrument):
    otel = instrument(max_in_flight=10)
    for index in range(25):
        api.report_status(f"e{index}", "running", name="e")
    tracker = telemetry.current().tracker
    assert tracker.in_flight_count() == 10
    ended = otel.spans()
    assert len(ended) == 15
    assert {s.attributes["execution.status"] for s in ended} == {"unknown"}
    assert sum(otel.sums("execution.active").values()) == 10
    for index in range(15, 25):
        api.report_status(f"e{index}", "succeeded")
    assert tracker.in_flight_count() == 0


def test_many_executions_leave_no_state_behind(instrument):
    instrument()
    for index in range(5_000):
        api.report_status(index, "running", name="step")
        api.report_status(index, "succeeded")
    assert telemetry.current().tracker.in_flight_count() == 0


def test_names_over_the_cardinality_cap_become_other(instrument):
    otel = instrument(name_cardinality_limit=2)
    for name in ("a", "b", "c", "d"):
        api.report_status(name, "running", name=name, pipeline=f"p-{name}")
        api.report_status(name, "succeeded")
    tasks = {
        dict(p.attributes)["cicd.pipeline.task.name"]
        for p in otel.points("execution.status_transition.duration")
    }
    assert tasks == {"a", "b", "_OTHER"}
    assert otel.span("d").attributes["cicd.pipeline.task.name"] == "d"  # spans keep full names


def test_names_can_be_kept_off_metrics(instrument):
    otel = instrument(names_on_metrics=False)
    api.report_status("n", "running", name="secret-customer-42", pipeline="p")
    api.report_status("n", "succeeded")
    (point,) = otel.points("execution.status_transition.duration")
    assert "cicd.pipeline.task.name" not in point.attributes
    assert "cicd.pipeline.name" not in point.attributes


def test_items_have_no_spans_unless_asked(instrument):
    otel = instrument()
    api.report_status("i", "running", level="item", name="row")
    api.report_status("i", "succeeded")
    assert otel.spans() == []
    assert set(otel.transitions(execution_level="item")) == {("running", "succeeded")}


def test_item_spans_when_switched_on(instrument):
    otel = instrument(item_spans=True)
    api.report_status("i", "running", level="item", name="row")
    api.report_status("i", "succeeded")
    assert otel.span("row").attributes["execution.level"] == "item"


def test_histogram_is_recorded_in_the_execution_span_context(instrument):
    otel = instrument()
    api.report_status("x", "running", name="x")
    api.report_status("x", "failed")
    (point,) = otel.points("execution.status_transition.duration")
    span = otel.span("x")
    assert [e.span_id for e in point.exemplars] == [span.context.span_id]


def test_suppressed_instrumentation_records_nothing(instrument):
    otel = instrument()
    with suppress_instrumentation():
        api.report_status("s", "running", name="s")
        api.report_status("s", "succeeded")
    assert otel.spans() == []
    assert otel.points("execution.status_transition.duration") == []


def test_pipeline_span_joins_the_callers_trace(instrument):
    otel = instrument()
    tracer = otel.tracer_provider.get_tracer("caller")
    with tracer.start_as_current_span("scheduler tick") as tick:
        api.report_status("r", "running", level="pipeline", pipeline="p")
    api.report_status("r", "succeeded")
    assert otel.span("RUN p").parent.span_id == tick.get_span_context().span_id
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_concurrent_transitions_from_many_threads(instrument):
    otel = instrument()
    barrier = threading.Barrier(8)

    def run(worker: int) -> None:
        barrier.wait()
        for index in range(200):
            key = (worker, index)
            api.report_status(key, "queued", name="t")
            api.report_status(key, "running")
            api.report_status(key, "succeeded")

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    points = otel.transitions()
    assert points[("queued", "running")].count == 1600
    assert points[("running", "succeeded")].count == 1600
    assert len(otel.spans()) == 1600
    assert set(otel.sums("execution.active").values()) == {0}
    assert telemetry.current().tracker.in_flight_count() == 0


def test_api_is_a_no_op_when_not_instrumented(otel):
    api.report_status("z", "running")
    api.report_worker_spawn(success=True)
    assert telemetry.current() is None


def test_executions_in_flight_at_exit_end_as_cancelled(instrument):
    otel = instrument()
    api.report_status("r", "running", level="pipeline", pipeline="p")
    api.report_status("r/s", "running", name="s", parent_id="r")
    telemetry.current().tracker.end_in_flight(grace_seconds=0.01)
    assert {s.name: s.attributes["execution.status"] for s in otel.spans()} == {
        "RUN p": "cancelled",
        "s": "cancelled",
    }
    assert telemetry.current().tracker.in_flight_count() == 0


def test_correlation_id_is_carried_on_the_span(instrument):
    otel = instrument()
    api.report_status("r", "running", level="pipeline", pipeline="p", correlation_id="order-7")
    api.report_status("r", "succeeded")
    assert otel.span("RUN p").attributes["execution.correlation_id"] == "order-7"


def test_work_the_orchestrator_traces_itself_gets_metrics_but_no_span(instrument):
    """emit_span=False: no second span; the histogram's exemplar is the orchestrator's span."""
    otel = instrument()
    tracker = telemetry.current().tracker
    # A traced parent of ours: the untraced child's exemplar must not lead to it.
    tracker.transition("run", "running", Identity("loom", "pipeline", name="p"))
    tracer = otel.tracer_provider.get_tracer("orchestrator")
    with tracer.start_as_current_span("step:load") as own_span:
        for status in ("running", "succeeded"):
            tracker.transition(
                "k", status, Identity("loom", "step", name="load", parent="run"), emit_span=False
            )
    assert [s.name for s in otel.spans()] == ["step:load"]
    (point,) = otel.points("execution.status_transition.duration")
    assert dict(point.attributes)["cicd.pipeline.task.name"] == "load"
    assert [e.span_id for e in point.exemplars] == [own_span.get_span_context().span_id]
    tracker.transition("run", "succeeded", Identity("loom", "pipeline"))
    assert tracker.in_flight_count() == 0


def test_work_traced_by_another_gets_the_status_events_in_its_span(instrument):
    """emit_span=False: the other tracer's span, current at the first status, gets an event
    per status change, and is left for its tracer to end."""
    otel = instrument()
    tracker = telemetry.current().tracker
    step = Identity("celery", "step", name="task")
    tracer = otel.tracer_provider.get_tracer("another instrumentation")
    with tracer.start_as_current_span("run/task") as their_span:
        for status in ("queued", "running", "succeeded"):
            tracker.transition("k", status, step, emit_span=False)
        assert their_span.is_recording()  # not ended by us
    (span,) = otel.spans()
    assert span.name == "run/task"
    assert [dict(e.attributes) for e in span.events] == [
        {"execution.status.to": "queued"},
        {"execution.status.from": "queued", "execution.status.to": "running"},
        {"execution.status.from": "running", "execution.status.to": "succeeded"},
    ]
    assert "execution.status" not in span.attributes


def test_work_traced_by_a_span_that_does_not_record_gets_no_events(instrument):
    otel = instrument()
    tracker = telemetry.current().tracker
    for status in ("running", "succeeded"):  # no span current: nothing to add events to
        tracker.transition("k", status, Identity("celery", "step", name="t"), emit_span=False)
    assert otel.spans() == []
    assert otel.transition_counts() == {("running", "succeeded"): 1}


def test_uninstrument_ends_what_is_in_flight_as_cancelled(otel):
    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    api.report_status("u", "queued", level="pipeline", pipeline="nightly")
    api.report_status("u/a", "running", name="a", parent_id="u")
    api.report_status("u/b", "queued", name="b", parent_id="u")
    instrumentor.uninstrument()
    spans = {span.name: span for span in otel.spans()}
    assert set(spans) == {"RUN nightly", "a", "b"}
    assert {span.attributes["execution.status"] for span in spans.values()} == {"cancelled"}
    assert set(otel.sums("execution.active").values()) == {0}
    api.report_status("u/a", "succeeded")  # a thread still finishing: nothing more recorded
    assert len(otel.spans()) == 3


def test_a_late_event_admits_no_name_to_the_metrics(instrument):
    """Dropped events must not use up the name-cardinality budget of real executions."""
    otel = instrument(name_cardinality_limit=2)
    before = datetime.now(timezone.utc)
    api.report_status("a", "running", name="first")
    api.report_status("a", "succeeded")
    api.report_status("a", "running", name="intruder", timestamp=before)  # late: dropped
    api.report_status("b", "running", name="second")
    api.report_status("b", "succeeded")
    assert set(otel.transition_counts(cicd_pipeline_task_name="second")) == {
        ("running", "succeeded")
    }
    assert not otel.transition_counts(cicd_pipeline_task_name="_OTHER")


def test_metric_points_copy_and_serialise_as_exporters_need(instrument):
    """The console exporter writes ``to_json()`` of the metrics data, which deep-copies each
    point's attributes (SDK 1.41, the newest for Python 3.9), and a process-pool exporter
    pickles them: the attributes the tracker shares between samples must allow both."""
    otel = instrument()
    api.report_status("copied", "running", name="load")
    api.report_status("copied", "succeeded")
    api.report_status("still-running", "running", name="load")

    exported = json.loads(otel.reader.get_metrics_data().to_json())

    names = {
        metric["name"]
        for resource in exported["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
    }
    assert {"execution.status_transition.duration", "execution.active"} <= names
    for name in ("execution.status_transition.duration", "execution.active"):
        attributes = otel.points(name)[0].attributes
        assert copy.deepcopy(attributes) == attributes
        assert pickle.loads(pickle.dumps(attributes)) == attributes


def test_transition_on_makes_the_same_change_as_transition(instrument):
    """The positional entry point the public API uses after its own off check: the same span,
    events and histogram samples as ``transition``, for a step that fails."""
    otel = instrument()
    tracker = telemetry.current().tracker
    for key, name, report in (
        ("by-keyword", "keyword", tracker.transition),
        ("by-position", "position", tracker.transition_on),
    ):
        identity = Identity("api", "step", name=name, pipeline="nightly", attempt=2)
        report(key, "queued", identity)
        report(key, "running", identity)
        report(key, "failed", identity, error_type="Timeout")

    def described(span):
        attributes = {k: v for k, v in span.attributes.items() if k != "cicd.pipeline.task.name"}
        events = [(event.name, dict(event.attributes)) for event in span.events]
        return attributes, events, span.status.status_code, span.status.description

    assert described(otel.span("keyword")) == described(otel.span("position"))
    samples = {}
    for point in otel.points("execution.status_transition.duration"):
        labels = tuple(
            sorted(i for i in point.attributes.items() if i[0] != "cicd.pipeline.task.name")
        )
        samples[labels] = samples.get(labels, 0) + point.count
    assert sorted(samples.values()) == [2, 2]  # queued -> running, running -> failed: twice each
