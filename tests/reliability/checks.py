"""The checks every reliability test ends with, on the real SDK's in-memory exporter and reader.

``settled`` is the rule of the suite: once every execution has ended, nothing is in flight,
every span that was started has ended, every ``execution.active`` and
``execution.worker.count`` series reads exactly 0, and everything recorded encodes as OTLP
(one value that does not encode would cost its whole export batch).
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from support import Telemetry

from opentelemetry_instrumentation_execstatus import telemetry

GAUGES = ("execution.active", "execution.worker.count")


class SpanLedger(SpanProcessor):
    """Counts spans started and ended, so a span that never ends is seen (the in-memory
    exporter only ever holds ended ones)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = 0
        self.ended = 0

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        with self._lock:
            self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended += 1


def ledger_for(otel: Telemetry) -> SpanLedger:
    ledger = SpanLedger()
    otel.tracer_provider.add_span_processor(ledger)
    return ledger


def gauge_values(otel: Telemetry) -> dict[str, dict[frozenset, int]]:
    return {name: otel.sums(name) for name in GAUGES}


def encodes_as_otlp(otel: Telemetry) -> None:
    """Every finished span, in one batch, and the metrics, encode as OTLP protobuf."""
    encode_spans(otel.spans()).SerializeToString()
    data = otel.reader.get_metrics_data()
    if data is not None:
        encode_metrics(data).SerializeToString()


def settled(otel: Telemetry, ledger: SpanLedger) -> None:
    live = telemetry.current()
    assert live is not None
    assert live.tracker.in_flight_count() == 0, "executions left in flight"
    assert ledger.started == ledger.ended, f"{ledger.started - ledger.ended} spans never ended"
    for name, values in gauge_values(otel).items():
        assert set(values.values()) <= {0}, f"{name} not back to 0: {values}"
    encodes_as_otlp(otel)
