"""The SDK's exporters, seen from a process that ends or forks without their knowing.

**Flush.** The SDK exports spans and metrics from background threads and at interpreter
shutdown. A pool child recycled by its parent, or a forked work horse, exits with
``os._exit``: no shutdown, and whatever its batch processor and metric reader still hold is
lost. An adapter whose framework is about to end such a process asks the core to flush first;
the flush waits a bounded time, whatever the SDK waits for.

**Fork.** The OTLP/HTTP exporters keep their connection to the endpoint open between exports
(in a ``requests`` session). A child forked after its parent exported inherits that connection:
both processes then write their requests on one socket, which interleaves them, and the
endpoint drops what it cannot read (opentelemetry-python#4994). In a forked child, each
exporter's session gets new, empty connection pools, so the child's next export opens a
connection of its own. The inherited pools are dropped, not closed: closing takes their locks,
which a thread of the parent may have held at the fork (an export under way), and the child
would wait for them forever; their sockets (the child's copies: the parent's stay open) close
when they are collected. Likewise each periodic metric reader gets a new export lock: the SDK
restarts the reader's thread in the child but keeps the lock, which that thread may have held
in the parent at the fork, and the child's metrics would then never be exported.

The providers are the ones the instrumentation was given, else the global ones at the time
(set by ``opentelemetry-instrument`` before or after ``instrument()``). Reaching the exporters
of a provider takes attributes the SDK does not make public; each step is guarded, and an SDK
that keeps them elsewhere only leaves its connections as they were.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry import metrics, trace

from opentelemetry_instrumentation_execstatus.forked_metrics import forget_parent_measurements
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child, new_lock_like
from opentelemetry_instrumentation_execstatus.safety import report_internal_error

FLUSH_TIMEOUT_MILLIS = 5_000
"""How long one flush may wait for each provider's exporters: a process that is exiting
should not hang on an endpoint that does not answer."""


class Exporters:
    """The exporters behind the tracer and meter providers the instrumentation records to."""

    __slots__ = ("__weakref__", "_meter_provider", "_meter_scope", "_tracer_provider")

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        meter_scope: str,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._meter_scope = meter_scope  # whose instruments' measurements a child forgets
        after_fork_in_child(self._after_fork)

    def flush(self, timeout_millis: int = FLUSH_TIMEOUT_MILLIS) -> None:
        """Export what each provider holds, spans first, waiting at most ``timeout_millis``
        for both: the flush runs on a thread of its own and is abandoned after that, since a
        provider's own deadline does not cover the locks it waits for, and a process that is
        exiting must exit. A provider without ``force_flush`` (the API's no-op) has nothing to
        export. Never raises."""
        flushing = threading.Thread(
            target=self._flush_each,
            args=(timeout_millis,),
            name="execstatus-flush",
            daemon=True,
        )
        try:
            flushing.start()
            flushing.join(timeout_millis / 1000)
        except Exception:
            report_internal_error("flushing the telemetry")

    def _flush_each(self, timeout_millis: int) -> None:
        for provider in self._providers():
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is None:
                continue
            try:
                force_flush(timeout_millis=timeout_millis)
            except Exception:
                report_internal_error("flushing the telemetry")

    def _providers(self) -> tuple[Any, Any]:
        return (
            self._tracer_provider or trace.get_tracer_provider(),
            self._meter_provider or metrics.get_meter_provider(),
        )

    def _after_fork(self) -> None:
        """In a forked child: the instrumentation's instruments forget the parent's
        measurements (``forked_metrics``), each periodic metric reader gets an export lock of
        its own, and each exporter's session connection pools of its own."""
        tracer_provider, meter_provider = self._providers()
        forget_parent_measurements(meter_provider, self._meter_scope)
        readers = _metric_readers(meter_provider)
        for reader in readers:
            try:
                _fresh_export_lock(reader)
            except Exception:
                report_internal_error("re-creating a metric reader's lock after fork")
        session_type = getattr(sys.modules.get("requests"), "Session", None)
        if session_type is None:  # no requests, no OTLP/HTTP exporter
            return
        exporters = [
            *_span_exporters(tracer_provider),
            *(getattr(reader, "_exporter", None) for reader in readers),
        ]
        for exporter in exporters:
            for session in _sessions_of(exporter, session_type):
                try:
                    _fresh_pools(session)
                except Exception:
                    report_internal_error("closing an exporter's inherited connections")


def _span_exporters(provider: Any) -> Iterator[Any]:
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ())
    for processor in processors if isinstance(processors, tuple) else ():
        yield getattr(processor, "span_exporter", None)  # Simple and Batch span processors


def _metric_readers(provider: Any) -> list[Any]:
    """A meter provider's readers: on the provider (SDK 1.45), else on its configuration."""
    readers = getattr(provider, "_metric_readers", None)
    if readers is None:
        readers = getattr(getattr(provider, "_sdk_config", None), "metric_readers", ())
    return list(readers) if isinstance(readers, (list, tuple)) else []


def _fresh_export_lock(reader: Any) -> None:
    """A new ``_export_lock`` for a periodic exporting reader. The SDK re-creates the reader's
    thread in a forked child but not this lock: one its thread held in the parent at the fork
    (an export under way) stays held in the child, whose exports then wait forever."""
    new_lock = new_lock_like(getattr(reader, "_export_lock", None))
    if new_lock is not None:
        reader._export_lock = new_lock


_EXPORTER_MODULES = "opentelemetry.exporter"
_SEARCH_DEPTH = 3  # exporter -> its HTTP client -> its transport -> the session


def _sessions_of(exporter: Any, session_type: type) -> Iterator[Any]:
    """The ``requests`` sessions an exporter holds, found among its attributes and those of
    the exporter package's objects it holds (where the session sits moved between SDK
    releases: on the exporter, then on its client's transport)."""
    seen: set[int] = set()
    frontier = [exporter]
    for _ in range(_SEARCH_DEPTH + 1):
        found = []
        for held in frontier:
            if id(held) in seen:
                continue
            seen.add(id(held))
            if isinstance(held, session_type):
                yield held
                continue
            attributes = getattr(held, "__dict__", None)
            for value in attributes.values() if isinstance(attributes, dict) else ():
                if isinstance(value, session_type) or type(value).__module__.startswith(
                    _EXPORTER_MODULES
                ):
                    found.append(value)
        frontier = found


def _fresh_pools(session: Any) -> None:
    """New connection pools for each of a ``requests`` session's adapters, made as the adapter
    made its first (its pool sizes and blocking), taking no lock of the old ones."""
    for adapter in list(session.adapters.values()):
        init_poolmanager = getattr(adapter, "init_poolmanager", None)
        if init_poolmanager is None:
            continue
        init_poolmanager(adapter._pool_connections, adapter._pool_maxsize, adapter._pool_block)
        adapter.proxy_manager = {}
