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
"""

from __future__ import annotations

from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram, NoOpHistogram, NoOpMeter
from opentelemetry.trace import NoOpTracer, ProxyTracer, Tracer

try:  # the API's own record of its global providers; without it, "set" is assumed
    from opentelemetry.metrics import _internal as _metrics_api
    from opentelemetry.metrics._internal.instrument import _ProxyInstrument
except ImportError:  # pragma: no cover - a future API without these names
    _metrics_api = None
    _ProxyInstrument = ()

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
