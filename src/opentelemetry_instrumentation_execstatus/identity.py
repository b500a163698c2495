"""Who an execution is: one value an adapter builds once and hands to every transition."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

from opentelemetry_instrumentation_execstatus.semconv import ExecutionLevel, Orchestrator


class Identity(NamedTuple):
    """The identity of one execution, read by the tracker on the first status it sees.

    Later transitions of the same execution may pass the same value again (it costs nothing)
    or a bare one: only ``orchestrator`` and ``level`` are needed to create an execution the
    tracker first meets at a later status. Text fields may be anything with a ``str()``; the
    tracker cleans and bounds them. ``parent`` is the key of the enclosing execution.
    """

    orchestrator: Orchestrator
    level: ExecutionLevel
    name: Any = None
    pipeline: Any = None
    run_id: Any = None
    attempt: Any = None
    parent: Hashable | None = None
    correlation_id: Any = None
