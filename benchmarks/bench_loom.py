"""loom-kernel 9: what the instrumentation adds to each step of a real loom ETL run.

The workload is loom's own executor (``ETLRunner.run``: compile, pipeline, process, steps,
lifecycle events through ``ObservabilityRuntime``) on a pipeline of one process with
``STEPS`` sequential steps whose ``execute`` returns a constant and whose target is written by
a writer that discards it. The steps do no work on purpose: what is timed is loom's per-step
machinery plus whatever telemetry rides on it, so the instrumentation's cost is as visible as it
can be (a step that reads and writes data takes milliseconds, and the same microseconds added
vanish in it). The unit is the step: a run's time divided by its ``STEPS`` steps, so the run's
own costs (compiling the plan, the pipeline and process spans, one each per run) are
amortised over its steps; each step carries 1/``STEPS`` of them. An iteration is a whole run,
so one iteration makes the same SDK calls as the next (what an equal floor is recorded from).

Every case is timed in one interleaved measurement (``harness.measure``):

- bare loom (no tracer, not instrumented);
- instrumented with a real SDK (batch span processor, a metric reader; ``Sdk``), and its equal
  floor: the SDK calls one run of it made, made again by hand (``harness.EqualFloor``);
- instrumented with no SDK at all (no provider passed and none set globally: the API's no-op
  path), against a wrapt pass-through of every function the adapter patches
  (``harness.PassThrough``: ``ObservabilityRuntime.emit`` and ``ETLExecutor.run_pipeline`` /
  ``run_process`` / ``run_step``; the adapter has no other hook);
- the peer: loom's own OpenTelemetry spans (``pipeline:X`` / ``process:X`` / ``step:X``,
  opened when ``ObservabilityRuntime`` is given ``tracer=``, here a tracer of a second real
  SDK), and its equal floor, recorded from loom's tracer the same way. loom's tracer makes
  spans only (more attributes than ours, a status, no span event, no metric); ours is held to
  what it adds plus the SDK cost of what we emit beyond it (our floor less the peer's,
  ``harness.added_against_peer``): what loom's tracer does besides its SDK calls (building
  its attributes, making its span current) counts as its cost, and the telemetry it does not
  make is not counted as ours being slow. The peer against its own floor is a row too: how
  far from its SDK calls a tracer built into the framework is.

Validity: the instrumented and peer cases must have exported exactly the spans their runs made
(``STEPS`` + 2 a run: none dropped, none missing), execstatus with an SDK metric points too,
the no-SDK case must really be instrumented, and a bare run after them must leave every SDK
untouched (instrumentation really off between blocks); each floor must make, counted, the SDK
calls it was recorded from; and with loom's tracer and execstatus both on, a run's spans must
be loom's alone (ours are not doubled onto them). Otherwise the script exits non-zero: it
measured nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Callable, ClassVar, NamedTuple

from harness import (
    INSTRUMENTOR,
    Case,
    EqualFloor,
    PassThrough,
    Results,
    Row,
    Samples,
    Sdk,
    added_against_floor,
    added_against_peer,
    added_cost_ratio,
    arguments,
    finish,
    instrumented_without_sdk,
    measure,
    ratio_rows,
    require,
    scale,
    versions,
)
from loom.core.observability.runtime import ObservabilityRuntime
from loom.etl import ETLParams, ETLPipeline, ETLProcess, ETLRunner, ETLStep, Format, IntoFile
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.trace import Tracer
from sdk_calls import RecordingProviders

from opentelemetry_instrumentation_execstatus.adapters.loom import LoomAdapter

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
PASS_THROUGH = "wrapt pass-through"
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

    def trace_with(self, tracer: Tracer | None) -> None:
        """From the next run on, loom opens its own spans on ``tracer`` (None: no spans)."""
        self._runner = _runner(tracer)

    def __call__(self, iterations: int) -> None:
        runner, params = self._runner, self._params
        for _ in range(iterations):
            runner.run(BenchPipeline, params)
        self.done += iterations


# -- the peer's equal floor ---------------------------------------------------------------------


def _peer_floor(sdk: Sdk) -> EqualFloor:
    """The SDK calls loom's own tracer makes in one run, recorded from loom tracing to the
    recording providers, made again by hand on ``sdk``."""
    runs = Runs()

    def turn_on(providers: RecordingProviders) -> None:
        runs.trace_with(providers.tracer_provider.get_tracer("loom"))

    return EqualFloor.record(
        LOOM_TRACER, sdk, runs, units=STEPS, peer=(turn_on, lambda: runs.trace_with(None))
    )


# -- the cases --------------------------------------------------------------------------------


class Sdks(NamedTuple):
    """One real SDK per case that emits, so each case's spans are counted on their own."""

    ours: Sdk
    theirs: Sdk  # loom's native tracer's
    our_floor: Sdk
    their_floor: Sdk

    @classmethod
    def create(cls) -> Sdks:
        return cls(Sdk.create(), Sdk.create(), Sdk.create(), Sdk.create())

    def shutdown(self) -> None:
        for sdk in self:
            sdk.shutdown()


class Cases(NamedTuple):
    bare: Case
    ours: Case
    our_floor: EqualFloor
    no_sdk: Case
    pass_through: Case
    peer: Case
    peer_floor: EqualFloor

    def timed(self, sdks: Sdks) -> list[Case]:
        """Every case, the floors flushed after each block as the others are."""
        return [
            self.bare,
            self.ours,
            _flushed(self.our_floor.case(), sdks.our_floor),
            self.no_sdk,
            self.pass_through,
            self.peer,
            _flushed(self.peer_floor.case(), sdks.their_floor),
        ]


def _flushed(case: Case, sdk: Sdk) -> Case:
    """``case`` with ``sdk``'s span queue flushed after each block (untimed)."""
    return replace(case, teardown=sdk.tracer_provider.force_flush)


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


def cases(sdks: Sdks, instrumented: Runs, traced_by_loom: Runs, pass_through: PassThrough) -> Cases:
    """The SDK case runs through ``instrumented``, the peer through ``traced_by_loom`` (its
    tracer on ``sdks.theirs``); each floor is recorded (warmed up, then one run, twice: both
    must make the same calls) on an SDK of its own."""
    return Cases(
        bare=Case(BARE, Runs(), STEPS),
        ours=_instrumented(OURS, instrumented, sdks.ours),
        our_floor=EqualFloor.record(OURS, sdks.our_floor, Runs(), units=STEPS),
        no_sdk=_instrumented(OURS_NO_SDK, Runs(), None),
        pass_through=Case(
            PASS_THROUGH,
            Runs(),
            STEPS,
            setup=pass_through.setup,
            teardown=pass_through.teardown,
        ),
        peer=Case(
            LOOM_TRACER,
            traced_by_loom,
            STEPS,
            teardown=sdks.theirs.tracer_provider.force_flush,
        ),
        peer_floor=_peer_floor(sdks.their_floor),
    )


# -- the rows ---------------------------------------------------------------------------------


def _peer_against_its_floor(samples: Samples, floor: EqualFloor) -> Row:
    """What loom's tracer adds per step against its own SDK calls: how far a tracer written
    by the framework's authors is from its floor (no goal: it is not ours)."""
    row = added_against_floor(
        samples,
        SUITE,
        "peers: loom native tracer, added per step vs the same SDK calls",
        LOOM_TRACER,
        floor,
        bare=BARE,
        unit="step",
    )
    row.goal = None
    return row


def rows(samples: Samples, timed: Cases) -> list[Row]:
    per_step = ratio_rows(
        samples,
        SUITE,
        "per step: instrumented vs bare",
        BARE,
        [OURS, OURS_NO_SDK, PASS_THROUGH],
        unit="step",
        note=f"one process of {STEPS} trivial steps per run; run and process spans amortised",
    )
    against_pass_through = added_cost_ratio(
        per_step,
        OURS_NO_SDK,
        PASS_THROUGH,
        "per step: no SDK, added per step vs a wrapt pass-through",
    )
    against_pass_through.goal = 2.0
    peers = ratio_rows(
        samples,
        SUITE,
        "peers: loom",
        BARE,
        [LOOM_TRACER],
        unit="step",
        note="loom's own spans (tracer= on ObservabilityRuntime), same workload",
    )
    return [
        *per_step,
        added_against_floor(
            samples,
            SUITE,
            "per step: added per step vs the same SDK calls",
            OURS,
            timed.our_floor,
            bare=BARE,
            unit="step",
        ),
        against_pass_through,
        *peers,
        _peer_against_its_floor(samples, timed.peer_floor),
        added_cost_ratio(
            [*per_step, *peers], OURS, LOOM_TRACER, "peers: added per step vs loom's native tracer"
        ),
        added_against_peer(
            samples,
            SUITE,
            "peers: added per step vs loom's native tracer and the SDK calls we make beyond it",
            ours=timed.our_floor,
            peer=timed.peer_floor,
            bare=BARE,
            unit="step",
        ),
    ]


# -- validity ---------------------------------------------------------------------------------


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


def check(sdks: Sdks, instrumented: Runs, traced_by_loom: Runs) -> None:
    """Fail unless each case did what its name says."""
    _require_every_span(sdks.ours, instrumented, OURS)
    require(sdks.ours.metric_points() > 0, f"{OURS} recorded no metric point")
    _require_every_span(sdks.theirs, traced_by_loom, LOOM_TRACER)
    require(sdks.theirs.metric_points() == 0, f"{LOOM_TRACER} is expected to record no metric")
    require(instrumented_without_sdk(_runs_patched(Runs())), f"{OURS_NO_SDK} was not instrumented")
    _bare_emits_nothing([sdks.ours, sdks.theirs])
    _no_second_set_of_spans()


def _no_second_set_of_spans() -> None:
    """With loom tracing itself and execstatus on, a run's spans are loom's only (ours are
    not doubled onto them) and its histogram samples are recorded: what a user who turns both
    on gets, and why the peer is compared with ours alone."""
    sdk = Sdk.create()
    runs = Runs(sdk.tracer_provider.get_tracer("loom"))
    INSTRUMENTOR.instrument(**sdk.providers)
    try:
        runs(1)
    finally:
        INSTRUMENTOR.uninstrument()
    _require_every_span(sdk, runs, f"{LOOM_TRACER} with execstatus on")
    require(_histogram_samples(sdk.reader) > 0, "execstatus recorded nothing under loom's spans")
    sdk.shutdown()


def _bare_emits_nothing(sdks: Sequence[Sdk]) -> None:
    """A bare run, after every instrumented block, reaches none of the SDKs."""
    before = [(sdk.spans_exported(), _histogram_samples(sdk.reader)) for sdk in sdks]
    Runs()(3)
    after = [(sdk.spans_exported(), _histogram_samples(sdk.reader)) for sdk in sdks]
    require(before == after, f"a bare run emitted telemetry: {before} -> {after}")


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


def facts(timed: Cases, pass_through: PassThrough) -> dict[str, str]:
    calls = pass_through.calls_per_unit(Runs(), STEPS)
    require(calls > 0, f"{PASS_THROUGH} wraps nothing loom calls")
    return {
        "equal floor": timed.our_floor.describe(),
        "equal floor, peer": timed.peer_floor.describe(),
        "pass-through: patched calls per step": f"{calls:g}",
        "workload": (
            f"ETLRunner.run of 1 pipeline, 1 process, {STEPS} sequential steps returning a "
            f"constant, target writes discarded; per step = per run / {STEPS}"
        ),
    }


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    sdks = Sdks.create()
    instrumented, traced_by_loom = Runs(), Runs(sdks.theirs.tracer_provider.get_tracer("loom"))
    pass_through = PassThrough(LoomAdapter)
    timed = cases(sdks, instrumented, traced_by_loom, pass_through)
    iterations, rounds = scale(options.quick, RUNS_PER_BLOCK, ROUNDS)
    samples = measure(timed.timed(sdks), iterations=iterations, rounds=rounds)
    check(sdks, instrumented, traced_by_loom)
    results = Results(SUITE, versions=versions("loom-kernel", "polars"))
    results.rows += rows(samples, timed)
    results.facts.update(facts(timed, pass_through))
    sdks.shutdown()
    finish(results, options.out)


if __name__ == "__main__":
    main()
