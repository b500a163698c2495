"""SDK faults: the real OpenTelemetry SDK, given real plug-ins that raise or hang.

Nothing of the package is mocked. Each fault is a plug-in the SDK accepts as it is: a span
processor, a sampler, a tracer, a span, a meter's instruments, a span exporter or a metric
exporter that raises (on every call, or every third one) or hangs. Whatever the fault, the
rule is the one of the suite:

- the host sees nothing: every ``api`` call returns None, and the values and exceptions of the
  host's own ``with api.health_check()`` / ``with api.worker_drain()`` blocks come back as the
  same object, with their own traceback;
- nothing is left in flight, and ``execution.active`` / ``execution.worker.count`` read exactly
  0 in every status they were in: the package keeps those counts itself (the SDK only observes
  them), so no SDK fault can put them off by one;
- a fault costs only its own piece: every span the SDK could still export was exported. What
  the SDK itself loses is known exactly, because the SDK calls its span processors one after
  the other, unguarded: a processor whose ``on_start`` raises makes ``start_span`` raise (that
  execution has no span; its children become roots), one whose ``on_end`` raises keeps the end
  from the processors after it in the chain (so placed last it costs nothing).

Not covered, because it is the SDK's documented behaviour and not the package's: a hanging
exporter behind ``SimpleSpanProcessor`` blocks whoever ends a span (it exports synchronously);
the hanging case runs behind ``BatchSpanProcessor``, which must never block the host.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from checks import SpanLedger, gauge_values, settled
from figures import FIGURES
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult
from support import Telemetry

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry

RUNS = 18  # pipeline runs of the workload, spread over THREADS threads
STEPS = 8  # steps per run: 4 kinds, twice (see _run_pipeline)
THREADS = 3
EXECUTIONS = RUNS * (1 + STEPS)
FAIL_EVERY = 3  # a partial fault raises on every third call: some pieces fail, most must not
WORKLOAD_LIMIT_SECONDS = 30.0  # a deadlock, not a slow run: the workload takes well under 1 s
HANG_LIMIT_SECONDS = 120.0  # a hanging export waits this long at most, unless released first
SCOPE = telemetry.INSTRUMENTATION_NAME

RUN_ID = "cicd.pipeline.run.id"
TASK_RUN_ID = "cicd.pipeline.task.run.id"

# The series each count must hold, at 0, once the workload has ended: every (orchestrator,
# level, status) an execution was in, every (state, orchestrator) a worker was in.
ACTIVE_SERIES = {
    ("pipeline", "queued"),
    ("pipeline", "running"),
    ("step", "queued"),
    ("step", "running"),
    ("step", "retrying"),
}
WORKER_STATES = {"offline", "available", "busy"}


class InjectedFault(RuntimeError):
    """What a faulty plug-in raises: never the host's, so it must never reach the host."""


class HostError(Exception):
    """The host's own exception, which must reach the host unchanged."""


HOST_ERROR_TYPE = f"{HostError.__module__}.{HostError.__qualname__}"


class Schedule:
    """When a faulty plug-in raises: on every ``every``-th call (1: on every call). Counts
    calls and faults, under a lock (the SDK calls plug-ins from several threads)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._lock = threading.Lock()
        self.calls = 0
        self.raised = 0
        self.fired = threading.Event()

    def fire(self) -> None:
        """Raise if this call is due to fail."""
        with self._lock:
            self.calls += 1
            if self.calls % self.every:
                return
            self.raised += 1
        self.fired.set()
        raise InjectedFault(f"injected SDK fault #{self.raised}")


# -- faulty plug-ins -------------------------------------------------------------------------


class RaisingSpanProcessor(SpanProcessor):
    """A span processor whose ``on_start`` or ``on_end`` raises on schedule."""

    def __init__(self, hook: str, schedule: Schedule) -> None:
        self.hook = hook
        self.schedule = schedule

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.hook == "on_start":
            self.schedule.fire()

    def on_end(self, span: ReadableSpan) -> None:
        if self.hook == "on_end":
            self.schedule.fire()


class RaisingSampler(Sampler):
    """A sampler whose decision raises on schedule (the SDK asks it inside ``start_span``)."""

    def __init__(self, schedule: Schedule) -> None:
        self._schedule = schedule
        self._inner = ALWAYS_ON

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self._schedule.fire()
        return self._inner.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "RaisingSampler"


class RaisingSpan(trace.Span):
    """An SDK span whose every change (attributes, events, status, name) raises: only its
    start, its context and its end work."""

    def __init__(self, inner: trace.Span, schedule: Schedule) -> None:
        self._inner = inner
        self._schedule = schedule

    def end(self, end_time: int | None = None) -> None:
        self._inner.end(end_time)

    def get_span_context(self) -> trace.SpanContext:
        return self._inner.get_span_context()

    def is_recording(self) -> bool:
        return self._inner.is_recording()

    def set_attributes(self, attributes: Any) -> None:
        self._schedule.fire()

    def set_attribute(self, key: str, value: Any) -> None:
        self._schedule.fire()

    def add_event(self, name: str, attributes: Any = None, timestamp: Any = None) -> None:
        self._schedule.fire()

    def add_link(self, context: Any, attributes: Any = None) -> None:
        self._schedule.fire()

    def update_name(self, name: str) -> None:
        self._schedule.fire()

    def set_status(self, status: Any, description: str | None = None) -> None:
        self._schedule.fire()

    def record_exception(self, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        self._schedule.fire()


class RaisingTracer(trace.Tracer):
    """The SDK's tracer, except that ``start_span`` raises on schedule (``starts``), or the
    spans it returns raise on every change (``changes``)."""

    def __init__(self, inner: trace.Tracer, schedule: Schedule, what: str) -> None:
        self._inner = inner
        self._schedule = schedule
        self._what = what

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        if self._what == "starts":
            self._schedule.fire()
        span = self._inner.start_span(name, *args, **kwargs)
        return RaisingSpan(span, self._schedule) if self._what == "changes" else span

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:  # unused by the package
        return self._inner.start_as_current_span(*args, **kwargs)


class RaisingTracerProvider(TracerProvider):
    """The SDK's tracer provider, handing out RaisingTracers."""

    def __init__(self, schedule: Schedule, what: str) -> None:
        super().__init__(shutdown_on_exit=False)
        self._schedule = schedule
        self._what = what

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return RaisingTracer(super().get_tracer(*args, **kwargs), self._schedule, self._what)


class _Forwarding:
    """A synchronous instrument that raises on schedule, else forwards to the SDK's own;
    ``forwarded`` counts the measurements the SDK received, ``forwarded_sum`` their sum."""

    def __init__(self, inner: Any, schedule: Schedule) -> None:
        self.inner = inner
        self._schedule = schedule
        self._lock = threading.Lock()
        self.forwarded = 0
        self.forwarded_sum: float = 0

    def _measure(self, method: str, amount: Any, attributes: Any, context: Any) -> None:
        self._schedule.fire()
        getattr(self.inner, method)(amount, attributes, context)
        with self._lock:
            self.forwarded += 1
            self.forwarded_sum += amount


class RaisingCounter(_Forwarding, metrics.Counter):
    def add(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        self._measure("add", amount, attributes, context)


class RaisingUpDownCounter(_Forwarding, metrics.UpDownCounter):
    def add(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        self._measure("add", amount, attributes, context)


class RaisingHistogram(_Forwarding, metrics.Histogram):
    def record(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        self._measure("record", amount, attributes, context)


class RaisingMeter(metrics.Meter):
    """The API's Meter over the SDK's: synchronous instruments raise on schedule; observable
    ones are the SDK's own (their callbacks are the package's, which keeps their values)."""

    def __init__(self, inner: metrics.Meter, schedule: Schedule) -> None:
        super().__init__(inner.name, inner.version, inner.schema_url)
        self._inner = inner
        self._schedule = schedule
        self.instruments: list[_Forwarding] = []

    def _made(self, instrument: _Forwarding) -> Any:
        self.instruments.append(instrument)
        return instrument

    def create_counter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._inner.create_counter(name, *args, **kwargs)
        return self._made(RaisingCounter(inner, self._schedule))

    def create_up_down_counter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._inner.create_up_down_counter(name, *args, **kwargs)
        return self._made(RaisingUpDownCounter(inner, self._schedule))

    def create_histogram(self, name: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._inner.create_histogram(name, *args, **kwargs)
        return self._made(RaisingHistogram(inner, self._schedule))

    def create_observable_counter(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.create_observable_counter(*args, **kwargs)

    def create_observable_gauge(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.create_observable_gauge(*args, **kwargs)

    def create_observable_up_down_counter(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.create_observable_up_down_counter(*args, **kwargs)


class RaisingMeterProvider(MeterProvider):
    """The SDK's meter provider, handing out one RaisingMeter per SDK meter."""

    def __init__(self, schedule: Schedule, readers: Sequence[Any]) -> None:
        # Set first: some SDK releases (1.41) ask themselves for a meter while initialising.
        self._schedule = schedule
        self._wrappers: dict[Any, RaisingMeter] = {}
        super().__init__(metric_readers=list(readers), shutdown_on_exit=False)

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> metrics.Meter:
        inner = super().get_meter(name, *args, **kwargs)
        if name != SCOPE:
            return inner  # the SDK's meters about itself (1.41 has some): not ours to break
        if inner not in self._wrappers:
            self._wrappers[inner] = RaisingMeter(inner, self._schedule)
        return self._wrappers[inner]

    def raising_instruments(self) -> list[_Forwarding]:
        return [i for meter in self._wrappers.values() for i in meter.instruments]


class RaisingSpanExporter(SpanExporter):
    """A span exporter whose ``export`` raises on schedule."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.schedule.fire()
        return SpanExportResult.SUCCESS


class HangingSpanExporter(SpanExporter):
    """A span exporter whose ``export`` never returns until released (a backend that accepts
    the connection and never answers, with no timeout)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hanging = threading.Event()
        self.hangs = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.release.is_set():
            self.hangs += 1
            self.hanging.set()
            self.release.wait(HANG_LIMIT_SECONDS)
        return SpanExportResult.SUCCESS


class RaisingMetricExporter(MetricExporter):
    """A metric exporter whose ``export`` raises on schedule."""

    def __init__(self, schedule: Schedule) -> None:
        super().__init__()
        self.schedule = schedule

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        self.schedule.fire()
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


# -- the rig: the in-memory SDK of tests.support, with one fault built in --------------------


class Rig(Telemetry):
    """tests.support.Telemetry with a fault in its SDK: ``exporter`` and ``reader`` see what
    could still be exported, ``ledger`` counts the spans the package holds (placed in the
    processor chain where it sees exactly those: after a processor whose on_start raises,
    before one whose on_end raises), ``schedule`` counts what the fault raised."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.schedule = Schedule(fault.every)
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.ledger = RunLedger()
        self.hanging: HangingSpanExporter | None = None
        self.tracer_provider = fault.tracer(self)
        self.meter_provider = fault.meter(self)

    def ours(self) -> list[ReadableSpan]:
        """The exported spans of the package (a fault's own warm-up span is not one)."""
        return [s for s in self.spans() if s.instrumentation_scope.name == SCOPE]

    def lost_spans(self) -> int:
        """How many spans the SDK itself cannot export under this fault."""
        return self.schedule.raised if self.fault.sdk_loses_spans else 0

    def faults(self) -> int:
        """Raised fault occurrences (a hanging export counts once per export that hung)."""
        return self.schedule.raised + (self.hanging.hangs if self.hanging else 0)

    def shutdown(self) -> None:
        if self.hanging is not None:
            self.hanging.release.set()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


class RunLedger(SpanLedger):
    """The suite's span ledger, also keeping the span id of each pipeline run that started,
    so that a step's parent can be checked against its run's span."""

    def __init__(self) -> None:
        super().__init__()
        self.run_spans: dict[str, int] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        super().on_start(span, parent_context)
        run_id = (span.attributes or {}).get(RUN_ID)
        if run_id is not None:
            with self._lock:
                self.run_spans[run_id] = span.get_span_context().span_id


def _provider(*processors: SpanProcessor, sampler: Sampler | None = None) -> TracerProvider:
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def _plain_meter(rig: Rig) -> MeterProvider:
    return MeterProvider(metric_readers=[rig.reader], shutdown_on_exit=False)


def _plain_tracer(rig: Rig) -> TracerProvider:
    return _provider(rig.ledger, SimpleSpanProcessor(rig.exporter))


def _on_start_raises(rig: Rig) -> TracerProvider:
    faulty = RaisingSpanProcessor("on_start", rig.schedule)
    return _provider(faulty, rig.ledger, SimpleSpanProcessor(rig.exporter))


def _on_end_raises_last(rig: Rig) -> TracerProvider:
    faulty = RaisingSpanProcessor("on_end", rig.schedule)
    return _provider(rig.ledger, SimpleSpanProcessor(rig.exporter), faulty)


def _on_end_raises_first(rig: Rig) -> TracerProvider:
    faulty = RaisingSpanProcessor("on_end", rig.schedule)
    return _provider(rig.ledger, faulty, SimpleSpanProcessor(rig.exporter))


def _raising_tracer(what: str) -> Callable[[Rig], TracerProvider]:
    def build(rig: Rig) -> TracerProvider:
        provider = RaisingTracerProvider(rig.schedule, what)
        provider.add_span_processor(rig.ledger)
        provider.add_span_processor(SimpleSpanProcessor(rig.exporter))
        return provider

    return build


def _sampler_raises(rig: Rig) -> TracerProvider:
    sampler = RaisingSampler(rig.schedule)
    return _provider(rig.ledger, SimpleSpanProcessor(rig.exporter), sampler=sampler)


def _raising_meter(rig: Rig) -> MeterProvider:
    return RaisingMeterProvider(rig.schedule, [rig.reader])


def _exporter_raises_simple(rig: Rig) -> TracerProvider:
    faulty = SimpleSpanProcessor(RaisingSpanExporter(rig.schedule))
    return _provider(faulty, rig.ledger, SimpleSpanProcessor(rig.exporter))


def _exporter_raises_batch(rig: Rig) -> TracerProvider:
    faulty = BatchSpanProcessor(
        RaisingSpanExporter(rig.schedule), schedule_delay_millis=1, max_export_batch_size=8
    )
    return _provider(faulty, rig.ledger, SimpleSpanProcessor(rig.exporter))


def _exporter_hangs_batch(rig: Rig) -> TracerProvider:
    rig.hanging = HangingSpanExporter()
    # A small queue, so that it fills while the export hangs: then spans are dropped there,
    # and only there.
    faulty = BatchSpanProcessor(
        rig.hanging, max_queue_size=32, schedule_delay_millis=1, max_export_batch_size=8
    )
    return _provider(faulty, rig.ledger, SimpleSpanProcessor(rig.exporter))


def _metric_exporter_raises(rig: Rig) -> MeterProvider:
    periodic = PeriodicExportingMetricReader(
        RaisingMetricExporter(rig.schedule), export_interval_millis=5
    )
    return MeterProvider(metric_readers=[rig.reader, periodic], shutdown_on_exit=False)


def _hang_before_the_host_starts(rig: Rig) -> None:
    """Make the batch processor's export hang before the workload starts, with a span of
    another scope: then the whole workload runs against a hung exporter."""
    assert rig.hanging is not None
    rig.tracer_provider.get_tracer("warm-up").start_span("warm-up").end()
    assert rig.hanging.hanging.wait(10), "the batch processor never exported"


def _fired_before_the_host_starts(rig: Rig) -> None:
    """Wait for the periodic reader's first (raising) export, so the workload overlaps
    failing exports from the start. The SDK exports nothing while no metric has a point:
    a counter of another scope gives it one."""
    rig.meter_provider.get_meter("warm-up").create_counter("warm-up").add(1)
    assert rig.schedule.fired.wait(10), "the periodic reader never exported"


def _nothing_to_prepare(rig: Rig) -> None:
    """Most faults fire on the host's own calls: nothing to set up before them."""


@dataclass(frozen=True)
class Fault:
    """One fault: how the rig's providers are built with it, and what the SDK makes of it."""

    id: str
    tracer: Callable[[Rig], TracerProvider] = _plain_tracer
    meter: Callable[[Rig], MeterProvider] = _plain_meter
    every: int = 1
    sdk_loses_spans: bool = False  # each raised fault costs the SDK that one span
    spans_bare: bool = False  # spans keep only their start attributes (their changes raise)
    sync_instruments_raise: bool = False
    prepare: Callable[[Rig], None] = _nothing_to_prepare


ALWAYS_RAISING_INSTRUMENTS = Fault(
    "instruments-raise-always", meter=_raising_meter, sync_instruments_raise=True
)
FAULTS = (
    # on_start raising makes start_span raise: the SDK never returns that span.
    Fault("on_start-raises", _on_start_raises, every=FAIL_EVERY, sdk_loses_spans=True),
    Fault("on_end-raises-last-processor", _on_end_raises_last, every=FAIL_EVERY),
    # Placed before the exporter's processor, a raising on_end keeps that span from it.
    Fault(
        "on_end-raises-first-processor",
        _on_end_raises_first,
        every=FAIL_EVERY,
        sdk_loses_spans=True,
    ),
    Fault("start_span-raises", _raising_tracer("starts"), every=FAIL_EVERY, sdk_loses_spans=True),
    Fault("sampler-raises", _sampler_raises, every=FAIL_EVERY, sdk_loses_spans=True),
    Fault("span-changes-raise", _raising_tracer("changes"), spans_bare=True),
    ALWAYS_RAISING_INSTRUMENTS,
    Fault(
        "instruments-raise-every-third",
        meter=_raising_meter,
        every=FAIL_EVERY,
        sync_instruments_raise=True,
    ),
    Fault("span-exporter-raises-simple", _exporter_raises_simple),
    Fault("span-exporter-raises-batch", _exporter_raises_batch),
    Fault("span-exporter-hangs-batch", _exporter_hangs_batch, prepare=_hang_before_the_host_starts),
    Fault(
        "metric-exporter-raises-periodic",
        meter=_metric_exporter_raises,
        prepare=_fired_before_the_host_starts,
    ),
)


@pytest.fixture(params=FAULTS, ids=[fault.id for fault in FAULTS])
def otel(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """The SDK with one fault, in place of tests/conftest.py's: the ``instrument`` fixture
    instruments with it (and uninstruments before this shuts it down)."""
    rig = Rig(request.param)
    yield rig
    rig.shutdown()


# -- the host: a control plane reporting through the public API -----------------------------


@dataclass
class Expected:
    """What the workload did: each execution's final status by its run id (the span's
    ``cicd.pipeline.run.id`` or ``cicd.pipeline.task.run.id``), and each step's run."""

    finals: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # error.type of failed executions
    run_of: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ended(
        self, execution_id: str, status: str, run_id: str | None = None, error: str | None = None
    ) -> None:
        with self.lock:
            self.finals[execution_id] = status
            if error is not None:
                self.errors[execution_id] = error
            if run_id is not None:
                self.run_of[execution_id] = run_id


def _report(*args: Any, **kwargs: Any) -> None:
    assert api.report_status(*args, **kwargs) is None


def _run_pipeline(index: int, expected: Expected) -> None:
    """One run and its steps, of four kinds: succeeded, retried then succeeded, failed with
    the host's exception, failed with an error type string; the run fails or succeeds."""
    run = f"run-{index}"
    _report(run, "queued", level="pipeline", pipeline=f"nightly-{index % 3}")
    _report(run, "running")
    for number in range(STEPS):
        step = f"{run}/step-{number}"
        kind = number % 4
        if kind != 2:
            _report(step, "queued", name=f"step-{number}", parent_id=run)
        _report(step, "running", name=f"step-{number}", parent_id=run)
        if kind == 1:
            _report(step, "retrying")
            _report(step, "running")
        if kind == 2:
            _report(step, "failed", error=HostError(f"step {number} of {run}"))
            expected.ended(step, "failed", run, HOST_ERROR_TYPE)
        elif kind == 3:
            _report(step, "failed", error="TimeoutError")
            expected.ended(step, "failed", run, "TimeoutError")
        else:
            _report(step, "succeeded")
            expected.ended(step, "succeeded", run)
    final = "failed" if index % 2 else "succeeded"
    _report(run, final)
    expected.ended(run, final, error="failed" if index % 2 else None)  # no exception: status


def _probe(value: object) -> object:
    with api.health_check():
        return value


def _probe_failing(value: object) -> object:
    with api.health_check() as probe:
        probe.failed()
        return value


def _probe_raising(error: HostError) -> None:
    with api.health_check():
        raise error


def _drain(value: object) -> object:
    with api.worker_drain():
        return value


def _drain_raising(error: HostError) -> None:
    with api.worker_drain():
        raise error


def _raises_unchanged(block: Callable[[HostError], None]) -> None:
    """The host's exception leaves the block as the same object, raised where it was."""
    error = HostError(block.__name__)
    with pytest.raises(HostError) as caught:
        block(error)
    assert caught.value is error, f"{block.__name__}: another exception object reached the host"
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert frames[-1].name == block.__name__, f"{block.__name__}: traceback changed: {frames}"


def _worker_lifecycle(index: int) -> None:
    """One worker: spawned (a failed attempt first), available, busy, health-checked each way,
    drained each way, forgotten; each host block's value and exception checked."""
    worker = f"worker-{index}"
    value = object()
    for call, args in (
        (api.report_worker_state, (worker, "spawning")),
        (api.report_worker_spawn, (False, "pod_ready")),
        (api.report_worker_spawn, (True,)),
        (api.report_worker_state, (worker, "idle")),
        (api.report_worker_state, (worker, "busy")),
        (api.report_worker_health_check, (True,)),
        (api.report_worker_drain, (True, 0.25)),
    ):
        assert call(*args) is None, f"{call.__name__} returned a value"
    assert _probe(value) is value, "health_check() changed the block's return value"
    assert _probe_failing(value) is value, "health_check() changed the block's return value"
    assert _drain(value) is value, "worker_drain() changed the block's return value"
    _raises_unchanged(_probe_raising)
    _raises_unchanged(_drain_raising)
    assert api.report_worker_state(worker, "draining") is None
    assert api.report_worker_state(worker, None) is None


def _host(indexes: range, expected: Expected) -> None:
    for index in indexes:
        _worker_lifecycle(index)
        _run_pipeline(index, expected)


def _run_on_threads(work: Callable[[range], None], runs: int) -> None:
    """``work`` over ``runs`` indexes split across THREADS daemon threads; fails on any error
    in a thread, or if one has not finished within WORKLOAD_LIMIT_SECONDS (a deadlock: a
    daemon thread, so a stuck one cannot hang the session at exit)."""
    errors: list[BaseException] = []

    def target(indexes: range) -> None:
        try:
            work(indexes)
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [
        threading.Thread(target=target, args=(range(start, runs, THREADS),), daemon=True)
        for start in range(THREADS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, WORKLOAD_LIMIT_SECONDS - (time.monotonic() - started)))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"host threads blocked for {WORKLOAD_LIMIT_SECONDS:.0f} s: {stuck}"
    if errors:
        raise errors[0]


# -- checks ----------------------------------------------------------------------------------


def _execution_id(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    identity = attributes.get(RUN_ID, attributes.get(TASK_RUN_ID))
    assert isinstance(identity, str), f"span {span.name!r} has no run id: {attributes}"
    return identity


def _check_spans(rig: Rig, expected: Expected) -> list[ReadableSpan]:
    """Every span the SDK could export was exported, once, complete (unless the fault took
    its changes), and parented on its run's span if that run got one."""
    spans = rig.ours()
    by_execution = {_execution_id(span): span for span in spans}
    assert len(by_execution) == len(spans), "an execution has two spans"
    assert len(spans) == len(expected.finals) - rig.lost_spans(), (
        f"{len(spans)} spans exported of {len(expected.finals)}, the SDK losing "
        f"{rig.lost_spans()} to {rig.fault.id}"
    )
    for execution_id, span in by_execution.items():
        attributes = span.attributes or {}
        if rig.fault.spans_bare:
            assert "execution.status" not in attributes and not span.events, (
                f"{execution_id}: the fault should have taken its changes: {attributes}"
            )
        else:
            ended = (attributes.get("execution.status"), attributes.get("error.type"))
            wanted = (expected.finals[execution_id], expected.errors.get(execution_id))
            assert ended == wanted, f"{execution_id} ended {ended}, not {wanted}"
        run = expected.run_of.get(execution_id)
        if run is None:
            continue
        run_span = rig.ledger.run_spans.get(run)
        parent = span.parent.span_id if span.parent is not None else None
        assert parent == run_span, (
            f"{execution_id}: parent {parent} but its run's span is {run_span} "
            "(a run without a span makes its steps roots)"
        )
    return spans


def _check_counts(rig: Rig) -> None:
    """execution.active and execution.worker.count hold a series for every status they were
    in, each exactly 0 (checks.settled checks the values; this that they are there at all)."""
    gauges = gauge_values(rig)
    active = {
        (dict(key)["execution.level"], dict(key)["execution.status"])
        for key in gauges["execution.active"]
    }
    assert active >= ACTIVE_SERIES, f"execution.active lost series: {ACTIVE_SERIES - active}"
    workers = {dict(key)["cicd.worker.state"] for key in gauges["execution.worker.count"]}
    assert workers >= WORKER_STATES, f"execution.worker.count lost: {WORKER_STATES - workers}"


def _check_sync_instruments(rig: Rig) -> None:
    """With instruments raising, the SDK holds exactly the measurements that got through:
    a raising add or record cost that one measurement, nothing before or after it."""
    provider = rig.meter_provider
    assert isinstance(provider, RaisingMeterProvider)
    instruments = provider.raising_instruments()
    assert instruments, "the package created no synchronous instrument on the faulty meter"
    for instrument in instruments:
        name = instrument.inner.name
        points = rig.points(name)
        if isinstance(instrument, RaisingHistogram):
            recorded, through = sum(point.count for point in points), instrument.forwarded
        else:
            recorded, through = sum(point.value for point in points), instrument.forwarded_sum
        assert recorded == through, (
            f"{name}: the SDK holds {recorded} (count or sum), {through} got through"
        )


def _wait_for_the_fault(rig: Rig) -> None:
    """A fault on an SDK thread (a batch processor's export) fires a moment after the host's
    work: wait for it, and fail if it never fired (the test would have proved nothing)."""
    if not rig.faults():
        rig.schedule.fired.wait(10)
    assert rig.faults() > 0, f"{rig.fault.id} never fired: the test proved nothing"


def _count(rig: Rig, executions: int, spans: int) -> None:
    # faults_injected: one per fault occurrence that actually fired (each raise of a faulty
    # plug-in, each export that hung), not one per fault kind.
    FIGURES.faults_injected += rig.faults()
    FIGURES.executions += executions
    FIGURES.spans(expected=executions - rig.lost_spans(), exported=spans)


# -- tests -----------------------------------------------------------------------------------


def test_sdk_fault_affects_only_its_own_piece(instrument: Callable[..., Telemetry]) -> None:
    """Runs, steps and workers reported from three threads through an SDK with one fault:
    the host sees nothing, every count settles to exactly 0, every span the SDK could export
    was exported, and the fault really fired."""
    rig = instrument()
    assert isinstance(rig, Rig)
    rig.fault.prepare(rig)
    expected = Expected()

    _run_on_threads(lambda indexes: _host(indexes, expected), RUNS)

    _wait_for_the_fault(rig)
    assert len(expected.finals) == EXECUTIONS
    spans = _check_spans(rig, expected)
    settled(rig, rig.ledger)
    _check_counts(rig)
    if rig.fault.sync_instruments_raise:
        _check_sync_instruments(rig)
    _count(rig, EXECUTIONS, len(spans))


def test_uninstrument_under_sdk_fault_ends_what_is_in_flight(
    instrument: Callable[..., Telemetry],
) -> None:
    """Executions and workers still in flight when ``uninstrument()`` is called, through an
    SDK with one fault: ``uninstrument()`` does not raise, every execution ends as cancelled
    (its span exported if the SDK could), and every count is back to 0."""
    rig = instrument()
    assert isinstance(rig, Rig)
    rig.fault.prepare(rig)
    runs = 12

    def leave_in_flight(indexes: range) -> None:
        for index in indexes:
            run = f"open-{index}"
            _report(run, "queued", level="pipeline", pipeline="open")
            _report(run, "running")
            _report(f"{run}/step", "running", name="step", parent_id=run)
            assert api.report_worker_state(f"open-worker-{index}", "busy") is None

    _run_on_threads(leave_in_flight, runs)
    live = telemetry.current()
    assert live is not None and live.tracker.in_flight_count() == 2 * runs

    ExecStatusInstrumentor().uninstrument()  # the fixture's second call is a no-op
    _wait_for_the_fault(rig)

    assert live.tracker.in_flight_count() == 0, "uninstrument() left executions in flight"
    assert rig.ledger.started == rig.ledger.ended, "uninstrument() left spans open"
    for name, values in gauge_values(rig).items():
        assert values and set(values.values()) == {0}, f"{name} not back to 0: {values}"
    spans = rig.ours()
    assert len(spans) == 2 * runs - rig.lost_spans(), (
        f"{len(spans)} of {2 * runs} spans exported, the SDK losing {rig.lost_spans()}"
    )
    if not rig.fault.spans_bare:
        statuses = {(span.attributes or {}).get("execution.status") for span in spans}
        assert statuses <= {"cancelled"}, f"in-flight executions ended {statuses}"
    _count(rig, 2 * runs, len(spans))


@pytest.mark.parametrize(
    "otel", [ALWAYS_RAISING_INSTRUMENTS], ids=["instruments-raise-always"], indirect=True
)
def test_host_blocks_propagate_unchanged_with_every_sdk_call_raising(
    instrument: Callable[..., Telemetry],
) -> None:
    """A health probe and a drain whose every SDK call raises (counters raise on every add):
    their blocks' values and exceptions, including a cancellation, reach the host unchanged."""
    rig = instrument()
    assert isinstance(rig, Rig)
    value = object()
    assert _probe(value) is value
    assert _drain(value) is value
    _raises_unchanged(_probe_raising)
    _raises_unchanged(_drain_raising)
    for manager in (api.health_check, api.worker_drain):
        cancelled = KeyboardInterrupt()
        with pytest.raises(KeyboardInterrupt) as caught:
            _enter_and_raise(manager(), cancelled)
        assert caught.value is cancelled, f"{manager.__name__}: another cancellation object"
    _wait_for_the_fault(rig)
    FIGURES.faults_injected += rig.faults()


def _enter_and_raise(manager: AbstractContextManager[Any], error: BaseException) -> None:
    with manager:
        raise error


class RaisingCreationMeterProvider(MeterProvider):
    """An SDK meter provider whose meters cannot create a histogram."""

    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        meter = super().get_meter(*args, **kwargs)

        def create_histogram(*_args: Any, **_kwargs: Any) -> Any:
            raise InjectedFault("create_histogram")

        meter.create_histogram = create_histogram  # type: ignore[method-assign]
        return meter


class RaisingGetTracerProvider(TracerProvider):
    """An SDK tracer provider that cannot hand out a tracer."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise InjectedFault("get_tracer")


@pytest.mark.parametrize("fault", ["get_tracer", "create_histogram"])
def test_instrument_with_a_provider_that_raises_does_not_raise(fault: str) -> None:
    """``instrument()`` with a provider that raises while the instruments and the tracer are
    created: the call returns, and the public API stays a no-op that never raises."""
    if fault == "get_tracer":
        providers = {"tracer_provider": RaisingGetTracerProvider(shutdown_on_exit=False)}
    else:
        providers = {"meter_provider": RaisingCreationMeterProvider(shutdown_on_exit=False)}
    instrumentor = ExecStatusInstrumentor()
    try:
        instrumentor.instrument(**providers)
    finally:
        FIGURES.faults_injected += 1
        assert api.report_status("after", "running") is None
        instrumentor.uninstrument()


class MutatingHistogram(metrics.Histogram):
    """The SDK's histogram behind a plug-in that writes into the attributes it is given, once
    (as a wrapper adding a label in place would)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mutated = False

    def record(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        if not self.mutated and attributes is not None:
            self.mutated = True
            attributes["execution.status.to"] = "poisoned"
        self.inner.record(amount, attributes, context)


class MutatingMeterProvider(MeterProvider):
    """An SDK meter provider whose meters' histograms are MutatingHistograms."""

    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        meter = super().get_meter(*args, **kwargs)
        create = meter.create_histogram

        def create_histogram(*inner_args: Any, **inner_kwargs: Any) -> Any:
            return MutatingHistogram(create(*inner_args, **inner_kwargs))

        meter.create_histogram = create_histogram  # type: ignore[method-assign]
        return meter


def test_an_instrument_writing_into_its_attributes_affects_only_that_sample() -> None:
    """A histogram plug-in that writes into the attributes of one sample: the samples of the
    other executions keep their own labels."""
    reader = InMemoryMetricReader()
    provider = MutatingMeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    instrumentor = ExecStatusInstrumentor()
    instrumentor.instrument(
        tracer_provider=TracerProvider(shutdown_on_exit=False), meter_provider=provider
    )
    try:
        executions = 5
        for index in range(executions):
            _report(f"load-{index}", "running", name="load")
            _report(f"load-{index}", "succeeded")
    finally:
        instrumentor.uninstrument()
    FIGURES.faults_injected += 1
    FIGURES.executions += executions
    points = {
        point.attributes["execution.status.to"]: point.count
        for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        if metric.name == "execution.status_transition.duration"
        for point in metric.data.data_points
    }
    assert points.get("succeeded") == executions - 1, f"samples by status.to: {points}"
