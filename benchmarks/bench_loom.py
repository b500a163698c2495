"""loom-kernel 9: what the instrumentation adds to each step of a real loom ETL run.

The workload is loom's own executor (``ETLRunner.run``: compile, pipeline, process, steps,
lifecycle events through ``ObservabilityRuntime``) on a pipeline of one process with
``STEPS`` sequential steps whose ``execute`` returns a constant and whose target is written by
a writer that discards it. The steps do no work on purpose: what is timed is loom's per-step
machinery plus whatever telemetry rides on it, so the instrumentation's cost is as visible as it
can be (a step that reads and writes data takes milliseconds, and the same microseconds added
vanish in it). The unit is the step: a run's time divided by its ``STEPS`` steps, so the run's
own costs (compiling the plan, the pipeline and process spans, one each per run) are
amortised over its steps; each step carries 1/``STEPS`` of them.

- per step: bare loom (no tracer, not instrumented) against the same runs instrumented with a
  real SDK (batch span processor, a metric reader; ``Sdk``), and instrumented with no SDK at
  all (no provider passed and none set globally: the API's no-op path).
- peers: loom's own OpenTelemetry spans (``pipeline:X`` / ``process:X`` / ``step:X``, opened
  when ``ObservabilityRuntime`` is given ``tracer=``, here a tracer of a second real SDK),
  against bare and against execstatus, side by side. loom's tracer makes spans only, no
  histogram and no counters; the SDK calls each makes per step are counted in an untimed run
  and reported as facts, so the added cost can be read per call as well as per step.

Validity: the instrumented and peer cases must have exported exactly the spans their runs made
(``STEPS`` + 2 a run: none dropped, none missing), execstatus with an SDK metric points too,
the no-SDK case must really be instrumented, and a bare run after them must leave every SDK
untouched (instrumentation really off between blocks). Otherwise the script exits non-zero:
it measured nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Callable, ClassVar

from harness import (
    INSTRUMENTOR,
    Case,
    Results,
    Row,
    Sdk,
    added_cost_ratio,
    arguments,
    compare,
    finish,
    instrumented_without_sdk,
    require,
    scale,
    versions,
)
from loom.core.observability.runtime import ObservabilityRuntime
from loom.etl import ETLParams, ETLPipeline, ETLProcess, ETLRunner, ETLStep, Format, IntoFile
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

SUITE = "loom"
STEPS = 20
SPANS_PER_RUN = STEPS + 2  # the run's, its process's, and one per step
# Timed blocks of RUNS_PER_BLOCK runs make fewer spans than the batch span processor queues
# (2048), and each block ends with a flush (untimed): no span is dropped, which would cost
# less than exporting it.
RUNS_PER_BLOCK = 80
ROUNDS = 55

BARE = "bare"
OURS = "execstatus, SDK"
OURS_NO_SDK = "execstatus, no SDK"
LOOM_TRACER = "loom native tracer"


# -- the pipeline ------------------------------------------------------------------------------


class BenchParams(ETLParams, frozen=True):
    batch: int = 0


class Discard:
    """loom's reader and writer protocols, doing nothing: no step reads, every write is
    dropped. The steps' data never leaves memory, so no I/O is timed."""

    def read(self, spec: Any, params: Any) -> Any:
        raise AssertionError("the benchmark's steps declare no source")

    def write(
        self, frame: Any, spec: Any, params: Any, *, streaming: bool = False, write_ctx: Any = None
    ) -> None:
        return None


def _step(index: int) -> type[ETLStep[BenchParams]]:
    """A step class named ``Step<index>`` whose ``execute`` returns a constant."""
    name = f"Step{index:02d}"

    class Step(ETLStep[BenchParams]):
        target = IntoFile(f"discarded/{name}.csv", format=Format.CSV)

        def execute(self, params: BenchParams) -> Any:
            return index

    Step.__name__ = Step.__qualname__ = name
    return Step


class BenchProcess(ETLProcess[BenchParams]):
    steps: ClassVar[list[Any]] = [_step(index) for index in range(STEPS)]


class BenchPipeline(ETLPipeline[BenchParams]):
    processes: ClassVar[list[Any]] = [BenchProcess]


def _runner(tracer: Tracer | None = None) -> ETLRunner:
    """An ETL runner with no observer; with ``tracer``, loom opens its own spans on it."""
    return ETLRunner(Discard(), Discard(), ObservabilityRuntime([], tracer=tracer))


class Runs:
    """``ETLRunner.run`` of the benchmark pipeline, ``iterations`` times, counted: a case's
    spans can then be checked against the runs it made (none dropped, none missing)."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._runner = _runner(tracer)
        self._params = BenchParams()
        self.done = 0

    def __call__(self, iterations: int) -> None:
        runner, params = self._runner, self._params
        for _ in range(iterations):
            runner.run(BenchPipeline, params)
        self.done += iterations


# -- the cases --------------------------------------------------------------------------------


def _instrumented(name: str, runs: Runs, sdk: Sdk | None) -> Case:
    """``runs`` instrumented with ``sdk``'s providers, or with none (API only, no SDK)."""

    def teardown() -> None:
        INSTRUMENTOR.uninstrument()
        if sdk is not None:
            sdk.tracer_provider.force_flush()

    providers = sdk.providers if sdk is not None else {}
    return Case(
        name,
        runs,
        STEPS,
        setup=lambda: INSTRUMENTOR.instrument(**providers),
        teardown=teardown,
    )


def _require_every_span(sdk: Sdk, runs: Runs, who: str) -> None:
    exported, made = sdk.spans_exported(), runs.done * SPANS_PER_RUN
    require(exported > 0, f"{who} exported no span")
    require(exported == made, f"{who}: {exported} spans exported for {made} made (dropped?)")


def _runs_patched(runs: Runs) -> Callable[[], bool]:
    """One run, then whether loom's emit was patched while it ran."""

    def patched() -> bool:
        runs(1)
        return hasattr(ObservabilityRuntime.emit, "__wrapped__")

    return patched


def per_step(quick: bool, ours: Sdk) -> list[Row]:
    instrumented = Runs()
    iterations, rounds = scale(quick, RUNS_PER_BLOCK, ROUNDS)
    rows = compare(
        SUITE,
        "per step: instrumented vs bare",
        Case(BARE, Runs(), STEPS),
        [_instrumented(OURS, instrumented, ours), _instrumented(OURS_NO_SDK, Runs(), None)],
        unit="step",
        iterations=iterations,
        rounds=rounds,
        note=f"one process of {STEPS} trivial steps per run; run and process spans amortised",
    )
    _require_every_span(ours, instrumented, OURS)
    require(ours.metric_points() > 0, f"{OURS} recorded no metric point")
    require(instrumented_without_sdk(_runs_patched(Runs())), f"{OURS_NO_SDK} was not instrumented")
    _bare_emits_nothing([ours])
    return rows


def peers(quick: bool, theirs: Sdk) -> list[Row]:
    """loom's own tracer on ``theirs``; ours on a fresh SDK, so each one's spans are counted."""
    ours = Sdk.create()
    instrumented, traced_by_loom = Runs(), Runs(theirs.tracer_provider.get_tracer("loom"))
    iterations, rounds = scale(quick, RUNS_PER_BLOCK, ROUNDS)
    rows = compare(
        SUITE,
        "peers: loom",
        Case(BARE, Runs(), STEPS),
        [
            Case(
                LOOM_TRACER,
                traced_by_loom,
                STEPS,
                teardown=theirs.tracer_provider.force_flush,
            ),
            _instrumented(OURS, instrumented, ours),
        ],
        unit="step",
        iterations=iterations,
        rounds=rounds,
        note="loom's own spans (tracer= on ObservabilityRuntime) vs ours, same workload",
    )
    _require_every_span(theirs, traced_by_loom, LOOM_TRACER)
    require(theirs.metric_points() == 0, f"{LOOM_TRACER} is expected to record no metric")
    _require_every_span(ours, instrumented, OURS)
    _bare_emits_nothing([theirs, ours])
    ours.shutdown()
    return [
        *rows,
        added_cost_ratio(rows, OURS, LOOM_TRACER, "peers: added per step vs loom's native tracer"),
    ]


def _bare_emits_nothing(sdks: Sequence[Sdk]) -> None:
    """A bare run, after every instrumented block, reaches none of the SDKs."""
    before = [(sdk.spans_exported(), _histogram_samples(sdk.reader)) for sdk in sdks]
    Runs()(3)
    after = [(sdk.spans_exported(), _histogram_samples(sdk.reader)) for sdk in sdks]
    require(before == after, f"a bare run emitted telemetry: {before} -> {after}")


# -- what each makes per step, counted -------------------------------------------------------


class _Counting:
    """A meter provider that counts what is recorded through it, by instrument method."""

    def __init__(self, provider: MeterProvider) -> None:
        self._provider = provider
        self.calls: Counter[str] = Counter()

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return _CountingMeter(self._provider.get_meter(*args, **kwargs), self.calls)


class _CountingMeter:
    def __init__(self, meter: Any, calls: Counter[str]) -> None:
        self._meter, self._calls = meter, calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._meter, name)
        if not name.startswith("create_"):
            return attribute
        kind = name[len("create_") :]
        return lambda *args, **kwargs: _CountingInstrument(
            attribute(*args, **kwargs), kind, self._calls
        )


class _CountingInstrument:
    def __init__(self, instrument: Any, kind: str, calls: Counter[str]) -> None:
        self._instrument, self._kind, self._calls = instrument, kind, calls

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._instrument, name)
        if name not in ("add", "record"):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[f"{self._kind}.{name}"] += 1
            return method(*args, **kwargs)

        return counted


def _histogram_samples(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    return sum(
        point.count
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    )


def _calls_per_step(
    runs: int, make_run: Callable[[TracerProvider], Callable[[int], None]], instrumented: bool
) -> str:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = _Counting(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    run = make_run(tracer_provider)
    if instrumented:
        INSTRUMENTOR.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        run(runs)
    finally:
        if instrumented:
            INSTRUMENTOR.uninstrument()
    spans = exporter.get_finished_spans()
    steps = runs * STEPS
    counts = {
        "spans": len(spans),
        "span events": sum(len(span.events) for span in spans),
        "span attributes": sum(len(span.attributes or {}) for span in spans),
        **{f"{kind} calls": count for kind, count in sorted(meter_provider.calls.items())},
    }
    if not meter_provider.calls:
        counts["metric calls"] = 0
    tracer_provider.shutdown()
    return ", ".join(f"{count / steps:.2f} {what}" for what, count in counts.items())


def sdk_calls() -> dict[str, str]:
    runs = 5
    return {
        f"SDK calls per step, {OURS}": _calls_per_step(runs, lambda _: Runs(), instrumented=True),
        f"SDK calls per step, {LOOM_TRACER}": _calls_per_step(
            runs, lambda provider: Runs(provider.get_tracer("loom")), instrumented=False
        ),
        "workload": (
            f"ETLRunner.run of 1 pipeline, 1 process, {STEPS} sequential steps returning a "
            f"constant, target writes discarded; per step = per run / {STEPS}"
        ),
    }


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    results = Results(SUITE, versions=versions("loom-kernel", "polars"))
    ours, theirs = Sdk.create(), Sdk.create()
    results.rows += per_step(options.quick, ours)
    results.rows += peers(options.quick, theirs)
    results.facts.update(sdk_calls())
    ours.shutdown()
    theirs.shutdown()
    finish(results, options.out)


if __name__ == "__main__":
    main()
