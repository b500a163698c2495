"""Span writing: an execution's span opened, given an event at each status change, described
at its end and ended, every SDK call guarded on its own.

A tracer, span processor or span that raises costs only its own piece of telemetry: a span
that fails to open leaves the execution without a span (its children then hang off its
parent), never without its state; a failed event or attribute is lost alone; a span is ended
even when describing its end failed. Errors are reported once per place (``safety``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from opentelemetry_instrumentation_execstatus import clock, semconv
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.errors import (
    EXCEPTION_EVENT,
    error_type_of,
    exception_attributes,
)
from opentelemetry_instrumentation_execstatus.execution import Execution
from opentelemetry_instrumentation_execstatus.instruments import cached_attributes
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import (
    CICD_RESULT_BY_STATUS,
    ExecutionLevel,
    ExecutionStatus,
)


class SpanWriter:
    """The span of each execution that has one, from its first status to its end."""

    def __init__(self, tracer: Tracer, config: ExecStatusConfig) -> None:
        self._tracer = tracer
        self._config = config

    def open(
        self,
        execution: Execution,
        first: ExecutionStatus,
        at_ns: int,
        parent_context: Context | None,
    ) -> None:
        """Start the execution's span at ``at_ns``, in status ``first``, under
        ``parent_context`` (None: the current context)."""
        execution.context = parent_context
        try:
            span = self._tracer.start_span(
                _span_name(execution),
                context=parent_context,
                kind=SpanKind.INTERNAL,
                attributes=_start_attributes(execution),
                start_time=clock.to_wall_ns(at_ns),
            )
        except Exception:
            report_internal_error("starting a span")
            return
        execution.span = span
        # Kept even for a sampled-out span, so children inherit the sampling decision.
        execution.context = trace.set_span_in_context(span, parent_context)
        self.status_change(span, None, first, at_ns)

    def status_change(
        self,
        span: Span,
        previous: ExecutionStatus | None,
        current: ExecutionStatus,
        at_ns: int,
    ) -> None:
        """The span's event for a change from ``previous`` (None: its first status)."""
        try:
            if span.is_recording():
                span.add_event(
                    semconv.STATUS_CHANGE_EVENT,
                    _status_change_attributes(previous, current),
                    timestamp=clock.to_wall_ns(at_ns),
                )
        except Exception:
            report_internal_error("adding a span event")

    def finish(
        self,
        execution: Execution,
        final: ExecutionStatus,
        at_ns: int,
        error: BaseException | None,
        error_type: Any,
    ) -> None:
        """End the span of an execution that has ended in ``final``, with its result and, for
        a failure, its error type and exception event."""
        span = execution.span
        if span is not None:
            _end_span(
                span,
                at_ns,
                functools.partial(
                    self._set_final_attributes,
                    level=execution.level,
                    final=final,
                    at_ns=at_ns,
                    error=error,
                    error_type=error_type,
                ),
            )

    def release(self, execution: Execution, status: ExecutionStatus, at_ns: int) -> None:
        """End a database row's span (if this process opened one), the row still in
        ``status``: no result, as the execution goes on elsewhere."""
        span = execution.span
        if span is not None:
            _end_span(span, at_ns, functools.partial(_set_status, status=status))

    def _set_final_attributes(
        self,
        span: Span,
        level: ExecutionLevel,
        final: ExecutionStatus,
        at_ns: int,
        error: BaseException | None,
        error_type: Any,
    ) -> None:
        # The error status first: should a later call raise, the span still says it failed.
        if final.is_error:
            error_type = error_type_of(error_type) or error_type_of(error) or final.value
        if error_type is not None:
            span.set_status(Status(StatusCode.ERROR, error_type))
            span.set_attribute(semconv.ERROR_TYPE, error_type)
        span.set_attribute(semconv.EXECUTION_STATUS, final.value)
        span.set_attribute(semconv.EXECUTION_CACHED, final is ExecutionStatus.CACHED)
        result = CICD_RESULT_BY_STATUS.get(final)
        if result is not None:
            result_key = (
                semconv.CICD_PIPELINE_RESULT
                if level is ExecutionLevel.PIPELINE
                else semconv.CICD_PIPELINE_TASK_RUN_RESULT
            )
            span.set_attribute(result_key, result.value)
        if error_type is not None and isinstance(error, BaseException):
            attributes = exception_attributes(error, error_type, self._config)
            if attributes is not None:
                span.add_event(EXCEPTION_EVENT, attributes, timestamp=clock.to_wall_ns(at_ns))


def _end_span(span: Span, at_ns: int, describe: Callable[[Span], None]) -> None:
    """``describe`` the span's end, then end it: a describing call that raises loses only the
    rest of the description, never the end of the span."""
    try:
        if span.is_recording():
            describe(span)
    except Exception:
        report_internal_error("setting a span's final attributes")
    try:
        span.end(end_time=clock.to_wall_ns(at_ns))
    except Exception:
        report_internal_error("ending a span")


def _set_status(span: Span, status: ExecutionStatus) -> None:
    span.set_attribute(semconv.EXECUTION_STATUS, status.value)


@cached_attributes(maxsize=256)
def _status_change_attributes(
    previous: ExecutionStatus | None, current: ExecutionStatus
) -> dict[str, str]:
    attributes = {semconv.EXECUTION_STATUS_TO: current.value}
    if previous is not None:
        attributes[semconv.EXECUTION_STATUS_FROM] = previous.value
    return attributes


def _span_name(execution: Execution) -> str:
    if execution.level is ExecutionLevel.PIPELINE:
        return f"RUN {execution.pipeline_name or execution.name or 'pipeline'}"
    return execution.name or execution.level.value


def _start_attributes(execution: Execution) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        semconv.EXECUTION_ORCHESTRATOR: execution.orchestrator.value,
        semconv.EXECUTION_LEVEL: execution.level.value,
    }
    if execution.pipeline_name is not None:
        attributes[semconv.CICD_PIPELINE_NAME] = execution.pipeline_name
    if execution.level is ExecutionLevel.PIPELINE:
        if execution.run_id is not None:
            attributes[semconv.CICD_PIPELINE_RUN_ID] = execution.run_id
    else:
        if execution.name is not None:
            attributes[semconv.CICD_PIPELINE_TASK_NAME] = execution.name
        if execution.run_id is not None:
            attributes[semconv.CICD_PIPELINE_TASK_RUN_ID] = execution.run_id
    if execution.attempt is not None:
        attributes[semconv.EXECUTION_ATTEMPT] = execution.attempt
    if execution.correlation_id is not None:
        attributes[semconv.EXECUTION_CORRELATION_ID] = execution.correlation_id
    return attributes
