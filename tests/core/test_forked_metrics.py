"""A forked child exports only the metrics it records itself: the SDK's aggregations of the
package's instruments, copied from the parent by the fork, are dropped in the child, which
would otherwise export the parent's counts and samples again under its own resource (a counter
summed over processes would count the parent's spawns once more per child). Observed as the
receiver gets them from the real OTLP/HTTP exporter, by exporting pid, with cumulative and with
delta temporality; the parent's own series go on unchanged. And a lock of those aggregations
that a parent thread held at the fork does not stop the child (opentelemetry-python#4345)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from otlp_receiver import OtlpReceiver, PidStampingSession, Point
from support import held_by_another_thread

from opentelemetry_instrumentation_execstatus import (
    ExecStatusInstrumentor,
    api,
    forked_metrics,
    telemetry,
)

# Forking with the receiver's threads running is the point: the child touches none of them.
pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only: needs os.fork()"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]
CHILD_TIMEOUT = 20.0  # seconds; a child takes well under one to record and flush
SPAWNS = "execution.worker.spawns"
DURATION = "execution.status_transition.duration"
ACTIVE = "execution.active"
INSTRUMENT_CLASSES = (
    Counter,
    UpDownCounter,
    Histogram,
    ObservableCounter,
    ObservableUpDownCounter,
    ObservableGauge,
)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(
    params=[AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA],
    ids=["cumulative", "delta"],
)
def temporality(request: pytest.FixtureRequest) -> AggregationTemporality:
    return request.param


@pytest.fixture
def meter_provider(
    receiver: OtlpReceiver, temporality: AggregationTemporality
) -> Iterator[MeterProvider]:
    """A meter provider exporting over OTLP/HTTP to the receiver with ``temporality`` for
    every instrument (exports only when flushed); the instrumentation on, recording to it."""
    exporter = OTLPMetricExporter(
        endpoint=f"{receiver.endpoint}/v1/metrics",
        session=PidStampingSession(),
        timeout=5,
        preferred_temporality=dict.fromkeys(INSTRUMENT_CLASSES, temporality),
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=600_000)
    provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=provider)
    yield provider
    instrumentor.uninstrument()
    provider.shutdown()
    tracer_provider.shutdown()


def _run_started(run: str) -> None:
    """A run queued then running: one transition (its time queued) and one run in flight."""
    api.report_status(run, "queued", level="pipeline", pipeline="parent")
    api.report_status(run, "running")


def _spawned_and_flushed() -> None:
    """The child's own work: one worker spawn, then the flush a pool process makes at exit."""
    api.report_worker_spawn(success=True)
    live = telemetry.current()
    assert live is not None
    live.exporters.flush()


def _in_child(work: Callable[[], None]) -> int:
    """Fork; the child runs ``work`` and leaves with ``os._exit`` (0 if it completed), never
    returning into pytest. The parent waits at most ``CHILD_TIMEOUT``, then kills a child that
    hangs. Returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, "the forked child failed"
            return pid
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child did not finish within {CHILD_TIMEOUT:.0f} s: hung (killed)")


def _of(receiver: OtlpReceiver, metric: str, pid: int) -> list[Point]:
    return [point for point in receiver.points(metric) if point.pid == pid]


def _total(
    receiver: OtlpReceiver,
    metric: str,
    pid: int,
    temporality: AggregationTemporality,
    field: str = "value",
) -> Any:
    """What ``pid`` recorded on ``metric`` over all its exports: the last point of each series
    when cumulative, the sum of every point when delta."""
    if temporality is AggregationTemporality.CUMULATIVE:
        points = [point for point in receiver.latest_points(metric) if point.pid == pid]
    else:
        points = _of(receiver, metric, pid)
    return sum(getattr(point, field) for point in points)


def test_a_forked_child_exports_only_what_it_records(
    receiver: OtlpReceiver, meter_provider: MeterProvider, temporality: AggregationTemporality
) -> None:
    _run_started("run-1")
    api.report_worker_spawn(success=True)
    meter_provider.force_flush()  # the parent's first export
    _run_started("run-2")  # recorded, not exported yet at the fork
    api.report_worker_spawn(success=True)
    forked_ns = time.time_ns()

    child = _in_child(_spawned_and_flushed)
    meter_provider.force_flush()

    parent = os.getpid()
    assert _total(receiver, SPAWNS, child, temporality) == 1, "the parent's spawns again"
    assert _of(receiver, DURATION, child) == [], "the parent's transitions again"
    child_active = _of(receiver, ACTIVE, child)
    assert child_active, "the child observes no execution.active series"
    assert {point.value for point in child_active} == {0}, "the parent's runs in the child"
    child_points = [
        point
        for metric in (SPAWNS, DURATION, ACTIVE)
        for point in receiver.points(metric)
        if point.pid == child
    ]
    assert all(point.start_ns >= forked_ns for point in child_points), (
        "a series of the child started before the child"
    )

    assert _total(receiver, SPAWNS, parent, temporality) == 2
    assert _total(receiver, DURATION, parent, temporality, field="count") == 2
    assert _total(receiver, ACTIVE, parent, temporality) == 2
    if temporality is AggregationTemporality.CUMULATIVE:
        starts = {point.start_ns for point in _of(receiver, SPAWNS, parent)}
        assert len(starts) == 1, "the parent's series restarted"


def test_an_aggregation_lock_held_at_the_fork_does_not_stop_the_child(
    receiver: OtlpReceiver, meter_provider: MeterProvider, temporality: AggregationTemporality
) -> None:
    """A parent thread inside the spawn counter's storage at the fork (a measurement or a
    collection under way) holds its locks in the child forever: the child must not need them."""
    api.report_worker_spawn(success=True)
    (storage,) = meter_provider._measurement_consumer._reader_storages.values()
    (matches,) = [
        matches
        for instrument, matches in storage._instrument_view_instrument_matches.items()
        if instrument.name == SPAWNS
    ]
    (match,) = matches
    (aggregation,) = match._attributes_aggregation.values()
    with held_by_another_thread(match._lock, aggregation._lock, seconds=2 * CHILD_TIMEOUT):
        child = _in_child(_spawned_and_flushed)
    meter_provider.force_flush()

    assert _total(receiver, SPAWNS, child, temporality) == 1
    assert _total(receiver, SPAWNS, os.getpid(), temporality) == 1


class _Instrument:
    """An instrument of the scope, as storage keys are: hashable."""

    def __init__(self, scope: Any) -> None:
        self.instrumentation_scope = scope


class _Unreadable:
    """An SDK object whose attributes cannot be read."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} here")


def test_an_sdk_that_keeps_them_elsewhere_is_left_as_it_was() -> None:
    """The storage is not where it is looked for, reads raise, or a lock is not a lock: the
    reset leaves what it finds as it was, and never raises."""
    scope = SimpleNamespace(name=telemetry.INSTRUMENTATION_NAME)
    aggregations = {"key": "aggregation"}
    unknown_lock = SimpleNamespace(_lock=object(), _attributes_aggregation=aggregations)
    storage = SimpleNamespace(
        _instrument_view_instrument_matches={_Instrument(scope): [unknown_lock, _Unreadable()]}
    )
    provider = SimpleNamespace(
        _measurement_consumer=SimpleNamespace(_reader_storages={"reader": storage})
    )
    for elsewhere in (NoOpMeterProvider(), _Unreadable(), provider):
        forked_metrics.forget_parent_measurements(elsewhere, telemetry.INSTRUMENTATION_NAME)
    assert unknown_lock._attributes_aggregation is aggregations
    assert aggregations == {"key": "aggregation"}
