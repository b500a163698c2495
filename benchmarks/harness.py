"""Side-by-side measurement: every figure is a ratio of two cases timed in the same run.

This machine, like most CI runners, drifts by tens of percent between runs, so absolute times
don't carry from one run to the next. Each benchmark therefore times its cases in interleaved
rounds (every case once per round, in a rotating order, after a garbage collection) and
reports, for each case against its baseline, the median of the per-round ratios, and the median
microseconds per unit (a step, a transition) with the difference in microseconds per unit.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import sdk_calls
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry
from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.patching import Patch, Patcher, Wrapper
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

INSTRUMENTOR = ExecStatusInstrumentor()


@dataclass(frozen=True)
class Case:
    """One way of doing the work: ``run(iterations)`` does ``iterations`` times ``units`` units
    of it (steps, transitions...). ``setup`` and ``teardown`` run around each timed block,
    untimed (instrument, uninstrument)."""

    name: str
    run: Callable[[int], object]
    units: int = 1
    setup: Callable[[], object] | None = None
    teardown: Callable[[], object] | None = None


@dataclass
class Row:
    """One line of the table: ``subject`` against ``baseline``, per ``unit``."""

    suite: str
    benchmark: str
    subject: str
    baseline: str
    unit: str
    ratio: float
    subject_us: float
    baseline_us: float
    goal: float | None = None
    note: str = ""
    # SDK calls per unit by kind (``sdk_calls.KINDS``), for a row against an equal floor:
    # what the subject made and what the floor made, counted, equal by construction.
    subject_calls: dict[str, float] | None = None
    baseline_calls: dict[str, float] | None = None
    equal_floor: bool = False  # the baseline is the subject's equal floor: calls must match

    @property
    def added_us(self) -> float:
        """What the subject adds per unit over the baseline."""
        return self.subject_us - self.baseline_us


@dataclass
class Results:
    """What one benchmark script measured, with the versions it ran on."""

    suite: str
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)  # memory, import times: measured values
    versions: dict[str, str] = field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.suite}.json"
        document = {
            "suite": self.suite,
            "rows": [asdict(row) for row in self.rows],
            "facts": self.facts,
            "versions": self.versions,
            "python": platform.python_version(),
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


Samples = dict[str, list[float]]  # microseconds per unit, one per round, by case name


def measure(cases: Sequence[Case], *, iterations: int, rounds: int) -> Samples:
    """Time every case in interleaved rounds (each once per round, in a rotating order): one
    microseconds-per-unit figure per case and round."""
    per_unit_us: Samples = {case.name: [] for case in cases}
    for case in cases:  # warm-up: caches, lazy imports, first-time registrations
        _timed(case, max(1, iterations // 10))
    for round_number in range(rounds):
        shift = round_number % len(cases)
        for case in cases[shift:] + cases[:shift]:
            seconds = _timed(case, iterations)
            per_unit_us[case.name].append(seconds / (iterations * case.units) * 1e6)
    return per_unit_us


def compare(
    suite: str,
    benchmark: str,
    baseline: Case,
    subjects: Sequence[Case],
    *,
    unit: str,
    iterations: int,
    rounds: int,
    goal: float | None = None,
    note: str = "",
) -> list[Row]:
    """Time ``baseline`` and every subject in interleaved rounds; one row per subject."""
    samples = measure([baseline, *subjects], iterations=iterations, rounds=rounds)
    return ratio_rows(
        samples,
        suite,
        benchmark,
        baseline.name,
        [case.name for case in subjects],
        unit=unit,
        goal=goal,
        note=note,
    )


def ratio_rows(
    samples: Samples,
    suite: str,
    benchmark: str,
    baseline: str,
    subjects: Sequence[str],
    *,
    unit: str,
    goal: float | None = None,
    note: str = "",
) -> list[Row]:
    """Each subject against ``baseline``: the median of the per-round ratios."""
    base = samples[baseline]
    return [
        Row(
            suite=suite,
            benchmark=benchmark,
            subject=subject,
            baseline=baseline,
            unit=unit,
            ratio=statistics.median(s / b for s, b in zip(samples[subject], base)),
            subject_us=statistics.median(samples[subject]),
            baseline_us=statistics.median(base),
            goal=goal,
            note=note,
        )
        for subject in subjects
    ]


def added_against_floor(
    samples: Samples,
    suite: str,
    benchmark: str,
    subject: str,
    floor: EqualFloor,
    *,
    bare: str | None,
    unit: str,
    goal: float = 1.10,
) -> Row:
    """What ``subject`` adds per unit over ``bare`` (None: nothing, the subject is all
    instrumentation), against ``floor``'s cost per unit: the median of the per-round ratios."""
    floor_us = samples[floor.name]
    added_us = (
        samples[subject]
        if bare is None
        else [s - b for s, b in zip(samples[subject], samples[bare])]
    )
    return Row(
        suite=suite,
        benchmark=benchmark,
        subject=subject,
        baseline=floor.name,
        unit=f"{unit}{ADDED}",
        ratio=statistics.median(a / f for a, f in zip(added_us, floor_us)),
        subject_us=statistics.median(added_us),
        baseline_us=statistics.median(floor_us),
        goal=goal,
        subject_calls=floor.calls_per_unit,
        baseline_calls=floor.replayed_calls_per_unit,
        equal_floor=True,
    )


def added_against_peer(
    samples: Samples,
    suite: str,
    benchmark: str,
    *,
    ours: EqualFloor,
    peer: EqualFloor,
    bare: str,
    unit: str,
    goal: float = 1.10,
) -> Row:
    """What we add per unit against what the peer adds plus the SDK cost of what we emit
    beyond it (our equal floor less the peer's), per round: emitting more is not mistaken for
    being slow, and emitting less is not taken for being fast."""
    ours_added = [s - b for s, b in zip(samples[ours.subject], samples[bare])]
    fair = [
        p - b + (mine - theirs)
        for p, b, mine, theirs in zip(
            samples[peer.subject], samples[bare], samples[ours.name], samples[peer.name]
        )
    ]
    return Row(
        suite=suite,
        benchmark=benchmark,
        subject=ours.subject,
        baseline=f"{peer.subject} + SDK cost of what we emit beyond it",
        unit=f"{unit}{ADDED}",
        ratio=statistics.median(a / f for a, f in zip(ours_added, fair)),
        subject_us=statistics.median(ours_added),
        baseline_us=statistics.median(fair),
        goal=goal,
        subject_calls=ours.calls_per_unit,
        baseline_calls=peer.calls_per_unit,
    )


ADDED = ", added"  # the unit of a row comparing two added costs (report.py prints them so)


def added_cost_ratio(rows: Sequence[Row], subject: str, peer: str, benchmark: str) -> Row:
    """What ``subject`` adds per unit over the shared baseline, against what ``peer`` adds:
    for instrumentations of the same work, the fair comparison (the work itself cancels)."""
    ours = next(row for row in rows if row.subject == subject)
    theirs = next(row for row in rows if row.subject == peer)
    return Row(
        suite=ours.suite,
        benchmark=benchmark,
        subject=subject,
        baseline=peer,
        unit=f"{ours.unit}{ADDED}",
        ratio=ours.added_us / theirs.added_us if theirs.added_us > 0 else float("inf"),
        subject_us=ours.added_us,
        baseline_us=theirs.added_us,
    )


def _timed(case: Case, iterations: int) -> float:
    if case.setup is not None:
        case.setup()
    try:
        gc.collect()
        start = time.perf_counter()
        case.run(iterations)
        return time.perf_counter() - start
    finally:
        if case.teardown is not None:
            case.teardown()


class CountingSpanExporter(SpanExporter):
    """Counts and forgets: the exporter's network cost is not what is measured, but a
    benchmark can check that the instrumented case did make spans."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[object]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@dataclass
class Sdk:
    """A real SDK as a user runs it (batch span processor, a metric reader), exporting nowhere.

    The metric reader is only collected by ``metric_points``: recording costs the same whether
    or when it is. No global provider is ever set, so a case instrumented without these
    providers runs on the API alone (no SDK).
    """

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: CountingSpanExporter
    reader: InMemoryMetricReader

    @classmethod
    def create(cls) -> Sdk:
        exporter = CountingSpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        return cls(tracer_provider, MeterProvider(metric_readers=[reader]), exporter, reader)

    @property
    def providers(self) -> dict[str, object]:
        """Keyword arguments for ``instrument()``."""
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans_exported(self) -> int:
        self.tracer_provider.force_flush()
        return self.exporter.spans

    def metric_points(self) -> int:
        data = self.reader.get_metrics_data()
        if data is None:
            return 0
        return sum(
            len(metric.data.data_points)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        )

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


class EqualFloor:
    """The SDK calls one iteration of an instrumented case made, made again by hand
    (``sdk_calls``): the cost its telemetry has to have, timed as a case of its own.

    ``record`` instruments with recording providers in front of ``sdk``, warms up, records
    two iterations and keeps the second; both must make the same calls, or the unit is not
    steady and the benchmark is invalid. The floor's own calls are counted the same way, and
    must equal the record's, kind by kind and in order.
    """

    def __init__(
        self, subject: str, log: sdk_calls.CallLog, instruments: list, units: int, sdk: Sdk
    ) -> None:
        self.subject = subject
        self.name = f"same SDK calls as {subject}, by hand"
        self.units = units
        self._replay = sdk_calls.replay(log, instruments, sdk.tracer_provider, sdk.meter_provider)
        self.calls_per_unit = sdk_calls.per_unit(log.counts(), units)
        replayed = _replayed_calls(log, instruments, sdk)
        require(
            replayed.shape() == log.shape(),
            f"the equal floor of {subject} does not make the calls it was recorded from",
        )
        self.replayed_calls_per_unit = sdk_calls.per_unit(replayed.counts(), units)

    @classmethod
    def record(
        cls,
        subject: str,
        sdk: Sdk,
        run: Callable[[int], object],
        *,
        units: int,
        warm_up: int = 3,
        peer: tuple[Callable[[sdk_calls.RecordingProviders], object], Callable[[], object]]
        | None = None,
        **options: Any,
    ) -> EqualFloor:
        """The floor of ``run`` instrumented with ``options``; or, for a ``peer`` (what
        turns it on with the recording providers it is given, what turns it off), of the
        peer's own telemetry."""
        recorder = sdk_calls.RecordingProviders(sdk.tracer_provider, sdk.meter_provider)
        turn_on, turn_off = peer or (
            lambda providers: INSTRUMENTOR.instrument(**providers.providers, **options),
            INSTRUMENTOR.uninstrument,
        )
        turn_on(recorder)
        try:
            run(warm_up)
            with recorder.recording() as first:
                run(1)
            shape = first.shape()
            with recorder.recording() as log:
                run(1)
        finally:
            turn_off()
        require(log.calls != [], f"{subject} made no SDK call to record")
        require(log.shape() == shape, f"{subject} made other SDK calls from one unit to the next")
        return cls(subject, log, recorder.instruments, units, sdk)

    def case(self) -> Case:
        replay = self._replay

        def run(iterations: int) -> None:
            for _ in range(iterations):
                replay()

        return Case(self.name, run, self.units)

    def describe(self) -> str:
        """The calls per unit, for the facts list."""
        listed = ", ".join(
            f"{count:g} {kind}{'es' if kind.endswith('s') else 's'}"
            for kind, count in self.calls_per_unit.items()
            if count
        )
        return f"SDK calls per unit, {self.subject}: {listed}"


def _replayed_calls(log: sdk_calls.CallLog, instruments: list, sdk: Sdk) -> sdk_calls.CallLog:
    """The calls a replay of ``log`` makes, recorded as the instrumented ones were."""
    recorder = sdk_calls.RecordingProviders(sdk.tracer_provider, sdk.meter_provider)
    replay = sdk_calls.replay(log, instruments, recorder.tracer_provider, recorder.meter_provider)
    with recorder.recording() as replayed:
        replay()
    return replayed


class PassThrough:
    """Every function ``adapter`` wraps, wrapped instead by a wrapt pass-through: what the
    no-SDK case is held to (its added cost per patched call against a pass-through's). Only
    the adapter's ``Patch`` entries: an ``OnImport`` (an event listener, an attribute observed)
    has no generic pass-through, and its benchmark says what stands for it. ``setup`` and
    ``teardown`` are a case's."""

    def __init__(self, adapter: type[Adapter]) -> None:
        self._targets = [
            (patch.module, patch.target)
            for patch in adapter(Telemetry.create(ExecStatusConfig())).patches()
            if isinstance(patch, Patch)
        ]
        self._patcher: Patcher | None = None
        self._calls = 0

    def setup(self, wrapper: Wrapper | None = None) -> None:
        self._patcher = Patcher(
            [Patch(module, target, wrapper or _pass_through) for module, target in self._targets]
        )
        self._patcher.start()

    def teardown(self) -> None:
        if self._patcher is not None:
            self._patcher.stop()
            self._patcher = None

    def calls_per_unit(self, run: Callable[[int], object], units: int) -> float:
        """How many patched calls one iteration of ``run`` makes, per unit."""
        return _counted_calls_per_unit(self, run, units)

    def _counting(
        self, wrapped: Callable[..., Any], _instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        self._calls += 1
        return wrapped(*args, **kwargs)


class NoOpHooks(ABC):
    """For an adapter that patches nothing and hooks into the framework's events (listeners,
    signals), what a wrapt pass-through is to a patched call: a hook that does nothing on
    each event the adapter hooks, registered as it registers its own, so that a case makes the
    same hook calls doing nothing. ``setup`` and ``teardown`` are a case's."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._calls = 0

    @abstractmethod
    def register(self, hook: Callable[..., Any]) -> list[Callable[[], None]]:
        """Register ``hook`` on each event, as the adapter registers its own; returns what
        unregisters each."""

    @abstractmethod
    def counts(self) -> list[int]:
        """How many hooks each of the events has now."""

    def setup(self, hook: Callable[..., Any] | None = None) -> None:
        self._undo = self.register(hook or _ignore)

    def teardown(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    def calls_per_unit(self, run: Callable[[int], object], units: int) -> float:
        """How many hook calls one iteration of ``run`` makes, per unit."""
        return _counted_calls_per_unit(self, run, units)

    def require_same_as(
        self, instrumented: Callable[[], AbstractContextManager[Any]], who: str
    ) -> int:
        """Check that these are one hook on each event ``who`` hooks while ``instrumented``
        is on, as many as its own; returns how many events that is."""
        bare = self.counts()
        with instrumented():
            theirs = self.counts()
        self.setup()
        try:
            ours = self.counts()
        finally:
            self.teardown()
        added = [on - off for on, off in zip(theirs, bare)]
        require(
            added == [on - off for on, off in zip(ours, bare)] and set(added) == {1},
            f"the no-op hooks ({ours}) are not {who}'s ({theirs}, bare {bare})",
        )
        return len(added)

    def _counting(self, *_arguments: Any, **_keywords: Any) -> None:
        self._calls += 1


def _ignore(*_arguments: Any, **_keywords: Any) -> None:
    """A hook that does nothing."""


def _counted_calls_per_unit(
    stand_in: PassThrough | NoOpHooks, run: Callable[[int], object], units: int
) -> float:
    """How many calls a stand-in's counting hook gets in one iteration of ``run`` (after one
    to warm up), per unit."""
    stand_in.setup(stand_in._counting)
    try:
        run(1)
        before = stand_in._calls
        run(1)
        return (stand_in._calls - before) / units
    finally:
        stand_in.teardown()


def _pass_through(wrapped: Callable[..., Any], _instance: Any, args: tuple, kwargs: dict) -> Any:
    return wrapped(*args, **kwargs)


def instrumenting(**options: Any) -> Callable[[], None]:
    """A case's setup: the instrumentation on, with ``options`` (providers, configuration)."""
    return lambda: INSTRUMENTOR.instrument(**options)


def uninstrument() -> None:
    """A case's teardown: the instrumentation off, every patch undone."""
    INSTRUMENTOR.uninstrument()


def then(*actions: Callable[[], object]) -> Callable[[], None]:
    """One setup or teardown made of several, run in order."""

    def run() -> None:
        for action in actions:
            action()

    return run


def instrumented_without_sdk(patched: Callable[[], bool]) -> bool:
    """With no SDK there is nothing to read back: check instead that, instrumented with no
    providers (none is ever set globally here), the orchestrator is ``patched`` and the
    instrumentation on, on its API-only path, as in a no-SDK case's blocks."""
    INSTRUMENTOR.instrument()
    try:
        live = telemetry.current()
        return patched() and live is not None and live.tracker.is_off()
    finally:
        INSTRUMENTOR.uninstrument()


def require(condition: bool, what: str) -> None:
    """Stop a benchmark whose case did not do what it claims (nothing instrumented...)."""
    if not condition:
        raise SystemExit(f"benchmark invalid: {what}")


def versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the distributions a benchmark ran on."""
    found = {}
    for name in ("opentelemetry-sdk", "wrapt", *distributions):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def arguments(description: str) -> argparse.Namespace:
    """``--out DIR`` for the results and ``--quick`` for a smoke run (no usable numbers)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(".bench"), help="results directory")
    parser.add_argument(
        "--quick", action="store_true", help="a few iterations only: checks the script runs"
    )
    return parser.parse_args()


def scale(quick: bool, iterations: int, rounds: int) -> tuple[int, int]:
    """Iterations and rounds for a full run, or a token amount for ``--quick``."""
    return (max(1, iterations // 50), 2) if quick else (iterations, rounds)


def finish(results: Results, out: Path) -> None:
    path = results.write(out)
    for row in results.rows:
        print(
            f"{row.benchmark}: {row.subject} vs {row.baseline}: {row.ratio:.2f}x "
            f"({row.subject_us:.2f} vs {row.baseline_us:.2f} us per {row.unit})",
            file=sys.stderr,
        )
    print(f"wrote {path}", file=sys.stderr)
