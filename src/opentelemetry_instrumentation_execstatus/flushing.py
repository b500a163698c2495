"""Export now what this process has recorded: for processes that end without interpreter
shutdown.

The SDK exports spans and metrics from background threads and on interpreter shutdown. A pool
child recycled by its parent, or a forked work horse, exits with ``os._exit``: no shutdown, and
whatever its batch processor and metric reader still hold is lost. An adapter whose framework
is about to end such a process asks the core to flush first. The providers are the ones the
instrumentation was given, else the global ones at the time of the flush (set by
``opentelemetry-instrument`` before or after ``instrument()``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace

from opentelemetry_instrumentation_execstatus.safety import report_internal_error

FLUSH_TIMEOUT_MILLIS = 5_000
"""How long one flush may wait for each provider's exporters: a process that is exiting
should not hang on an endpoint that does not answer."""


class Flusher:
    """``force_flush`` of the tracer and meter providers the instrumentation records to."""

    __slots__ = ("_meter_provider", "_tracer_provider")

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider

    def flush(self, timeout_millis: int = FLUSH_TIMEOUT_MILLIS) -> None:
        """Export what each provider holds, spans first; a provider without ``force_flush``
        (the API's no-op) has nothing to export. Never raises."""
        tracer_provider = self._tracer_provider or trace.get_tracer_provider()
        meter_provider = self._meter_provider or metrics.get_meter_provider()
        for provider in (tracer_provider, meter_provider):
            _flush(provider, timeout_millis)


def _flush(provider: Any, timeout_millis: int) -> None:
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return
    try:
        force_flush(timeout_millis=timeout_millis)
    except Exception:
        report_internal_error("flushing the telemetry")
