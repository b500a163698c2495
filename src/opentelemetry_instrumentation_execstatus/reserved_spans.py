"""Spans whose ids are chosen before they start, for work that ends in another process.

A Celery canvas (a chain, a chord) starts in the process that applies it and ends in
whichever worker process runs its last task, and the SDK ends a span only in the process that
started it. So the run's span is reserved where the run starts: its ids are chosen there and
travel with the messages, the tasks' spans are its children wherever they run, and the
process that sees the run end writes the span then, from its start time, under those ids.

The ids come from the tracer's own id generator (an SDK tracer's public ``id_generator``),
and the sampling decision from its sampler, asked at the reservation as the SDK asks it at a
span's start and carried in the trace flags: the tasks are kept or dropped with their run.
To write a reserved span, the tracer's id generator is wrapped, once, in one that hands the
reserved ids to the thread writing that span and the generator's own ids to every other span.
A tracer that has neither (not the SDK's) gets random sampled ids and writes its own: the
tasks then hang off a parent the backend never receives, and nothing else changes.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, create_key, set_value
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from opentelemetry_instrumentation_execstatus.safety import report_internal_error

_VERSION = "00"
_OPENING = create_key("execstatus-opening-reserved-span")
"""Context key: the span opened under this context is the reserved one it holds."""


def reserve(tracer: Any, parent: Context, name: str) -> str:
    """Reserve a span named ``name`` under ``parent``; returns its ids as text (a W3C
    ``traceparent`` value), for a message to carry."""
    parent_span = trace.get_current_span(parent).get_span_context()
    generator = getattr(_sdk_tracer(tracer), "id_generator", None)
    trace_id = (
        parent_span.trace_id
        if parent_span.is_valid
        else _generated(generator, "generate_trace_id", 128)
    )
    span_id = _generated(generator, "generate_span_id", 64)
    sampled = _is_sampled(tracer, parent, parent_span, trace_id, name)
    flags = TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT
    return f"{_VERSION}-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def parse(text: Any) -> SpanContext | None:
    """The span context ``reserve`` wrote as ``text``; None for anything else."""
    if not isinstance(text, str):
        return None
    parts = text.split("-")
    if len(parts) != 4 or parts[0] != _VERSION:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    span_context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return span_context if span_context.is_valid else None


def as_parent(span_context: SpanContext) -> Context:
    """A context whose current span is the reserved one: what work under it is a child of."""
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def opening(parent: Context, span_context: SpanContext) -> Context:
    """``parent``, marked so that the span the span writer opens under it is the reserved
    one: its ids, not new ones."""
    return set_value(_OPENING, span_context, parent)


def reserved_in(context: Context | None) -> SpanContext | None:
    """The reserved span ``opening`` marked ``context`` with, if any."""
    if context is None:
        return None
    value = context.get(_OPENING)
    return value if isinstance(value, SpanContext) else None


def unmarked(context: Context) -> Context:
    """``context`` without ``opening``'s mark: the context a reserved span's children open
    under must not reuse its ids."""
    return set_value(_OPENING, None, context)


@contextmanager
def writing(tracer: Any, span_context: SpanContext) -> Iterator[None]:
    """While the block runs, the span this thread starts with ``tracer`` gets the ids of
    ``span_context``. Without an SDK tracer, the block runs unchanged."""
    ids = _reserving_ids(_sdk_tracer(tracer))
    if ids is None:
        yield
        return
    ids.hand_out(span_context)
    try:
        yield
    finally:
        ids.hand_out(None)


class _ReservingIds:
    """An id generator that hands a reserved span's ids to the thread writing it, and the
    wrapped generator's to everyone else."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped
        self._reserved = threading.local()

    def hand_out(self, span_context: SpanContext | None) -> None:
        self._reserved.span_context = span_context

    def _current(self) -> SpanContext | None:
        return getattr(self._reserved, "span_context", None)

    def generate_span_id(self) -> int:
        reserved = self._current()
        return self._wrapped.generate_span_id() if reserved is None else reserved.span_id

    def generate_trace_id(self) -> int:
        reserved = self._current()
        return self._wrapped.generate_trace_id() if reserved is None else reserved.trace_id

    def is_trace_id_random(self) -> bool:
        is_random = getattr(self._wrapped, "is_trace_id_random", None)
        return bool(is_random()) if callable(is_random) else False

    def __getattr__(self, name: str) -> Any:  # whatever else the wrapped generator offers
        return getattr(self._wrapped, name)


_wrapping = threading.Lock()


def _reserving_ids(tracer: Any) -> _ReservingIds | None:
    """The tracer's id generator, wrapped once; None for a tracer without one."""
    generator = getattr(tracer, "id_generator", None)
    if generator is None or isinstance(generator, _ReservingIds):
        return generator
    with _wrapping:
        generator = tracer.id_generator
        if not isinstance(generator, _ReservingIds):
            generator = tracer.id_generator = _ReservingIds(generator)
    return generator


def _sdk_tracer(tracer: Any) -> Any:
    """The tracer that makes the spans: a proxy tracer's real one, once there is one."""
    if hasattr(tracer, "id_generator"):
        return tracer
    resolved = getattr(tracer, "_tracer", None)  # a proxy's, resolved now if it can be
    return resolved if hasattr(resolved, "id_generator") else None


def _generated(generator: Any, method: str, bits: int) -> int:
    generate = getattr(generator, method, None)
    if generate is not None:
        try:
            value = generate()
            if isinstance(value, int) and value > 0:
                return value
        except Exception:
            report_internal_error("reserving a span's ids")
    return random.getrandbits(bits) or 1


def _is_sampled(
    tracer: Any, parent: Context, parent_span: SpanContext, trace_id: int, name: str
) -> bool:
    """The tracer's sampler's decision for a span ``name`` under ``parent``; without one,
    the parent's, and a root is sampled (the SDK's default sampler)."""
    sampler = getattr(_sdk_tracer(tracer), "sampler", None)
    if sampler is not None:
        try:
            return sampler.should_sample(parent, trace_id, name).decision.is_sampled()
        except Exception:
            report_internal_error("sampling a reserved span")
    return parent_span.trace_flags.sampled if parent_span.is_valid else True
