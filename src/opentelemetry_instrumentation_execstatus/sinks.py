"""Whether anything records what the tracker emits: the disabled path's early exit.

With no SDK configured, or the SDK disabled (``OTEL_SDK_DISABLED``, a no-op provider), every
span and measurement is dropped, yet following executions and building the calls costs about
ten times a wrapt pass-through per step. ``Sinks.off()`` answers "does any of it record?" in a
few attribute reads, so the tracker can return at once.

A tracer or instrument taken from the API before any provider was set is a proxy that starts
delegating once one is (``opentelemetry-instrument`` sets them first, an application calling
``instrument()`` itself may set them later). While the global provider is unset the answer is
"off for now", asked again on the next call; once it is set, the answer is settled for good:
the API's global providers can be set only once.

``Sinks.off_here()`` adds the other reason nothing records: ``suppress_instrumentation()`` around
the call, asked on every call as it depends on the caller's context.
"""

from __future__ import annotations

from opentelemetry import context, metrics, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import Histogram, NoOpHistogram, NoOpMeter
from opentelemetry.trace import NoOpTracer, ProxyTracer, Tracer

try:  # the API's own record of its global providers; without it, "set" is assumed
    from opentelemetry.metrics import _internal as _metrics_api
    from opentelemetry.metrics._internal.instrument import _ProxyInstrument
except ImportError:  # pragma: no cover - a future API without these names
    _metrics_api = None
    _ProxyInstrument = ()

try:  # the context keys ``is_instrumentation_enabled()`` reads, read here in one lookup
    from opentelemetry.instrumentation.utils import (
        _SUPPRESS_INSTRUMENTATION_KEY as _SUPPRESS_KEY,
    )
    from opentelemetry.instrumentation.utils import (
        _SUPPRESS_INSTRUMENTATION_KEY_PLAIN as _SUPPRESS_KEY_PLAIN,
    )

    _KEYS_KNOWN = True
except ImportError:  # pragma: no cover - a future API without these names: ask it
    _SUPPRESS_KEY = _SUPPRESS_KEY_PLAIN = ""
    _KEYS_KNOWN = False

_OFF, _ON, _PENDING = "off", "on", "pending"


def _no_global_provider() -> bool:
    """Neither a global tracer provider nor a global meter provider has been set yet."""
    return (
        getattr(trace, "_TRACER_PROVIDER", True) is None
        and _metrics_api is not None
        and _metrics_api._METER_PROVIDER is None
    )


class Closed:
    """The sinks of an uninstrumented tracker or recorder: nothing records any more."""

    __slots__ = ()

    def off(self) -> bool:
        return True

    def off_here(self) -> bool:
        return True


CLOSED = Closed()


class Sinks:
    """The tracer and a representative instrument of one ``instrument()`` call."""

    __slots__ = ("_histogram", "_name", "_off", "_proxies", "_tracer")

    def __init__(self, tracer: Tracer, histogram: Histogram, name: str) -> None:
        self._tracer = tracer
        self._histogram = histogram
        self._name = name  # the instrumentation scope, to ask a late provider for its tracer
        self._off: bool | None = None  # None until both signals are settled
        self._proxies = isinstance(tracer, ProxyTracer) and isinstance(histogram, _ProxyInstrument)

    def off(self) -> bool:
        """True when neither spans nor metrics would record anything."""
        off = self._off
        if off is not None:
            return off
        if self._proxies and _no_global_provider():  # the no-SDK case, on every call
            return True
        return self._settle()

    def off_here(self) -> bool:
        """True when nothing would record a call made here and now: ``off()``, or
        instrumentation suppressed in the caller's context (``suppress_instrumentation()``).
        Asked on every status change: ``not is_instrumentation_enabled()``, from one lookup of
        the current context instead of its two."""
        off = self._off
        if off is None:
            off = self.off()
        if off:
            return True
        if not _KEYS_KNOWN:  # pragma: no cover
            return not is_instrumentation_enabled()
        current = context.get_current()
        return bool(current.get(_SUPPRESS_KEY) or current.get(_SUPPRESS_KEY_PLAIN))

    def _settle(self) -> bool:
        tracing, measuring = self._tracing(), self._measuring()
        if _ON in (tracing, measuring):
            self._off = False
        elif tracing == _OFF and measuring == _OFF:
            self._off = True
        return self._off is not False

    def _tracing(self) -> str:
        tracer = self._tracer
        if isinstance(tracer, NoOpTracer):
            return _OFF
        if not isinstance(tracer, ProxyTracer):
            return _ON
        if getattr(trace, "_TRACER_PROVIDER", True) is None:
            return _PENDING
        resolved = trace.get_tracer_provider().get_tracer(self._name)
        return _OFF if isinstance(resolved, NoOpTracer) else _ON

    def _measuring(self) -> str:
        histogram = self._histogram
        if isinstance(histogram, NoOpHistogram):
            return _OFF
        if not isinstance(histogram, _ProxyInstrument):
            return _ON
        if _metrics_api is not None and _metrics_api._METER_PROVIDER is None:
            return _PENDING
        resolved = metrics.get_meter_provider().get_meter(self._name)
        return _OFF if isinstance(resolved, NoOpMeter) else _ON
