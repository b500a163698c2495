"""The equal floor: the OpenTelemetry SDK calls an instrumented case made, made again by hand.

A benchmark records one unit of work of its instrumented case through ``RecordingProviders``
(a tracer and a meter provider that pass every call on to a real SDK and note it), then times
``replay(...)`` of that record next to it: the same spans (names, kinds, parents, start
attributes), span events, attributes, statuses and ends, the same histogram records (with the
span context, for exemplars) and counter changes, with the same attribute mappings prebuilt,
on the same SDK. What the instrumented case adds beyond that is the instrumentation's own
bookkeeping. Since the record is taken from what the instrumented case really emitted, the
comparison cannot drift from the code: ``counts()`` of the replay, recorded the same way, must
equal the instrumented case's, and every benchmark checks that they do.

Timestamps are left to the SDK on replay (it reads the clock itself when given none: the same
work). ``span.is_recording()`` is not an SDK call a hand-written instrumentation needs, and is
neither noted nor replayed. Observable instruments are created once and read at collection,
not per unit: they are created on replay too, never called.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext

# What a unit's SDK calls are counted by: the smoke tests compare these between the
# instrumented case and its floor.
SPAN = "span"
EVENT = "span event"
ATTRIBUTE = "span attribute"
STATUS = "span status"
END = "span end"
RECORD = "histogram record"
ADD = "counter add"
KINDS = (SPAN, EVENT, ATTRIBUTE, STATUS, END, RECORD, ADD)
_SYNCHRONOUS = ("create_histogram", "create_counter", "create_up_down_counter")


@dataclass(frozen=True)
class Call:
    """One SDK call: ``kind``, the span it is on (its index in the record, None for a metric
    call outside any recorded span), and what it was given."""

    kind: str
    span: int | None
    arguments: tuple[Any, ...]


@dataclass
class CallLog:
    """The SDK calls made while recording, in order; spans numbered as they start."""

    calls: list[Call] = field(default_factory=list)
    spans: int = 0
    recording: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, span: int | None, *arguments: Any) -> None:
        if self.recording:
            self.calls.append(Call(kind, span, arguments))

    def new_span(self) -> int | None:
        """The index of a span starting now, while recording (None otherwise)."""
        if not self.recording:
            return None
        with self.lock:
            self.spans += 1
            return self.spans - 1

    def shape(self) -> list[tuple[Any, ...]]:
        """The calls with what identifies them (kind, span, name or key, attribute keys), not
        their values: two units of the same work have the same shape."""
        return [(call.kind, call.span, *_identifying_arguments(call)) for call in self.calls]

    def counts(self) -> dict[str, int]:
        """SDK calls by kind (every kind listed, 0 included)."""
        found = Counter(call.kind for call in self.calls)
        for call in self.calls:
            if call.kind == SPAN:
                found[ATTRIBUTE] += len(call.arguments[2] or {})
            elif call.kind == ATTRIBUTE and call.arguments[0] is None:  # set_attributes
                found[ATTRIBUTE] += len(call.arguments[1]) - 1
        return {kind: found.get(kind, 0) for kind in KINDS}


def _identifying_arguments(call: Call) -> tuple[Any, ...]:
    """A call's first arguments as ``shape`` keeps them; a ``set_attribute`` call by its key
    alone (a value such as a task's own id differs from one unit to the next)."""
    arguments = call.arguments[:3]
    if call.kind == ATTRIBUTE and arguments and arguments[0] is not None:
        arguments = arguments[:1]
    return tuple(_identifying(argument) for argument in arguments)


def _identifying(argument: Any) -> Any:
    if isinstance(argument, dict):
        return tuple(sorted(argument))
    if isinstance(argument, (str, type(None), bool, trace.SpanKind)):
        return argument
    return type(argument).__name__


class RecordingSpan(Span):
    """A real SDK span, its calls noted under its index in the record."""

    def __init__(self, real: Span, index: int | None, log: CallLog) -> None:
        self._real = real
        self._index = index
        self._log = log

    def get_span_context(self) -> SpanContext:
        return self._real.get_span_context()

    def is_recording(self) -> bool:
        return self._real.is_recording()

    def set_attribute(self, key: str, value: Any) -> None:
        self._log.note(ATTRIBUTE, self._index, key, value)
        self._real.set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._log.note(ATTRIBUTE, self._index, None, dict(attributes))
        self._real.set_attributes(attributes)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self._log.note(EVENT, self._index, name, None if attributes is None else dict(attributes))
        self._real.add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:  # pragma: no cover
        raise NotImplementedError("links are not part of what the benchmarks replay")

    def update_name(self, name: str) -> None:  # pragma: no cover - the package never renames
        raise NotImplementedError("renames are not part of what the benchmarks replay")

    def set_status(self, status: Any, description: str | None = None) -> None:
        self._log.note(STATUS, self._index, status, description)
        self._real.set_status(status, description)

    def record_exception(self, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the package writes its own exception events")

    def end(self, end_time: int | None = None) -> None:
        self._log.note(END, self._index)
        self._real.end(end_time)


class RecordingTracer(trace.Tracer):
    def __init__(self, real: trace.Tracer, log: CallLog) -> None:
        self._real = real
        self._log = log

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        if links:  # pragma: no cover - the package makes no links yet
            raise NotImplementedError("links are not part of what the benchmarks replay")
        index = self._log.new_span()
        parent = trace.get_current_span(context)
        parent_index = parent._index if isinstance(parent, RecordingSpan) else None
        self._log.note(
            SPAN, index, name, kind, None if attributes is None else dict(attributes), parent_index
        )
        real = self._real.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        return RecordingSpan(real, index, self._log)

    @contextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        """``start_span`` and ``use_span``, as the SDK's own is made (a framework's tracer,
        a peer, opens its spans so)."""
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class _RecordingInstrument:
    """A synchronous instrument whose ``record`` / ``add`` calls are noted."""

    def __init__(self, real: Any, name: str, kind: str, log: CallLog) -> None:
        self._real = real
        self._name = name
        self._kind = kind
        self._log = log

    def record(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        self._note(amount, attributes, context)
        self._real.record(amount, attributes, context)

    def add(self, amount: float, attributes: Any = None, context: Context | None = None) -> None:
        self._note(amount, attributes, context)
        self._real.add(amount, attributes, context)

    def _note(self, amount: float, attributes: Any, context: Context | None) -> None:
        span = trace.get_current_span(context)
        index = span._index if isinstance(span, RecordingSpan) else None
        self._log.note(
            self._kind, index, self._name, amount, None if attributes is None else dict(attributes)
        )


class RecordingMeter:
    """A meter whose instruments note their calls; every instrument's creation is kept, so
    a replay creates the same ones."""

    def __init__(self, real: Any, log: CallLog, created: list[tuple[str, str, dict]]) -> None:
        self._real = real
        self._log = log
        self._created = created

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if not method.startswith("create_"):
            raise AttributeError(method)
        create = getattr(self._real, method)

        def created(name: str, *args: Any, **kwargs: Any) -> Any:
            self._created.append((method, name, kwargs))
            real = create(name, *args, **kwargs)
            if method == "create_histogram":
                return _RecordingInstrument(real, name, RECORD, self._log)
            if method in _SYNCHRONOUS:
                return _RecordingInstrument(real, name, ADD, self._log)
            return real  # observable: read at collection, not per unit

        return created


class RecordingProviders:
    """A tracer provider and a meter provider for ``instrument()`` that pass everything on to
    ``tracer_provider`` and ``meter_provider`` and, inside ``recording()``, note the calls."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        self.log = CallLog()
        self.instruments: list[tuple[str, str, dict]] = []
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.tracer_provider = _Provider(
            lambda *a, **k: RecordingTracer(tracer_provider.get_tracer(*a, **k), self.log)
        )
        self.meter_provider = _Provider(
            lambda *a, **k: RecordingMeter(
                meter_provider.get_meter(*a, **k), self.log, self.instruments
            ),
            method="get_meter",
        )

    @property
    def providers(self) -> dict[str, Any]:
        """Keyword arguments for ``instrument()``."""
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    @contextmanager
    def recording(self) -> Iterator[CallLog]:
        """Note the SDK calls made inside the block, in a fresh log."""
        self.log.calls, self.log.spans = [], 0
        self.log.recording = True
        try:
            yield self.log
        finally:
            self.log.recording = False


class _Provider:
    """A provider made of its one factory method (``get_tracer`` or ``get_meter``)."""

    def __init__(self, factory: Callable[..., Any], method: str = "get_tracer") -> None:
        setattr(self, method, factory)


def replay(
    log: CallLog,
    instruments: Sequence[tuple[str, str, dict]],
    tracer_provider: Any,
    meter_provider: Any,
) -> Callable[[], None]:
    """A function that makes the calls of ``log`` again, by hand, on the given SDK: each call
    prepared once (its name, kind and attribute mapping prebuilt), as a hand-written
    instrumentation holds its attributes ready. A span's context is made once, at its start,
    for its children and its histogram records' exemplars (what the tracker does too).

    The record must hold whole spans: a call on a span started before it (a run begun in an
    earlier unit) cannot be replayed, and is refused."""
    for call in log.calls:
        if call.span is None and call.kind in (EVENT, ATTRIBUTE, STATUS, END):
            raise ValueError(f"{call.kind} on a span started before the record: record whole units")
    tracer = tracer_provider.get_tracer("execstatus-equal-floor")
    meter = meter_provider.get_meter("execstatus-equal-floor")
    made = {
        name: getattr(meter, method)(name, **kwargs)
        for method, name, kwargs in instruments
        if method in _SYNCHRONOUS
    }
    spans: list[Any] = [None] * max(1, log.spans)
    contexts: list[Context | None] = [None] * max(1, log.spans)
    steps = [_PREPARE[call.kind](call, tracer, made, spans, contexts) for call in log.calls]

    def run() -> None:
        for step in steps:
            step()

    return run


# How each kind of call is prepared: (call, tracer, instruments by name, the replay's spans by
# index, their contexts) -> the call, ready to make. Spans are looked up when the call is made:
# each replay starts its own.
Prepared = Callable[[], None]


def _start_span(
    call: Call, tracer: Any, _instruments: Any, spans: list, contexts: list
) -> Prepared:
    index = call.span
    name, kind, attributes, parent = call.arguments
    start, in_context = tracer.start_span, trace.set_span_in_context

    def start_span() -> None:
        span = start(name, None if parent is None else contexts[parent], kind, attributes)
        spans[index] = span
        contexts[index] = in_context(span)

    return start_span


def _add_event(
    call: Call, _tracer: Any, _instruments: Any, spans: list, _contexts: list
) -> Prepared:
    index, (name, attributes) = call.span, call.arguments
    return lambda: spans[index].add_event(name, attributes)


def _set_attribute(
    call: Call, _tracer: Any, _instruments: Any, spans: list, _contexts: list
) -> Prepared:
    index, (key, value) = call.span, call.arguments
    if key is None:
        return lambda: spans[index].set_attributes(value)
    return lambda: spans[index].set_attribute(key, value)


def _set_status(
    call: Call, _tracer: Any, _instruments: Any, spans: list, _contexts: list
) -> Prepared:
    index, (status, description) = call.span, call.arguments
    return lambda: spans[index].set_status(status, description)


def _end(call: Call, _tracer: Any, _instruments: Any, spans: list, _contexts: list) -> Prepared:
    index = call.span
    return lambda: spans[index].end()  # noqa: PLW0108 - the span is the replay's, found late


def _measure(call: Call, _tracer: Any, instruments: Any, _spans: list, contexts: list) -> Prepared:
    index, (name, amount, attributes) = call.span, call.arguments
    instrument = instruments[name]
    measure = instrument.record if call.kind == RECORD else instrument.add
    if index is None:
        return lambda: measure(amount, attributes)
    return lambda: measure(amount, attributes, contexts[index])


_PREPARE: dict[str, Callable[..., Prepared]] = {
    SPAN: _start_span,
    EVENT: _add_event,
    ATTRIBUTE: _set_attribute,
    STATUS: _set_status,
    END: _end,
    RECORD: _measure,
    ADD: _measure,
}


def per_unit(counts: Mapping[str, int], units: int) -> dict[str, float]:
    """Counts of one record, per unit of work."""
    return {kind: round(count / units, 2) for kind, count in counts.items()}
