"""The record of one execution while it is in flight: who it is, where it stands, its span.

Its identity is normalised once, when the record is made (enums resolved, names cleaned, an
attempt OTLP cannot carry dropped, whether it gets a span decided), so that no later change
pays for it again. Its status, since-when, span and context change under its own ``lock``;
``ended`` is set once, under that lock, by whoever ends it, and every later change that still
holds the record is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.normalize import clean_text, to_enum
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)
from opentelemetry_instrumentation_execstatus.transition_rules import wants_span

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

MAX_ATTEMPT = 2**63 - 1  # OTLP integers are int64: one larger fails its whole export batch


class Execution:
    """What is known of one execution while it is in flight."""

    __slots__ = (
        "active_series",
        "attempt",
        "context",
        "correlation_id",
        "emit_span",
        "ended",
        "host_span",
        "level",
        "lock",
        "metric_pipeline",
        "metric_task",
        "name",
        "orchestrator",
        "parent_key",
        "persisted",
        "pipeline_name",
        "run_id",
        "since_ns",
        "span",
        "status",
        "wants_span",
    )

    def __init__(
        self, identity: Identity, emit_span: bool, persisted: bool, item_spans: bool
    ) -> None:
        """``identity`` normalised; ``item_spans``: whether an item gets a span of its own.
        (Positional: a class called with keywords pays for a dict on every creation.)"""
        self.lock = threading.Lock()
        # Members as adapters pass them, and absent fields, are taken without a call.
        orchestrator, level = identity.orchestrator, identity.level
        if type(orchestrator) is not Orchestrator:
            orchestrator = to_enum(Orchestrator, orchestrator, Orchestrator.UNKNOWN)
        self.orchestrator = orchestrator
        if type(level) is not ExecutionLevel:
            level = to_enum(ExecutionLevel, level, ExecutionLevel.STEP)
        self.level = level
        name, pipeline, run_id = identity.name, identity.pipeline, identity.run_id
        attempt, correlation_id = identity.attempt, identity.correlation_id
        self.name = None if name is None else clean_text(name)
        self.pipeline_name = None if pipeline is None else clean_text(pipeline)
        self.run_id = None if run_id is None else clean_text(run_id)
        self.attempt = None if attempt is None else _attempt(attempt)
        self.correlation_id = None if correlation_id is None else clean_text(correlation_id)
        self.parent_key: Hashable | None = identity.parent
        self.emit_span = emit_span = bool(emit_span)
        self.wants_span = wants_span(emit_span, level, item_spans)
        self.persisted = bool(persisted)
        self.status: ExecutionStatus | None = None  # None until its first status is applied
        self.since_ns: int | None = None  # None also for a persisted row whose start is unknown
        self.span: Span | None = None
        # With ``emit_span=False``: the span of the work's own tracer (the framework's, or
        # another instrumentation's) current at its first status, which gets the status events.
        self.host_span: Span | None = None
        self.context: Context | None = None  # the span's context, for children and exemplars
        # Its labels on metrics, once admitted (``MetricWriter.admit``): its execution.active
        # key by status, and the names on its samples.
        self.active_series: Mapping[ExecutionStatus | None, Hashable | None] | None = None
        self.metric_pipeline: str | None = None
        self.metric_task: str | None = None
        self.ended = False


def _attempt(value: Any) -> int | None:
    """A positive attempt number that fits OTLP's int64; anything else is no attempt."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ATTEMPT:
        return int(value)
    return None
