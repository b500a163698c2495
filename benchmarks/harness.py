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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry

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
    cases = [baseline, *subjects]
    per_unit_us: dict[str, list[float]] = {case.name: [] for case in cases}
    for case in cases:  # warm-up: caches, lazy imports, first-time registrations
        _timed(case, max(1, iterations // 10))
    for round_number in range(rounds):
        shift = round_number % len(cases)
        for case in cases[shift:] + cases[:shift]:
            seconds = _timed(case, iterations)
            per_unit_us[case.name].append(seconds / (iterations * case.units) * 1e6)
    base = per_unit_us[baseline.name]
    return [
        Row(
            suite=suite,
            benchmark=benchmark,
            subject=case.name,
            baseline=baseline.name,
            unit=unit,
            ratio=statistics.median(s / b for s, b in zip(per_unit_us[case.name], base)),
            subject_us=statistics.median(per_unit_us[case.name]),
            baseline_us=statistics.median(base),
            goal=goal,
            note=note,
        )
        for case in subjects
    ]


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
        unit=f"{ours.unit}, added",
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
