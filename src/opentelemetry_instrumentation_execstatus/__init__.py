"""OpenTelemetry instrumentation for pipeline and workflow orchestrators.

Usage::

    from opentelemetry_instrumentation_execstatus import ExecStatusInstrumentor

    ExecStatusInstrumentor().instrument()  # global providers, or pass tracer_/meter_provider

or, with no code at all, ``opentelemetry-instrument python my_pipeline.py``.

Each orchestrator adapter is loaded when its framework is imported, and patches it then if the
framework's installed version is one it supports: ``instrument()`` itself imports no orchestrator
and no adapter, and costs the same however many adapters there are. Orchestrators we don't patch
report through the public API in ``opentelemetry_instrumentation_execstatus.api``.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Collection
from functools import partial
from types import ModuleType
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters import Listed, selected_by_top_module
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.package import _instruments
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, LoadOnImport, Patcher
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry
from opentelemetry_instrumentation_execstatus.version import __version__

ENTRY_POINT_NAME = "execstatus"


class ExecStatusInstrumentor(BaseInstrumentor):
    """Instruments every installed orchestrator that has an adapter.

    ``instrument(tracer_provider=None, meter_provider=None, **options)``: the providers default
    to the global ones; ``options`` are those of ``ExecStatusConfig`` (also readable from
    ``OTEL_PYTHON_EXECSTATUS_*`` environment variables).
    """

    _patcher: Patcher | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        if _disabled_by_environment():
            return
        config = ExecStatusConfig.load(kwargs)
        try:
            live = Telemetry.create(
                config, kwargs.get("tracer_provider"), kwargs.get("meter_provider")
            )
        except Exception:
            # A provider that cannot hand out a tracer or an instrument: instrument nothing
            # rather than raise into the application (or stop opentelemetry-instrument from
            # loading the instrumentors after this one).
            report_internal_error("ExecStatusInstrumentor.instrument")
            return
        telemetry.activate(live)
        _end_in_flight_at_exit()
        self._patcher = Patcher(
            [
                LoadOnImport(top_module, partial(_adapter_patches, live, listed, config))
                for top_module, listed in selected_by_top_module(config.orchestrators).items()
            ]
        )
        self._patcher.start()

    def _uninstrument(self, **kwargs: Any) -> None:
        """Put every original back, then end what is in flight as ``cancelled``: nothing
        will report its end any more, and its span must still be exported."""
        if self._patcher is not None:
            self._patcher.stop()
            self._patcher = None
        live = telemetry.current()
        telemetry.activate(None)
        if live is not None:
            live.close()


def _adapter_patches(
    live: Telemetry, listed: list[Listed], config: ExecStatusConfig, _framework: ModuleType
) -> list[AnyPatch]:
    """When a framework is imported: its adapters (``listed``, all of one top module), those
    that support its installed version made with the live telemetry, and what they patch.
    The version check, and its one log line for a version none supports, happen here."""
    from opentelemetry_instrumentation_execstatus.adapters.base import enabled_adapters

    enabled = enabled_adapters([entry.load() for entry in listed], config.orchestrators)
    return [patch for adapter_cls in enabled for patch in adapter_cls(live).patches()]


EXIT_GRACE_SECONDS = 0.5
_exit_hook_registered = False


def _end_in_flight_at_exit() -> None:
    """Registered after the SDK providers (atexit runs last-in first-out), so the spans this
    ends are still exported by their shutdown."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(_on_exit)


def _on_exit() -> None:
    live = telemetry.current()
    if live is not None:
        live.tracker.end_in_flight(EXIT_GRACE_SECONDS)


def _disabled_by_environment() -> bool:
    """OTEL_SDK_DISABLED, or this instrumentation listed in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS.

    ``opentelemetry-instrument`` already skips a disabled entry point; checking here too makes
    an explicit ``instrument()`` call honour the same switch.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return True
    disabled = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return ENTRY_POINT_NAME in {name.strip() for name in disabled.split(",")}


__all__ = ["ExecStatusInstrumentor", "__version__"]
