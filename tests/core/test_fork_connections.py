"""A forked child of an instrumented process exports on its own: its own connection to the OTLP
endpoint (without it the child writes on its parent's pooled socket, and their requests
interleave: opentelemetry-python#4994) and its own metric export lock, with the real OTLP/HTTP
exporters against the test receiver, which keeps connections alive as a collector does; and a
flush never waits longer than its bound."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from otlp_receiver import OtlpReceiver, PidStampingSession
from support import held_by_another_thread

from opentelemetry_instrumentation_execstatus import (
    ExecStatusInstrumentor,
    api,
    exporters,
    telemetry,
)
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

# Forking with the receiver's threads running is the point: the child touches none of them.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)
SPANS = 40


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def span_session() -> PidStampingSession:
    """The span exporter's session: each request says the pid of the process sending it."""
    return PidStampingSession()


@pytest.fixture
def providers(
    receiver: OtlpReceiver, span_session: PidStampingSession
) -> Iterator[tuple[TracerProvider, MeterProvider]]:
    """Providers exporting over OTLP/HTTP to the receiver; the instrumentation on, recording
    to them."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"{receiver.endpoint}/v1/traces", session=span_session, timeout=5
            )
        )
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(
            endpoint=f"{receiver.endpoint}/v1/metrics", session=PidStampingSession(), timeout=5
        ),
        export_interval_millis=600_000,
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield tracer_provider, meter_provider
    instrumentor.uninstrument()
    tracer_provider.shutdown()
    meter_provider.shutdown()


def _spans(provider: TracerProvider, names: list[str]) -> None:
    tracer = provider.get_tracer("fork test")
    for name in names:
        with tracer.start_as_current_span(name):
            pass


def test_a_forked_child_exports_over_a_connection_of_its_own(
    receiver: OtlpReceiver, providers: tuple[TracerProvider, MeterProvider]
) -> None:
    tracer_provider, meter_provider = providers
    _spans(tracer_provider, ["parent before"])  # opens the connection a child would inherit
    meter_provider.force_flush()
    child = multiprocessing.get_context("fork").Process(
        target=_spans, args=(tracer_provider, ["child"])
    )
    child.start()
    child.join(timeout=30)
    _spans(tracer_provider, ["parent after"])

    assert child.exitcode == 0
    connection = {request.pid: set() for request in receiver.requests()}
    for request in receiver.requests():
        connection[request.pid].add(request.client)
    assert set(connection) == {os.getpid(), child.pid}
    assert not connection[os.getpid()] & connection[child.pid], "a connection shared"
    assert [span.name for span in receiver.spans()] == ["parent before", "child", "parent after"]


def test_parent_and_child_exporting_at_once_lose_nothing(
    receiver: OtlpReceiver, providers: tuple[TracerProvider, MeterProvider]
) -> None:
    tracer_provider, _ = providers
    _spans(tracer_provider, ["opening"])
    names = [f"span {index}" for index in range(SPANS)]
    child = multiprocessing.get_context("fork").Process(
        target=_spans, args=(tracer_provider, names)
    )
    child.start()
    _spans(tracer_provider, names)
    child.join(timeout=60)

    assert child.exitcode == 0
    assert receiver.errors() == []
    by_pid: dict[int | None, int] = {}
    for span in receiver.spans():
        if span.name.startswith("span "):
            by_pid[span.pid] = by_pid.get(span.pid, 0) + 1
    assert by_pid == {os.getpid(): SPANS, child.pid: SPANS}


def test_a_pool_lock_held_by_a_parent_thread_at_fork_does_not_hang_the_child(
    receiver: OtlpReceiver,
    providers: tuple[TracerProvider, MeterProvider],
    span_session: PidStampingSession,
) -> None:
    """A thread of the parent inside the session's connection pools at the fork (an export
    under way) holds their lock in the child forever: the child must not need it."""
    tracer_provider, _ = providers
    _spans(tracer_provider, ["parent before"])
    pools = span_session.adapters["http://"].poolmanager.pools
    with held_by_another_thread(pools.lock):
        child = multiprocessing.get_context("fork").Process(
            target=_spans, args=(tracer_provider, ["child"])
        )
        child.start()
        child.join(timeout=20)
    assert child.exitcode == 0, "the child hung on a lock its parent held"
    assert [span.name for span in receiver.spans()] == ["parent before", "child"]


def test_a_metric_export_under_way_at_the_fork_does_not_stop_the_childs(
    receiver: OtlpReceiver, providers: tuple[TracerProvider, MeterProvider]
) -> None:
    """The parent's reader thread holds its export lock at the fork (an export under way):
    the child's flush still exports its metrics, within the flush's bound."""
    _, meter_provider = providers
    (reader,) = exporters._metric_readers(meter_provider)
    with held_by_another_thread(reader._export_lock):
        child = multiprocessing.get_context("fork").Process(target=_worker_spawned_and_flushed)
        child.start()
        child.join(timeout=20)
    assert child.exitcode == 0, "the child hung on its parent's export lock"
    spawns = [p for p in receiver.points("execution.worker.spawns") if p.pid == child.pid]
    assert [point.value for point in spawns] == [1]


def _worker_spawned_and_flushed() -> None:
    """In the child: a worker spawn reported, then the flush a pool process makes at exit."""
    api.report_worker_spawn(success=True)
    live = telemetry.current()
    assert live is not None
    live.exporters.flush()


class _StuckProvider(TracerProvider):
    """A provider whose flush waits on something that never comes."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        threading.Event().wait()
        return True


def test_a_flush_that_never_returns_is_abandoned_after_its_bound() -> None:
    live = Telemetry.create(ExecStatusConfig(), tracer_provider=_StuckProvider())
    began = time.monotonic()
    live.exporters.flush(timeout_millis=200)
    assert time.monotonic() - began < 2
