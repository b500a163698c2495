"""The demo: run an example pipeline instrumented and show what was emitted.

    python examples/demo.py [--orchestrator NAME] [--runs N]

Runs an example (``examples/routilux_pipeline.py`` by default; see ``PIPELINES``) and prints
the span tree of every run with durations and final statuses, the time spent per transition
(``execution.status_transition.duration``) and the worker counters. When
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal ``..._TRACES_ENDPOINT`` and
``..._METRICS_ENDPOINT``) is set, the same telemetry is also exported over OTLP/HTTP.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, telemetry

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _run_routilux(runs: int) -> None:
    import routilux_pipeline

    routilux_pipeline.run(jobs=runs)
    _wait_for_routines_to_return()


def _run_orcapod(runs: int) -> None:
    import orcapod_pipeline

    orcapod_pipeline.run(runs=runs)


def _run_loom(runs: int) -> None:
    import loom_pipeline

    for _ in range(runs):
        with tempfile.TemporaryDirectory() as directory:
            loom_pipeline.nightly(directory)


def _run_sqlalchemy(runs: int) -> None:
    import sqlalchemy_jobs

    sqlalchemy_jobs.instrument_columns()
    sqlalchemy_jobs.run(runs=runs)


def _run_celery(runs: int) -> None:
    import celery_demo

    celery_demo.run(runs)


def _run_control_plane(runs: int) -> None:
    import control_plane

    for number in range(1, runs + 1):
        control_plane.main(f"nightly-{number}")


PIPELINES: dict[str, Callable[[int], None]] = {
    "control-plane": _run_control_plane,
    "routilux": _run_routilux,
    "orcapod": _run_orcapod,
    "loom": _run_loom,
    "sqlalchemy": _run_sqlalchemy,
    "celery": _run_celery,
}


# The general OTLP endpoint, then the traces and metrics ones (which win over it).
OTLP_SIGNALS = ("_", "_TRACES_", "_METRICS_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orchestrator", choices=sorted(PIPELINES), default="routilux")
    parser.add_argument("--runs", type=int, default=2, help="times to run the example (default 2)")
    options = parser.parse_args()
    # Each example fails one step on purpose; the orchestrator logs that with a traceback, and
    # the span tree below shows it, so its logger is quieted to keep the terminal readable.
    logging.getLogger(options.orchestrator).setLevel(logging.CRITICAL)

    resource = Resource.create({"service.name": "execstatus-demo"})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    readers: list[MetricReader] = [reader]
    otlp = [os.environ.get(f"OTEL_EXPORTER_OTLP{signal}ENDPOINT") for signal in OTLP_SIGNALS]
    if any(otlp):
        readers.append(_add_otlp(tracer_provider))
    meter_provider = MeterProvider(metric_readers=readers, resource=resource)

    # Global too: the examples' own spans (the Celery client's) are then the demo's.
    trace.set_tracer_provider(tracer_provider)
    ExecStatusInstrumentor().instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    PIPELINES[options.orchestrator](options.runs)

    print(_span_tree(spans.get_finished_spans()))
    print(_status_table(reader))
    print(_worker_counters(reader))
    tracer_provider.shutdown()
    meter_provider.shutdown()
    if any(otlp):
        general, traces, metrics = otlp
        print(f"\nAlso exported over OTLP/HTTP: traces to {traces or general},")
        print(f"                              metrics to {metrics or general}.")


def _add_otlp(tracer_provider: TracerProvider) -> MetricReader:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return PeriodicExportingMetricReader(OTLPMetricExporter())


def _wait_for_routines_to_return(timeout: float = 5.0) -> None:
    """routilux signals "done" from inside a routine, microseconds before it returns."""
    live = telemetry.current()
    deadline = time.monotonic() + timeout
    while live is not None and live.tracker.in_flight_count() and time.monotonic() < deadline:
        time.sleep(0.005)


def _span_tree(spans: Any) -> str:
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        children[span.parent.span_id if span.parent else None].append(span)
    lines = ["Spans"]

    def walk(span: ReadableSpan, prefix: str, last: bool, root: bool) -> None:
        status = span.attributes.get("execution.status", "?")
        error = span.attributes.get("error.type")
        detail = f", {error}" if error and error != status else ""
        label = f"{span.name}  [{status}{detail}]"
        millis = (span.end_time - span.start_time) / 1e6
        branch = "" if root else ("└─ " if last else "├─ ")
        lines.append(f"{prefix}{branch}{label:<40} {millis:8.1f} ms")
        kids = sorted(children[span.context.span_id], key=lambda s: s.start_time)
        for index, kid in enumerate(kids):
            extension = "" if root else ("   " if last else "│  ")
            walk(kid, prefix + extension, index == len(kids) - 1, False)

    for root in sorted(children[None], key=lambda s: s.start_time):
        walk(root, "  ", True, True)
    return "\n".join(lines)


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        point
        for resource_metrics in (data.resource_metrics if data else [])
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def _status_table(reader: InMemoryMetricReader) -> str:
    rows = []
    for point in _points(reader, "execution.status_transition.duration"):
        attributes = point.attributes
        name = attributes.get("cicd.pipeline.task.name") or attributes.get("cicd.pipeline.name")
        rows.append(
            (
                attributes["execution.level"],
                name,
                f"{attributes['execution.status.from']} -> {attributes['execution.status.to']}",
                point.count,
                point.sum / point.count * 1000,
            )
        )
    rows.sort()
    lines = [
        "\nTime spent per status (execution.status_transition.duration)",
        f"  {'level':<9} {'name':<18} {'transition':<22} {'count':>5} {'mean':>10}",
    ]
    for level, name, transition, count, mean in rows:
        lines.append(f"  {level:<9} {name:<18} {transition:<22} {count:>5} {mean:>7.1f} ms")
    return "\n".join(lines)


def _worker_counters(reader: InMemoryMetricReader) -> str:
    if not _points(reader, "execution.worker.spawns"):
        return "\nWorker counters: none (this orchestrator has no workers of its own)"
    lines = ["\nWorker counters"]
    for metric, label in (
        ("execution.worker.spawns", "execution.worker.outcome"),
        ("execution.worker.health_checks", "execution.worker.health.result"),
        ("execution.worker.drains", "execution.worker.outcome"),
    ):
        values = ", ".join(
            f"{point.attributes[label]}={point.value}" for point in _points(reader, metric)
        )
        lines.append(f"  {metric:<32} {values}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
