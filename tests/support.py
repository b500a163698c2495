"""Test helpers: the real OpenTelemetry SDK with in-memory exporter and reader."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry_instrumentation_execstatus import telemetry


@contextmanager
def held_by_another_thread(*locks: Any, seconds: float = 30.0) -> Iterator[None]:
    """Another thread holds ``locks`` for the whole block (at most ``seconds``), as a thread
    of a parent in the middle of an export or a report would at the moment of a fork."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            held.set()
            release.wait(seconds)

    thread = threading.Thread(target=hold, name="lock-holder", daemon=True)
    thread.start()
    assert held.wait(seconds), "the holder thread could not take the locks"
    try:
        yield
    finally:
        release.set()
        thread.join(seconds)


class Telemetry:
    """What a test reads back: finished spans and metric points, by name."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        matches = [span for span in self.spans() if span.name == name]
        assert len(matches) == 1, (
            f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        )
        return matches[0]

    def points(self, metric_name: str) -> list[Any]:
        return [
            point for metric, _ in self._metrics(metric_name) for point in metric.data.data_points
        ]

    def metric(self, metric_name: str) -> Any:
        """The metric and its instrumentation scope."""
        found = list(self._metrics(metric_name))
        if not found:
            raise AssertionError(f"no metric {metric_name}")
        return found[0]

    def _metrics(self, metric_name: str) -> Iterator[tuple[Any, Any]]:
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == metric_name:
                        yield metric, scope_metrics.scope

    def sums(self, metric_name: str) -> dict[frozenset, int]:
        """Counter / up-down counter values by attribute set."""
        return {frozenset(p.attributes.items()): p.value for p in self.points(metric_name)}

    def sums_by(self, metric_name: str, *keys: str) -> dict[Any, int]:
        """Counter values summed by the given attributes: by value for one key, else by tuple
        (a missing attribute is None)."""
        totals: dict[Any, int] = {}
        for point in self.points(metric_name):
            values = tuple(point.attributes.get(key) for key in keys)
            group = values[0] if len(keys) == 1 else values
            totals[group] = totals.get(group, 0) + point.value
        return totals

    def spawns(self) -> dict[Any, int]:
        """Worker spawns by (outcome, failure reason)."""
        return self.sums_by(
            "execution.worker.spawns",
            "execution.worker.outcome",
            "execution.worker.spawn_failure.reason",
        )

    def transitions(self, **where: str) -> dict[tuple[str, str], Any]:
        """Histogram points of execution.status_transition.duration by (from, to)."""
        selected = {}
        for point in self._transition_points(where):
            key = _from_to(point)
            assert key not in selected, f"two points for {key} with {where}"
            selected[key] = point
        return selected

    def transition_counts(self, **where: str) -> dict[tuple[str, str], int]:
        """Histogram sample counts by (from, to), summed over the other attributes."""
        counts: dict[tuple[str, str], int] = {}
        for point in self._transition_points(where):
            counts[_from_to(point)] = counts.get(_from_to(point), 0) + point.count
        return counts

    def _transition_points(self, where: dict[str, str]) -> list[Any]:
        """Points whose attributes match ``where`` (keyword underscores stand for dots)."""
        return [
            point
            for point in self.points("execution.status_transition.duration")
            if all(point.attributes.get(k.replace("_", ".")) == v for k, v in where.items())
        ]


def _from_to(point: Any) -> tuple[str, str]:
    return point.attributes["execution.status.from"], point.attributes["execution.status.to"]


def wait_until_settled(timeout: float = 5.0) -> None:
    """Wait until no execution is in flight: routilux finishes downstream routines on its own
    threads, a few microseconds after a pipeline script's last signal."""
    live = telemetry.current()
    assert live is not None
    deadline = time.monotonic() + timeout
    while live.tracker.in_flight_count() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert live.tracker.in_flight_count() == 0, "executions still in flight"


def known_workers(live: telemetry.Telemetry) -> int:
    """How many workers ``live``'s recorder follows (its table's size): the recorder itself
    offers no count, as nothing but a test needs one."""
    return len(live.workers._workers)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BENCHMARKS = EXAMPLES.parent / "benchmarks"
ADDED = ", added"  # the unit of a benchmark row comparing what two cases add over a baseline


def run_example_instrumented(script: str, *arguments: str) -> list[dict[str, Any]]:
    """Run ``examples/<script>`` unmodified under ``opentelemetry-instrument`` with the console
    exporters, as a user would; return the JSON documents they printed (spans, metrics)."""
    return run_instrumented(EXAMPLES / script, *arguments)


def run_instrumented(script: Path, *arguments: str) -> list[dict[str, Any]]:
    """Run a Python script under ``opentelemetry-instrument`` with the console exporters."""
    environment = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # one export, at shutdown
        "OTEL_SERVICE_NAME": f"example-{script.stem}",
    }
    completed = subprocess.run(
        instrumented_command(script, *arguments),
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
        check=True,
    )
    return json_documents(completed.stdout)[0]


def instrumented_command(script: Path, *arguments: str) -> list[str]:
    """``opentelemetry-instrument python <script> <arguments>``, from this interpreter's
    environment, as a user runs a script zero-code."""
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    return [str(instrument), sys.executable, str(script), *arguments]


def console_spans(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if "context" in d and "name" in d]


def console_points(documents: list[dict[str, Any]], metric_name: str) -> list[dict[str, Any]]:
    """Data points of ``metric_name`` in the last metrics export (they are cumulative)."""
    exports = [d for d in documents if "resource_metrics" in d]
    if not exports:
        return []
    return [
        point
        for resource in exports[-1]["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        if metric["name"] == metric_name
        for point in metric["data"]["data_points"]
    ]


def json_documents(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The console exporters print JSON documents between the script's own output lines:
    return the documents, and the other non-empty lines."""
    decoder = json.JSONDecoder()
    documents: list[dict[str, Any]] = []
    rest: list[str] = []
    index = 0
    while (start := text.find("{", index)) >= 0:
        try:
            document, end = decoder.raw_decode(text, start)
        except ValueError:
            rest.append(text[index : start + 1])
            index = start + 1
            continue
        rest.append(text[index:start])
        index = end
        if isinstance(document, dict):
            documents.append(document)
    rest.append(text[index:])
    return documents, [line.strip() for line in "".join(rest).splitlines() if line.strip()]


def run_quick_benchmark(suite: str, out: Path) -> dict[str, Any]:
    """Run ``benchmarks/bench_<suite>.py --quick`` and return the results it wrote, every row
    checked to hold usable figures. A quick run's timings are noise: no ratio's value is
    checked, only that the benchmark ran, validated itself and reported each row."""
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"bench_{suite}.py"), "--quick", "--out", str(out)],
        cwd=BENCHMARKS.parent,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads((out / f"{suite}.json").read_text())
    assert results["suite"] == suite
    for row in results["rows"]:
        if row["unit"].endswith(ADDED):
            # What each adds over the shared baseline: on a loaded machine either can come
            # out at or below 0 in so short a run, so only the ratio's being a number is
            # checked, and only where the baseline's added cost came out positive.
            assert math.isfinite(row["subject_us"]), row
            assert math.isfinite(row["baseline_us"]), row
            assert row["baseline_us"] <= 0 or math.isfinite(row["ratio"]), row
            if row["equal_floor"]:  # the floor made, counted, the calls the subject made
                assert row["subject_calls"] == row["baseline_calls"], row
                assert any(row["subject_calls"].values()), row
        else:
            for figure in ("ratio", "subject_us", "baseline_us"):
                assert math.isfinite(row[figure]) and row[figure] > 0, (figure, row)
    return results
