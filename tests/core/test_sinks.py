"""Whether anything records: the tracker's early exit must never drop telemetry an SDK records."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider

from opentelemetry_instrumentation_execstatus.sinks import Sinks


def _sinks(tracer_provider, meter_provider) -> Sinks:
    histogram = meter_provider.get_meter("test").create_histogram("h")
    return Sinks(tracer_provider.get_tracer("test"), histogram, "test")


def test_no_op_providers_record_nothing():
    assert _sinks(NoOpTracerProvider(), NoOpMeterProvider()).off()


def test_an_sdk_for_either_signal_records():
    assert not _sinks(TracerProvider(), MeterProvider()).off()
    assert not _sinks(TracerProvider(), NoOpMeterProvider()).off()
    assert not _sinks(NoOpTracerProvider(), MeterProvider()).off()


def test_the_sdk_disabled_records_nothing(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert _sinks(TracerProvider(), MeterProvider()).off()


def test_proxies_record_once_a_global_provider_is_set():
    """In a fresh interpreter: the API's proxies before and after the global providers."""
    code = textwrap.dedent(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry_instrumentation_execstatus.sinks import Sinks

        sinks = Sinks(trace.get_tracer("t"), metrics.get_meter("t").create_histogram("h"), "t")
        before = sinks.off()
        trace.set_tracer_provider(TracerProvider())
        metrics.set_meter_provider(MeterProvider())
        print(before, sinks.off())
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.split() == ["True", "False"]
