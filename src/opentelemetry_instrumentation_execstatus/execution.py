"""The record of one execution while it is in flight: who it is, where it stands, its span.

Its identity is normalised once, when the record is made (enums resolved, names cleaned, an
attempt OTLP cannot carry dropped, whether it gets a span decided), so that no later change
pays for it again. Its status, since-when, span and context change under its own ``lock``;
``ended`` is set once, under that lock, by whoever ends it, and every later change that still
holds the record is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
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
        "attempt",
        "context",
        "correlation_id",
        "emit_span",
        "ended",
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
        self.orchestrator = to_enum(Orchestrator, identity.orchestrator, Orchestrator.UNKNOWN)
        self.level = to_enum(ExecutionLevel, identity.level, ExecutionLevel.STEP)
        self.name = clean_text(identity.name)
        self.pipeline_name = clean_text(identity.pipeline)
        self.run_id = clean_text(identity.run_id)
        self.attempt = _attempt(identity.attempt)
        self.correlation_id = clean_text(identity.correlation_id)
        self.parent_key: Hashable | None = identity.parent
        self.emit_span = bool(emit_span)
        self.wants_span = wants_span(self.emit_span, self.level, item_spans)
        self.persisted = bool(persisted)
        self.status: ExecutionStatus | None = None  # None until its first status is applied
        self.since_ns: int | None = None  # None also for a persisted row whose start is unknown
        self.span: Span | None = None
        self.context: Context | None = None  # the span's context, for children and exemplars
        self.metric_pipeline: str | None = None  # the names on its metrics, once admitted
        self.metric_task: str | None = None
        self.ended = False


def _attempt(value: Any) -> int | None:
    """A positive attempt number that fits OTLP's int64; anything else is no attempt."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ATTEMPT:
        return int(value)
    return None
