"""The test OTLP receiver (tests/otlp_receiver.py) against the real SDK and its real OTLP/HTTP
exporters, in one process and in a forked child sharing its parent's pooled connection."""

from __future__ import annotations

import http.client
import multiprocessing
import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from otlp_receiver import OtlpReceiver, PidStampingSession

RESOURCE = Resource.create({"service.name": "receiver-test", "process.pid": os.getpid()})


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def tracer_provider(receiver: OtlpReceiver, **exporter: Any) -> TracerProvider:
    provider = TracerProvider(resource=RESOURCE)
    span_exporter = OTLPSpanExporter(
        endpoint=f"{receiver.endpoint}/v1/traces", session=PidStampingSession(), **exporter
    )
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    return provider


def meter_provider(receiver: OtlpReceiver, **exporter: Any) -> MeterProvider:
    metric_exporter = OTLPMetricExporter(
        endpoint=f"{receiver.endpoint}/v1/metrics", session=PidStampingSession(), **exporter
    )
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=600_000)
    return MeterProvider(resource=RESOURCE, metric_readers=[reader])


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_spans_arrive_as_plain_values(receiver: OtlpReceiver, compression: Compression) -> None:
    provider = tracer_provider(receiver, compression=compression)
    tracer = provider.get_tracer("receiver.test")
    start, attributes = tracer.start_as_current_span, {"n": 3, "tags": ["a", "b"]}
    with (
        start("outer", kind=SpanKind.CONSUMER) as outer,
        start("in", attributes=attributes) as span,
    ):
        span.add_event("retrying", {"attempt": 1})
        span.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    inner, outer_span = receiver.spans("in")[0], receiver.spans("outer")[0]
    context = outer.get_span_context()
    assert outer_span.trace_id == f"{context.trace_id:032x}"
    assert outer_span.span_id == f"{context.span_id:016x}"
    assert outer_span.parent_span_id is None and outer_span.kind == SpanKind.CONSUMER.name
    assert inner.parent_span_id == outer_span.span_id and inner.trace_id == outer_span.trace_id
    assert inner.kind == "INTERNAL" and inner.scope == "receiver.test"
    assert inner.attributes == {"n": 3, "tags": ("a", "b")}
    assert [(e.name, e.attributes) for e in inner.events] == [("retrying", {"attempt": 1})]
    assert inner.events[0].time_ns >= inner.start_ns
    assert (inner.status_code, inner.status_description) == ("ERROR", "boom")
    assert outer_span.start_ns <= inner.start_ns <= inner.end_ns <= outer_span.end_ns
    assert inner.resource["service.name"] == "receiver-test"
    assert inner.resource["process.pid"] == os.getpid() == inner.pid
    assert receiver.errors() == []


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_metric_points_arrive_as_plain_values(
    receiver: OtlpReceiver, compression: Compression
) -> None:
    provider = meter_provider(receiver, compression=compression)
    meter = provider.get_meter("receiver.test")
    meter.create_counter("jobs", unit="{job}").add(2, {"state": "ok"})
    meter.create_up_down_counter("busy").add(-1)
    meter.create_gauge("load").set(0.5)
    meter.create_histogram("wait", unit="s").record(0.3, {"queue": "q"})
    provider.shutdown()  # one export

    (jobs,) = receiver.points("jobs")
    assert (jobs.kind, jobs.unit, jobs.attributes, jobs.value) == (
        "sum",
        "{job}",
        {"state": "ok"},
        2,
    )
    assert jobs.resource["service.name"] == "receiver-test" and jobs.pid == os.getpid()
    assert jobs.scope == "receiver.test" and jobs.time_ns >= jobs.start_ns > 0
    assert [p.value for p in receiver.points("busy")] == [-1]
    assert [(p.kind, p.value) for p in receiver.points("load")] == [("gauge", 0.5)]
    (wait,) = receiver.points("wait")
    assert (wait.kind, wait.unit, wait.count, wait.sum) == ("histogram", "s", 1, 0.3)
    assert sum(wait.bucket_counts) == 1 and len(wait.bucket_counts) == len(wait.explicit_bounds) + 1
    assert receiver.metric_names() >= {"jobs", "busy", "load", "wait"}


def test_cumulative_points_of_each_export_and_the_latest(receiver: OtlpReceiver) -> None:
    provider = meter_provider(receiver)
    counter = provider.get_meter("receiver.test").create_counter("jobs")
    for _ in range(3):
        counter.add(1)
        provider.force_flush()
    provider.shutdown()
    assert [p.value for p in receiver.points("jobs")][:3] == [1, 2, 3]
    assert [p.value for p in receiver.latest_points("jobs")] == [3]
    receiver.clear()
    assert receiver.points("jobs") == [] and receiver.requests() == []


def test_logs_answered_and_unknown_paths_refused(receiver: OtlpReceiver) -> None:
    connection = http.client.HTTPConnection(receiver.endpoint.removeprefix("http://"))
    statuses = []
    for path in ("/v1/logs", "/v1/other", "/v1/traces"):  # one kept-alive connection
        body = b"" if path != "/v1/traces" else b"\xff\xff"  # the last one does not decode
        connection.request("POST", path, body, {"Content-Type": "application/x-protobuf"})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    assert statuses == [200, 404, 400]
    assert [request.path for request in receiver.requests()] == [
        "/v1/logs",
        "/v1/other",
        "/v1/traces",
    ]
    assert len(receiver.errors()) == 2 and receiver.spans() == []


def test_wait_for_returns_the_value_or_says_what_arrived(receiver: OtlpReceiver) -> None:
    provider = tracer_provider(receiver)
    with provider.get_tracer("t").start_as_current_span("arrived"):
        pass
    spans = receiver.wait_for(lambda r: r.spans("arrived"), timeout=5)
    assert [span.name for span in spans] == ["arrived"]
    with pytest.raises(AssertionError, match=r"not yet a span 'missing'.*'arrived'"):
        receiver.wait_for(lambda r: r.spans("missing"), timeout=0.2, what="a span 'missing'")
    provider.shutdown()


def _export_in_child(provider: TracerProvider, names: list[str]) -> None:
    """Runs in the forked child: the parent's provider, exporter, session and connection."""
    tracer = provider.get_tracer("child")
    for name in names:
        with tracer.start_as_current_span(name):
            pass


# Forking with the receiver's threads running is the point: the child touches none of them.
FORK_WITH_THREADS = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


@FORK_WITH_THREADS
def test_a_forked_child_exports_over_its_parents_connection(receiver: OtlpReceiver) -> None:
    provider = tracer_provider(receiver)
    tracer = provider.get_tracer("parent")
    with tracer.start_as_current_span("parent-before"):
        pass  # opens the pooled connection the child inherits
    child = multiprocessing.get_context("fork").Process(
        target=_export_in_child, args=(provider, ["child"])
    )
    child.start()
    child.join(timeout=30)
    with tracer.start_as_current_span("parent-after"):
        pass
    provider.shutdown()

    assert child.exitcode == 0
    requests = receiver.requests()
    assert [request.pid for request in requests] == [os.getpid(), child.pid, os.getpid()]
    assert len({request.client for request in requests}) == 1, "one connection for both"
    assert [(span.name, span.pid) for span in receiver.spans()] == [
        ("parent-before", os.getpid()),
        ("child", child.pid),
        ("parent-after", os.getpid()),
    ]


@FORK_WITH_THREADS
def test_interleaved_exports_of_parent_and_child_on_one_socket(receiver: OtlpReceiver) -> None:
    """Both export at once over the inherited socket: requests may then interleave byte-wise
    (headers and body go in separate writes), which the receiver answers with 400 and a closed
    connection, as a collector would; it keeps serving and both processes finish."""
    provider = tracer_provider(receiver, timeout=5)
    tracer = provider.get_tracer("parent")
    with tracer.start_as_current_span("opening"):
        pass
    names = [f"span-{index}" for index in range(40)]
    child = multiprocessing.get_context("fork").Process(
        target=_export_in_child, args=(provider, names)
    )
    child.start()
    _export_in_child(provider, names)
    child.join(timeout=60)
    with tracer.start_as_current_span("closing"):
        pass
    provider.shutdown()

    assert child.exitcode == 0
    pids = {span.pid for span in receiver.spans() if span.name.startswith("span-")}
    assert pids == {os.getpid(), child.pid}
    assert receiver.spans("closing"), receiver.summary()
