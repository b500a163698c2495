"""What adapters need to know of the OpenTelemetry context, without importing OpenTelemetry.

Adapters translate framework events and never touch the OpenTelemetry API themselves (one
direction: adapters -> core -> API). A framework that traces itself, or that runs work in
another context than the caller's, still needs a few answers about the current context; they
are here.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as _context
from opentelemetry import trace as _trace
from opentelemetry.context import Context

__all__ = ["Context", "current_context", "current_span_records", "is_no_op_tracer"]


def current_context() -> Context:
    """The OpenTelemetry context current now: taken at a call's entry, it is the caller's."""
    return _context.get_current()


def current_span_records() -> bool:
    """Whether the span current now records (a framework's own span, sampled in)."""
    return _trace.get_current_span().is_recording()


def is_no_op_tracer(tracer: Any) -> bool:
    """Whether ``tracer`` is the API's no-op tracer (a framework tracing to nowhere)."""
    return isinstance(tracer, _trace.NoOpTracer)
