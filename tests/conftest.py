"""Shared fixtures: the real OpenTelemetry SDK with in-memory exporter and reader, and the real
OTLP backends for the end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from otlp_backends import BACKENDS_SCRIPT, Backends
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


@pytest.fixture(scope="session")
def otlp_backends() -> Iterator[Backends]:
    """The real OTLP backends of ``scripts/backends``: used if already up (``scripts/test``
    starts them once for every tox environment), else started here and stopped afterwards."""
    backends, ready = Backends.status()
    if ready:
        yield backends
        return
    command = [sys.executable, str(BACKENDS_SCRIPT)]
    completed = subprocess.run([*command, "up"], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, f"scripts/backends up failed:\n{completed.stderr}"
    try:
        yield Backends.status()[0]
    finally:
        subprocess.run([*command, "down"], capture_output=True, check=False)
