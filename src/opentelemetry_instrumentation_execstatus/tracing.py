"""What adapters need to know of the OpenTelemetry context, without importing OpenTelemetry.

Adapters translate framework events and never touch the OpenTelemetry API themselves (one
direction: adapters -> core -> API). A framework that traces itself, or that runs work in
another context than the caller's, still needs a few answers about the current context; they
are here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context as _context
from opentelemetry import propagate as _propagate
from opentelemetry import trace as _trace
from opentelemetry.context import Context

from opentelemetry_instrumentation_execstatus import reserved_spans

__all__ = [
    "Context",
    "attach",
    "current_context",
    "current_span_records",
    "detach",
    "extract",
    "inject",
    "is_instrumented_by",
    "is_no_op_tracer",
    "opening_reserved",
    "reserved_parent",
]


def current_context() -> Context:
    """The OpenTelemetry context current now: taken at a call's entry, it is the caller's."""
    return _context.get_current()


def current_span_records() -> bool:
    """Whether the span current now records (a framework's own span, sampled in)."""
    return _trace.get_current_span().is_recording()


def is_no_op_tracer(tracer: Any) -> bool:
    """Whether ``tracer`` is the API's no-op tracer (a framework tracing to nowhere)."""
    return isinstance(tracer, _trace.NoOpTracer)


def inject(carrier: MutableMapping[str, Any], context: Context | None = None) -> None:
    """Write ``context`` (None: the current one) into ``carrier`` (a message's headers) with
    the configured propagator (``OTEL_PROPAGATORS``; W3C trace context and baggage by
    default), for work another process takes over."""
    _propagate.inject(carrier, context=context)


def extract(carrier: Mapping[str, Any]) -> Context:
    """The context that ``inject`` wrote into ``carrier``: with no trace in it, the empty
    context (a root), never the context current where the work is picked up."""
    return _propagate.extract(carrier, context=Context())


def attach(context: Context) -> object:
    """Make ``context`` current (work the framework runs between two of its hooks, such as a
    task's body between its start and end signals); returns what ``detach`` takes."""
    return _context.attach(context)


def detach(token: object) -> None:
    """Restore the context current before ``attach`` returned ``token``."""
    _context.detach(token)


def is_instrumented_by(module_name: str, instrumentor: str) -> bool:
    """Whether another OpenTelemetry instrumentation, the ``BaseInstrumentor`` subclass
    ``instrumentor`` of ``module_name``, is on now (it makes the spans of the same work). Read
    without importing it: an instrumentation not imported is not on."""
    module = sys.modules.get(module_name)
    instance = getattr(getattr(module, instrumentor, None), "_instance", None)
    return bool(getattr(instance, "is_instrumented_by_opentelemetry", False))


def reserved_parent(reserved: Any) -> Context | None:
    """The context under which work is a child of the span ``Adapter.reserve_span`` reserved
    as ``reserved`` (to ``inject`` into its messages); None if ``reserved`` is not one."""
    span_context = reserved_spans.parse(reserved)
    return None if span_context is None else reserved_spans.as_parent(span_context)


def opening_reserved(parent_context: Context, reserved: Any) -> Context:
    """``parent_context``, so that the execution whose first status is reported under it
    opens the span reserved as ``reserved`` (its ids, chosen where it started); unchanged if
    ``reserved`` is not a reservation. Only for an execution that has a span (not an item
    without one, whose children would inherit the mark)."""
    span_context = reserved_spans.parse(reserved)
    if span_context is None:
        return parent_context
    return reserved_spans.opening(parent_context, span_context)
