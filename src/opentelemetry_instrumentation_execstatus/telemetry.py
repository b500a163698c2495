"""The live telemetry of the instrumentation: tracker, worker recorder and options.

One instance exists between ``instrument()`` and ``uninstrument()``; adapters receive it, and
the public API finds it here.
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry import metrics, trace

from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.exporters import Exporters
from opentelemetry_instrumentation_execstatus.instruments import Instruments
from opentelemetry_instrumentation_execstatus.sinks import Sinks
from opentelemetry_instrumentation_execstatus.tracker import StatusTracker
from opentelemetry_instrumentation_execstatus.version import __version__
from opentelemetry_instrumentation_execstatus.workers import WorkerRecorder

INSTRUMENTATION_NAME = "opentelemetry_instrumentation_execstatus"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"


class Telemetry(NamedTuple):
    """The core of one instrumentation: its options, tracker, worker recorder and its
    providers' exporters (flushed on request, reconnected in a forked child, where its
    instruments forget the parent's measurements). A named tuple, not a dataclass: it is
    defined at every instrumented process's start, and a frozen dataclass takes several times
    as long to define."""

    config: ExecStatusConfig
    tracker: StatusTracker
    workers: WorkerRecorder
    exporters: Exporters

    @classmethod
    def create(
        cls,
        config: ExecStatusConfig,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> Telemetry:
        tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter(
            INSTRUMENTATION_NAME, __version__, meter_provider, schema_url=SCHEMA_URL
        )
        instruments = Instruments(meter)
        sinks = Sinks(tracer, instruments.status_transition_duration, INSTRUMENTATION_NAME)
        return cls(
            config=config,
            tracker=StatusTracker(tracer, instruments, config, sinks),
            workers=WorkerRecorder(instruments, sinks, max_workers=config.max_in_flight),
            exporters=Exporters(tracer_provider, meter_provider, INSTRUMENTATION_NAME),
        )

    def close(self) -> None:
        """End what is in flight (as ``cancelled``) and record nothing more."""
        self.tracker.close()
        self.workers.close()


_current: Telemetry | None = None


def current() -> Telemetry | None:
    """The active telemetry, or None when the instrumentation is not on."""
    return _current


def activate(telemetry: Telemetry | None) -> None:
    global _current
    _current = telemetry
