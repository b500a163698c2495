"""Shared fixtures: the real OpenTelemetry SDK with in-memory exporter and reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from support import Telemetry

from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor


@pytest.fixture
def otel() -> Telemetry:
    return Telemetry()


@pytest.fixture
def instrument(otel: Telemetry) -> Iterator[Callable[..., Telemetry]]:
    """Call to instrument with the in-memory SDK (and options); uninstrumented afterwards."""
    instrumentor = ExecStatusInstrumentor()

    def _instrument(**options: Any) -> Telemetry:
        instrumentor.instrument(
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **options
        )
        return otel

    yield _instrument
    instrumentor.uninstrument()
