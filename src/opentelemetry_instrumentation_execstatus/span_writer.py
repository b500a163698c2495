"""Span writing: an execution's span opened, given an event at each status change, described
at its end and ended, every SDK call guarded on its own.

A tracer, span processor or span that raises costs only its own piece of telemetry: a span
that fails to open leaves the execution without a span (its children then hang off its
parent), never without its state; a failed event or attribute is lost alone; a span is ended
even when describing its end failed. Errors are reported once per place (``safety``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from opentelemetry_instrumentation_execstatus import reserved_spans, semconv
from opentelemetry_instrumentation_execstatus.clock import MONO_TO_WALL_NS
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
    EXECUTION_CACHED,
    EXECUTION_STATUS,
    STATUS_CHANGE_EVENT,
    ExecutionLevel,
    ExecutionStatus,
)

# Enum members read on every span, as module constants: reading one from its class goes through
# the enum's metaclass each time (about as slow as a function call on Python 3.11).
_INTERNAL = SpanKind.INTERNAL
_PIPELINE = ExecutionLevel.PIPELINE


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
        ``parent_context`` (None: the current context); a span reserved in another process
        (``reserved_spans.opening``) is started under its reserved ids."""
        reserved = reserved_spans.reserved_in(parent_context)
        if reserved is not None:
            parent_context = reserved_spans.unmarked(parent_context)
        execution.context = parent_context
        try:
            if reserved is None:
                span = self._start_span(execution, parent_context, at_ns)
            else:
                with reserved_spans.writing(self._tracer, reserved):
                    span = self._start_span(execution, parent_context, at_ns)
        except Exception:
            report_internal_error("starting a span")
            return
        execution.span = span
        # Kept even for a sampled-out span, so children inherit the sampling decision.
        execution.context = trace.set_span_in_context(span, parent_context)
        self.status_change(span, None, first, at_ns)

    def reserve(self, parent_context: Context, name: str) -> str:
        """Reserve, under ``parent_context``, the span of an execution that another process
        will write (``reserved_spans``); returns its ids as text."""
        return reserved_spans.reserve(self._tracer, parent_context, name)

    def _start_span(self, execution: Execution, parent_context: Context | None, at_ns: int) -> Span:
        return self._tracer.start_span(
            _span_name(execution),
            context=parent_context,
            kind=_INTERNAL,
            attributes=_start_attributes(execution),
            start_time=at_ns + MONO_TO_WALL_NS,
        )

    def adopt(
        self, parent_context: Context | None, first: ExecutionStatus, at_ns: int
    ) -> Span | None:
        """The span another tracer made for the work (current in ``parent_context``, None:
        the current context), if it records: it gets the status events, starting with
        ``first`` at ``at_ns``, and is never ended here."""
        try:
            span = trace.get_current_span(parent_context)
            if not span.is_recording():
                return None
        except Exception:
            report_internal_error("finding the span of work traced by another")
            return None
        self.status_change(span, None, first, at_ns)
        return span

    def status_change(
        self,
        span: Span,
        previous: ExecutionStatus | None,
        current: ExecutionStatus,
        at_ns: int,
    ) -> None:
        """The span's event for a change from ``previous`` (None: its first status). The span
        is not asked ``is_recording()`` first: one that does not record drops the event
        itself, and the event's attributes are cached, so asking would save nothing."""
        try:
            span.add_event(
                STATUS_CHANGE_EVENT,
                _status_change_attributes(previous, current),
                timestamp=at_ns + MONO_TO_WALL_NS,
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
        a failure, its error type and exception event. Describing the end and ending the span
        are guarded apart: a describing call that raises loses only the rest of the
        description, never the end of the span."""
        span = execution.span
        if span is None:
            return
        try:
            if span.is_recording():  # the description is built only for a span that keeps it
                self._set_final_attributes(span, execution.level, final, at_ns, error, error_type)
        except Exception:
            report_internal_error("setting a span's final attributes")
        _end_span(span, at_ns)

    def release(self, execution: Execution, status: ExecutionStatus, at_ns: int) -> None:
        """End the span of an execution that goes on elsewhere (a database row, a task handed
        to another process), if this process opened one, still in ``status``: no result."""
        span = execution.span
        if span is None:
            return
        try:
            if span.is_recording():
                span.set_attribute(EXECUTION_STATUS, status.value)
        except Exception:
            report_internal_error("setting a span's final attributes")
        _end_span(span, at_ns)

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
        if final in _ERROR_STATUSES:
            error_type = error_type_of(error_type) or error_type_of(error) or final.value
        if error_type is not None:
            span.set_status(Status(StatusCode.ERROR, error_type))
            span.set_attribute(semconv.ERROR_TYPE, error_type)
        status, cached, result = _FINAL_VALUES[final]
        span.set_attribute(EXECUTION_STATUS, status)
        span.set_attribute(EXECUTION_CACHED, cached)
        if result is not None:
            result_key = (
                semconv.CICD_PIPELINE_RESULT
                if level is _PIPELINE
                else semconv.CICD_PIPELINE_TASK_RUN_RESULT
            )
            span.set_attribute(result_key, result)
        if error_type is not None and isinstance(error, BaseException):
            attributes = exception_attributes(error, error_type, self._config)
            if attributes is not None:
                span.add_event(EXCEPTION_EVENT, attributes, timestamp=at_ns + MONO_TO_WALL_NS)


def _end_span(span: Span, at_ns: int) -> None:
    """End the span, whatever became of its description."""
    try:
        span.end(end_time=at_ns + MONO_TO_WALL_NS)
    except Exception:
        report_internal_error("ending a span")


_ERROR_STATUSES = frozenset(status for status in ExecutionStatus if status.is_error)


def _final_values(final: ExecutionStatus) -> tuple[str, bool, str | None]:
    """``execution.status``, ``execution.cached`` and the CICD result of a final status."""
    result = CICD_RESULT_BY_STATUS.get(final)
    return final.value, final is ExecutionStatus.CACHED, None if result is None else result.value


# The values each status puts on its span's end, prepared once: ``.value`` of an enum member is
# a property, a call each time it is read (where a member's value is read per span, below, it
# is read as ``_value_``, the plain attribute behind it).
_FINAL_VALUES = {status: _final_values(status) for status in ExecutionStatus}


@cached_attributes(maxsize=256)
def _status_change_attributes(
    previous: ExecutionStatus | None, current: ExecutionStatus
) -> dict[str, str]:
    attributes = {semconv.EXECUTION_STATUS_TO: current.value}
    if previous is not None:
        attributes[semconv.EXECUTION_STATUS_FROM] = previous.value
    return attributes


def _span_name(execution: Execution) -> str:
    if execution.level is _PIPELINE:
        return f"RUN {execution.pipeline_name or execution.name or 'pipeline'}"
    return execution.name or execution.level._value_


def _start_attributes(execution: Execution) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        semconv.EXECUTION_ORCHESTRATOR: execution.orchestrator._value_,
        semconv.EXECUTION_LEVEL: execution.level._value_,
    }
    if execution.pipeline_name is not None:
        attributes[semconv.CICD_PIPELINE_NAME] = execution.pipeline_name
    if execution.level is _PIPELINE:
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
