"""Memory at scale, measured in a fresh interpreter (run by ``test_memory.py``).

It instruments with the real SDK, made cheap where the SDK itself would hold memory: the
span processor counts spans and drops them (an in-memory exporter would keep a million), the
meter provider is real with an in-memory reader. Then it runs executions through the public
API (``running -> succeeded``: one ``StatusTracker.transition`` each) and reads the resident
set size from ``/proc/self/status`` before and after. It prints one JSON document.

Usage: ``python memory_probe.py --executions N [--long-ids K] [--id-bytes B]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor, api, telemetry

WARMUP = 1000  # executions before the first reading: caches and the SDK's series are built


class CountingProcessor(SpanProcessor):
    """Counts spans started and ended, and keeps none (one thread: no lock needed)."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


def rss_bytes() -> int:
    """The resident set size, after a full collection (so garbage is not counted)."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_executions(first: int, count: int, make_id: Any = None) -> None:
    report = api.report_status
    for index in range(first, first + count):
        execution_id = f"job-{index}" if make_id is None else make_id(index)
        report(execution_id, "running", name="step")
        report(execution_id, "succeeded")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, required=True)
    parser.add_argument("--long-ids", type=int, default=0)
    parser.add_argument("--id-bytes", type=int, default=1 << 20)
    args = parser.parse_args()

    processor = CountingProcessor()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    ExecStatusInstrumentor().instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    live = telemetry.current()
    assert live is not None

    run_executions(0, WARMUP)
    rss_before = rss_bytes()
    started = time.perf_counter()
    run_executions(WARMUP, args.executions)
    seconds = time.perf_counter() - started
    rss_after = rss_bytes()

    long_ids: dict[str, Any] = {}
    if args.long_ids:
        prefix = "x" * (args.id_bytes - 16)

        def long_id(index: int) -> str:
            return f"{prefix}{index:016d}"  # a new string of id_bytes each time

        long_ids["rss_before"] = rss_bytes()
        run_executions(0, args.long_ids, long_id)
        long_ids["rss_after"] = rss_bytes()
        long_ids["count"] = args.long_ids
        long_ids["id_bytes"] = args.id_bytes

    tracker = live.tracker
    histogram = [
        point.count
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "execution.status_transition.duration"
        for point in metric.data.data_points
    ]
    print(
        json.dumps(
            {
                "executions": args.executions,
                "warmup": WARMUP,
                "seconds": seconds,
                "rss_before": rss_before,
                "rss_after": rss_after,
                "in_flight": tracker.in_flight_count(),
                "ended_keys": len(tracker.executions.ended),
                "max_in_flight": live.config.max_in_flight,
                "spans_started": processor.started,
                "spans_ended": processor.ended,
                "histogram_samples": sum(histogram),
                "long_ids": long_ids,
            }
        )
    )


if __name__ == "__main__":
    main()
