"""The status tracker: the one function every status change of every orchestrator goes through.

Like seed 000's ``_transition_execution_status()``, ``StatusTracker.transition`` is told "this
execution is now in status X" and does all the telemetry: it keeps the execution's current
status and since-when only while the execution is in flight, records the time spent in the
previous status on ``execution.status_transition.duration`` (inside the execution's span
context, so exemplars lead to the trace), keeps ``execution.active`` right, and starts, annotates
and ends the execution's span.

Executions whose status lives in a database (``persisted=True``) are handled the way several
writer processes need: a transition may carry the database's own record of the previous status
and since when (``previous_status``, ``previous_since``), which wins over this process's, so a
change made by another process or before a restart is measured right; ``execution.active``
moves from that previous status to the new one (each writer adds its deltas, so the sum over
writers is the number of rows in each status); the span starts at the first change this process
sees, backdated to when the previous status began; and at exit an execution still in flight
ends its span without any status change, since the database still holds its status.

Concurrency: a global lock guards only the in-flight and ended tables (cheap dict operations);
each execution has its own lock, held while its state changes, so SDK calls of different
executions never wait for each other. An execution ends once: whoever ends it (its final
status, eviction, exit, ``uninstrument()``) marks it under its lock, and every later change
that still holds it is dropped.

Failures of the SDK (a span processor, an instrument or a tracer that raises) never reach the
tracker's own state: the state and ``execution.active`` change first, then each SDK call is
made on its own, so one that raises costs only its own piece of telemetry. A span is ended
even when recording the metrics failed, and an execution leaves the in-flight table even when
ending its span failed.

Out-of-order events: a non-final status stamped before the status the execution is in has
been overtaken and is dropped (a final one still ends the execution, its duration clamped to
0). Reuse of an id: a non-final status for a key whose execution has ended starts a new
execution, unless it happened (by its timestamp) before that end, in which case it is a late
event of the ended one and dropped; a final status for an ended key is a duplicate and
dropped.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from opentelemetry_instrumentation_execstatus import clock, semconv
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.errors import (
    EXCEPTION_EVENT,
    error_type_of,
    exception_attributes,
)
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.instruments import (
    Attributes,
    Instruments,
    cached_attributes,
)
from opentelemetry_instrumentation_execstatus.normalize import (
    NameLimiter,
    clamp_seconds,
    clean_text,
    to_enum,
    to_status,
)
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import (
    CICD_RESULT_BY_STATUS,
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)
from opentelemetry_instrumentation_execstatus.sinks import CLOSED, Closed, Sinks

MAX_ATTEMPT = 2**63 - 1  # OTLP integers are int64: one larger fails its whole export batch

_LOG = logging.getLogger(__name__)


class _Execution:
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
    )

    def __init__(
        self,
        orchestrator: Orchestrator,
        level: ExecutionLevel,
        name: str | None,
        pipeline_name: str | None,
        run_id: str | None,
        attempt: int | None,
        correlation_id: str | None,
        emit_span: bool,
        parent_key: Hashable | None,
        persisted: bool,
    ) -> None:
        self.lock = threading.Lock()
        self.orchestrator = orchestrator
        self.level = level
        self.name = name
        self.pipeline_name = pipeline_name
        self.run_id = run_id
        self.attempt = attempt
        self.correlation_id = correlation_id
        self.emit_span = emit_span
        self.parent_key = parent_key
        self.persisted = persisted
        self.status: ExecutionStatus | None = None  # None until its first status is applied
        self.since_ns: int | None = 0  # None only for a persisted row whose start is unknown
        self.span: Span | None = None
        self.context: Context | None = None  # the span's context, for children and exemplars
        self.metric_pipeline: str | None = None
        self.metric_task: str | None = None
        self.ended = False  # set once, under ``lock``, by whoever ends it

    def active_key(self, status: ExecutionStatus | None) -> tuple[Any, ...] | None:
        """``execution.active``'s key while in ``status``; None for no status or a final one."""
        if status is None or status.is_final:
            return None
        return (self.orchestrator, self.level, status)


@cached_attributes(maxsize=8192)
def _transition_attributes(
    orchestrator: Orchestrator,
    level: ExecutionLevel,
    pipeline: str | None,
    task: str | None,
    previous: ExecutionStatus,
    current: ExecutionStatus,
) -> dict[str, str]:
    attributes = {
        semconv.EXECUTION_STATUS_FROM: previous.value,
        semconv.EXECUTION_STATUS_TO: current.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
        semconv.EXECUTION_LEVEL: level.value,
    }
    if pipeline is not None:
        attributes[semconv.CICD_PIPELINE_NAME] = pipeline
    if task is not None:
        attributes[semconv.CICD_PIPELINE_TASK_NAME] = task
    return attributes


@cached_attributes(maxsize=256)
def _status_change_attributes(
    previous: ExecutionStatus | None, current: ExecutionStatus
) -> dict[str, str]:
    attributes = {semconv.EXECUTION_STATUS_TO: current.value}
    if previous is not None:
        attributes[semconv.EXECUTION_STATUS_FROM] = previous.value
    return attributes


class StatusTracker:
    """Per-execution state and all execution telemetry (spans, histogram, active gauge)."""

    def __init__(
        self, tracer: Tracer, instruments: Instruments, config: ExecStatusConfig, sinks: Sinks
    ) -> None:
        self._tracer = tracer
        self._sinks: Sinks | Closed = sinks
        self._duration = instruments.status_transition_duration
        self._active = instruments.active_executions
        self._config = config
        self._pipeline_names = NameLimiter(config.name_cardinality_limit)
        self._task_names = NameLimiter(config.name_cardinality_limit)
        self._lock = threading.Lock()
        self._in_flight: dict[Hashable, _Execution] = {}
        # Keys of recently ended executions and when they ended, so that a late or duplicate
        # event for one of them is dropped instead of starting a second, empty span, while a
        # later new start under the same id is a new execution. Bounded like the in-flight
        # table. An OrderedDict drops its oldest key in O(1); a dict's first key, after many
        # deletions at the front, is found by scanning past every deleted slot.
        self._ended: OrderedDict[Hashable, int] = OrderedDict()
        self._eviction_logged = False
        after_fork_in_child(self._after_fork)

    # -- queries -------------------------------------------------------------------------

    def is_off(self) -> bool:
        """Nothing would record a transition now (no SDK, SDK disabled, suppressed, or
        uninstrumented): the caller may skip its own work too."""
        return self._sinks.off() or not is_instrumentation_enabled()

    def in_flight_count(self) -> int:
        """How many executions are being tracked right now (for tests and benchmarks)."""
        return len(self._in_flight)

    def ended_count(self) -> int:
        """How many ended keys are remembered (bounded by ``max_in_flight``)."""
        return len(self._ended)

    def status_of(self, key: Hashable) -> ExecutionStatus | None:
        """The current canonical status of an in-flight execution, or None."""
        execution = self._in_flight.get(key)
        return None if execution is None else execution.status

    def context_of(self, key: Hashable) -> Context | None:
        """The span context of an in-flight execution, to parent work the tracker doesn't see."""
        execution = self._in_flight.get(key)
        if execution is None:
            return None
        with execution.lock:
            return execution.context

    def _finishing_here(self) -> bool:
        """Is an execution that this process will finish still in flight? Database rows are
        not: another process, or a later run of this one, may change them next."""
        with self._lock:
            return any(not execution.persisted for execution in self._in_flight.values())

    def end_in_flight(self, grace_seconds: float) -> None:
        """At exit: give executions ``grace_seconds`` to finish, then end the rest as cancelled.

        An orchestrator's threads can still be returning from a step when the interpreter
        exits (routilux signals "done" from inside a routine); without this their spans, and
        their runs', would never end and never be exported. Database rows keep their status:
        their spans end, and their count stays for whichever process changes them next.
        """
        deadline = time.monotonic() + grace_seconds
        while self._finishing_here() and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            remaining = list(self._in_flight.items())
        for key, execution in remaining:
            try:
                self._abandon(key, execution, ExecutionStatus.CANCELLED)
            except Exception:
                report_internal_error("StatusTracker.end_in_flight")

    def close(self) -> None:
        """At ``uninstrument()``: end what is in flight as cancelled, and record nothing more
        (an orchestrator thread still inside a patched call reports to a closed tracker)."""
        self.end_in_flight(0)
        self._sinks = CLOSED

    # -- the transition function -----------------------------------------------------------

    def transition(
        self,
        key: Hashable,
        status: Any,
        identity: Identity,
        *,
        parent_context: Context | None = None,
        emit_span: bool = True,
        persisted: bool = False,
        timestamp: clock.Timestamp | None = None,
        previous_status: Any = None,
        previous_since: clock.Timestamp | None = None,
        error: BaseException | None = None,
        error_type: Any = None,
    ) -> None:
        """Record that execution ``key`` is now in ``status``.

        ``key`` identifies the execution among all orchestrators (adapters prefix theirs).
        ``identity`` (name, pipeline, run id, attempt, parent...), ``parent_context``,
        ``emit_span`` and ``persisted`` are read on the first observed status only.
        ``status`` is a canonical status or its string; anything else is ``unknown``.
        ``emit_span=False`` keeps the metrics but starts no span (for work the orchestrator
        already traces itself); the histogram is then recorded in the current context, so its
        exemplars still lead to the orchestrator's span. ``timestamp`` is the orchestrator's own
        time of the change, when it has one (unreadable or outside the sane range: now).
        ``previous_status`` and ``previous_since`` are, for a persisted execution, what its
        database says it was in before this change and since when (either may be None).
        On a failed final status, ``error`` (the exception) gives ``error.type`` and the
        exception event; ``error_type`` (a type name or an exception class) gives
        ``error.type`` when there is no exception to report, or overrides its class.
        Never raises: an error of its own is logged once and the change is dropped.
        """
        try:
            if self._sinks.off() or not is_instrumentation_enabled():
                return
            current = to_status(status)
            at_ns = None if timestamp is None else clock.from_timestamp(timestamp)
            if at_ns is None:
                at_ns = clock.now_ns()
            stored = None if previous_status is None else to_status(previous_status)
            stored_since = None if previous_since is None else clock.from_timestamp(previous_since)
            execution = self._in_flight.get(key)  # lock-free: a dict read is atomic
            if execution is None:
                # A late or duplicate event of an ended execution is dropped before anything
                # is built for it (nor its names admitted to the metrics); ``_create`` checks
                # again under the lock.
                ended_at = self._ended.get(key)
                if ended_at is not None and not _starts_anew(
                    bool(persisted), current, at_ns, stored, ended_at
                ):
                    return
                execution = self._create(
                    key,
                    current,
                    at_ns,
                    stored,
                    _Execution(
                        to_enum(Orchestrator, identity.orchestrator, Orchestrator.UNKNOWN),
                        to_enum(ExecutionLevel, identity.level, ExecutionLevel.STEP),
                        clean_text(identity.name),
                        clean_text(identity.pipeline),
                        clean_text(identity.run_id),
                        _attempt(identity.attempt),
                        clean_text(identity.correlation_id),
                        bool(emit_span),
                        identity.parent,
                        bool(persisted),
                    ),
                )
                if execution is None:
                    return
            # Read outside this execution's lock: parent and child locks are never held together.
            if execution.span is None and (execution.status is None or execution.persisted):
                inherited_context = (
                    parent_context
                    if parent_context is not None  # an empty Context is falsy, yet explicit
                    else self._parent_context(execution.parent_key)
                )
            else:
                inherited_context = None

            with execution.lock:
                if execution.ended:
                    return  # ended by another thread (its final status, eviction, exit)
                if execution.persisted:
                    applied = self._apply_persisted(
                        execution, current, at_ns, stored, stored_since, inherited_context
                    )
                else:
                    applied = self._apply(execution, current, at_ns, inherited_context)
                if not applied or not current.is_final:
                    return
                execution.ended = True
            self._forget(key, execution, at_ns)
            self._finish(execution, current, at_ns, error, error_type)
        except Exception:
            report_internal_error("StatusTracker.transition")

    # -- internals -------------------------------------------------------------------------

    def _create(
        self,
        key: Hashable,
        current: ExecutionStatus,
        at_ns: int,
        stored: ExecutionStatus | None,
        fresh: _Execution,
    ) -> _Execution | None:
        """``fresh`` in flight for ``key``, unless the key has ended and this change does not
        start a new execution; a racing creator for the same key wins. Executions pushed out
        by the in-flight cap end here."""
        try:
            parent = None if fresh.parent_key is None else self._in_flight.get(fresh.parent_key)
        except Exception:  # a parent key that cannot be looked up (unhashable): no parent
            fresh.parent_key = parent = None
        if fresh.pipeline_name is None and parent is not None:
            fresh.pipeline_name = parent.pipeline_name
        if self._config.names_on_metrics:
            fresh.metric_pipeline = self._pipeline_names.admit(fresh.pipeline_name)
            if fresh.level is not ExecutionLevel.PIPELINE:
                fresh.metric_task = self._task_names.admit(fresh.name)
        evicted: list[tuple[Hashable, _Execution]] = []
        with self._lock:
            existing = self._in_flight.get(key)
            if existing is not None:
                return existing
            ended_at = self._ended.get(key)
            if ended_at is not None:
                if not _starts_anew(fresh.persisted, current, at_ns, stored, ended_at):
                    return None
                del self._ended[key]
            self._in_flight[key] = fresh
            while len(self._in_flight) > self._config.max_in_flight:
                oldest = next(iter(self._in_flight))
                evicted.append((oldest, self._in_flight.pop(oldest)))
                self._remember_ended(oldest, at_ns)
        for old_key, old in evicted:
            self._abandon(old_key, old, ExecutionStatus.UNKNOWN)
        return fresh

    def _parent_context(self, parent_key: Hashable | None) -> Context | None:
        """A new execution's parent span context; None means the current context."""
        return None if parent_key is None else self.context_of(parent_key)

    def _forget(self, key: Hashable, execution: _Execution, at_ns: int) -> None:
        """``execution`` (ended) leaves the in-flight table; its key is remembered as ended."""
        with self._lock:
            if self._in_flight.get(key) is execution:
                del self._in_flight[key]
            self._remember_ended(key, at_ns)

    def _remember_ended(self, key: Hashable, at_ns: int) -> None:
        # Called with self._lock held. An end stamped in the future (a clock running ahead)
        # is remembered as now, or it would swallow a re-run reported until then.
        ended = self._ended
        ended[key] = min(at_ns, clock.now_ns())
        ended.move_to_end(key)
        if len(ended) > self._config.max_in_flight:
            ended.popitem(last=False)

    def _wants_span(self, execution: _Execution) -> bool:
        if not execution.emit_span:
            return False
        return execution.level is not ExecutionLevel.ITEM or self._config.item_spans

    def _begin(
        self,
        execution: _Execution,
        current: ExecutionStatus,
        at_ns: int,
        parent_context: Context | None,
    ) -> None:
        execution.status = current
        execution.since_ns = at_ns
        self._active.move(None, execution.active_key(current))
        if self._wants_span(execution):
            self._open_span(execution, current, at_ns, parent_context)
        elif execution.emit_span:
            execution.context = parent_context  # an item without a span: its stage's
        else:
            execution.context = None  # traced by the orchestrator: whatever span is current

    def _open_span(
        self,
        execution: _Execution,
        first: ExecutionStatus,
        at_ns: int,
        parent_context: Context | None,
    ) -> None:
        """Start the span; a tracer or span processor that raises leaves the execution
        without a span (its children then hang off its parent), never without its state."""
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
        self._add_event(span, _status_change_attributes(None, first), at_ns)

    def _apply(
        self,
        execution: _Execution,
        current: ExecutionStatus,
        at_ns: int,
        parent_context: Context | None,
    ) -> bool:
        """A change as this process sees it; False when there is nothing to record."""
        previous = execution.status
        if previous is None:
            self._begin(execution, current, at_ns, parent_context)
            return True
        if previous is current or previous.is_final:
            return False  # same canonical status, or a late event after the end
        since = execution.since_ns
        if since is not None and at_ns < since and not current.is_final:
            return False  # an older event arriving late: the execution has moved past it
        self._change(execution, previous, current, at_ns, since)
        return True

    def _apply_persisted(
        self,
        execution: _Execution,
        current: ExecutionStatus,
        at_ns: int,
        stored: ExecutionStatus | None,
        stored_since: int | None,
        parent_context: Context | None,
    ) -> bool:
        """A change of a persisted execution, measured from the database's previous status.

        The stored previous status and its time win over this process's record; without
        them the record stands in. ``execution.active`` moves from the previous status to the
        new one (a brand-new row only adds), whoever counted the previous one. The span is
        opened at the first change seen here, backdated to when the previous status began.
        """
        recorded = execution.status
        if recorded is not None and recorded.is_final:
            return False  # a late event after the end
        if stored is not None:
            previous: ExecutionStatus | None = stored
            since = stored_since
            if since is None and recorded is stored:
                since = execution.since_ns
        else:
            previous = recorded
            since = execution.since_ns if recorded is not None else None
        if previous is None:  # a new row: its first status
            execution.status = current
            execution.since_ns = at_ns
            self._active.move(None, execution.active_key(current))
            return True
        if previous is current:  # nothing changed, though this process may have been behind
            execution.status = current
            if since is not None or recorded is None:
                execution.since_ns = since  # None: when it began is unknown, so no sample
            return True
        if execution.span is None and self._wants_span(execution):
            self._open_span(execution, previous, at_ns if since is None else since, parent_context)
        self._change(execution, previous, current, at_ns, since)
        return True

    def _change(
        self,
        execution: _Execution,
        previous: ExecutionStatus,
        current: ExecutionStatus,
        at_ns: int,
        since_ns: int | None,
    ) -> None:
        """Leave ``previous`` (entered at ``since_ns``, if known) for ``current``."""
        execution.status = current
        execution.since_ns = at_ns
        # A persisted row may come back from a final status: then only the new one counts.
        self._active.move(execution.active_key(previous), execution.active_key(current))
        if since_ns is not None:
            try:
                self._duration.record(
                    clamp_seconds((at_ns - since_ns) / 1e9),
                    _transition_attributes(
                        execution.orchestrator,
                        execution.level,
                        execution.metric_pipeline,
                        execution.metric_task,
                        previous,
                        current,
                    ),
                    context=execution.context,
                )
            except Exception:
                report_internal_error("recording a status transition")
        if execution.span is not None:
            self._add_event(execution.span, _status_change_attributes(previous, current), at_ns)

    def _add_event(self, span: Span, attributes: Attributes, at_ns: int) -> None:
        try:
            if span.is_recording():
                span.add_event(
                    semconv.STATUS_CHANGE_EVENT, attributes, timestamp=clock.to_wall_ns(at_ns)
                )
        except Exception:
            report_internal_error("adding a span event")

    def _finish(
        self,
        execution: _Execution,
        final: ExecutionStatus,
        at_ns: int,
        error: BaseException | None,
        error_type: Any = None,
    ) -> None:
        """End the span of an execution that has ended (and left the in-flight table)."""
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

    def _abandon(self, key: Hashable, execution: _Execution, final: ExecutionStatus) -> None:
        """End an execution this process will not see end: pushed out by the in-flight cap
        (``unknown``: no sample, since nothing says it ended), or at exit and
        ``uninstrument()`` (``cancelled``, with its sample and event).

        A persisted execution keeps its status, as the database still holds it: its span
        ends with that status and ``execution.active`` is left for whichever process changes
        the row next.
        """
        at_ns = clock.now_ns()
        with execution.lock:
            if execution.ended:
                return
            execution.ended = True
            previous = execution.status
            if previous is not None and not previous.is_final and not execution.persisted:
                if final is ExecutionStatus.UNKNOWN:
                    execution.status = final
                    self._active.move(execution.active_key(previous), None)
                else:
                    self._change(execution, previous, final, at_ns, execution.since_ns)
        self._forget(key, execution, at_ns)
        if final is ExecutionStatus.UNKNOWN:
            self._log_eviction()
        if previous is None or previous.is_final:
            return
        if execution.persisted:
            self._release(execution, previous, at_ns)
        else:
            self._finish(execution, final, at_ns, None)

    def _release(self, execution: _Execution, status: ExecutionStatus, at_ns: int) -> None:
        """End a persisted execution's span (if this process opened one) with its status."""
        span = execution.span
        if span is not None:
            _end_span(span, at_ns, functools.partial(_set_status, status=status))

    def _log_eviction(self) -> None:
        if not self._eviction_logged:
            self._eviction_logged = True
            _LOG.warning(
                "execstatus: more than %d executions in flight; ending the oldest as 'unknown' "
                "(raise max_in_flight if this is expected)",
                self._config.max_in_flight,
            )

    def _after_fork(self) -> None:
        """A forked child owns none of the parent's executions: the parent ends them."""
        self._lock = threading.Lock()
        self._in_flight = {}
        self._ended = OrderedDict()


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


def _starts_anew(
    persisted: bool,
    current: ExecutionStatus,
    at_ns: int,
    stored: ExecutionStatus | None,
    ended_at_ns: int,
) -> bool:
    """Does a change for a key whose execution has ended start a new execution?

    A non-final status that happened at or after that end does (a re-run under the same id);
    one that happened before it is a late event of the ended execution, and a final status
    is a duplicate end. A database row also starts anew when the database says it comes back
    from a final status, or holds no status yet (a new row reusing the id).
    """
    if not current.is_final and at_ns >= ended_at_ns:
        return True
    return persisted and (stored is None or (stored.is_final and not current.is_final))


def _attempt(value: Any) -> int | None:
    """A positive attempt number that fits OTLP's int64; anything else is no attempt."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ATTEMPT:
        return int(value)
    return None


def _span_name(execution: _Execution) -> str:
    if execution.level is ExecutionLevel.PIPELINE:
        return f"RUN {execution.pipeline_name or execution.name or 'pipeline'}"
    return execution.name or execution.level.value


def _start_attributes(execution: _Execution) -> dict[str, Any]:
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
