"""The status tracker: the one function every status change of every orchestrator goes through.

``StatusTracker.transition`` is told "this execution is now in status X" and does all the
telemetry: it keeps the execution's status and since-when only while the execution is in
flight, records the time spent in the previous status on
``execution.status_transition.duration``, keeps ``execution.active`` right, and starts,
annotates and ends the execution's span. ``StatusTracker.transition_on`` is the same change for
a caller that has just asked ``is_off()`` (the public API, an adapter skipping its own work
when nothing records): it does not ask again, and takes its arguments by position. Each job
has its own module, and this one puts them in order and holds the locks:

- ``execution``: the record of one execution in flight, its identity normalised once;
- ``execution_table``: the in-flight table and the ended keys, bounded, with eviction;
- ``transition_rules``: whether a change applies and what it changes (live and persisted
  executions, out-of-order and late events, reuse of an id after an end), plain code;
- ``span_writer`` and ``metric_writer``: the SDK calls, each guarded on its own.

Concurrency: the table's lock guards only the in-flight and ended tables (cheap dict
operations); each execution has its own lock, held while its state changes, so SDK calls of
different executions never wait for each other. A parent's and a child's locks are never held
together: the parent's span context is read before the child's lock is taken. An execution
ends once: whoever ends it (its final status, eviction, exit, ``uninstrument()``) marks it
under its lock, and every later change that still holds it is dropped.

Failures of the SDK (a span processor, an instrument or a tracer that raises) never reach the
tracker's own state: the state and ``execution.active`` change first, then each SDK call is
made on its own, so one that raises costs only its own piece of telemetry. A span is ended
even when recording the metrics failed, and an execution leaves the in-flight table even when
ending its span failed.

At exit, executions this process will finish get a grace period, then end as cancelled;
database rows end only their spans, as the database still holds their status. A forked child
starts with empty tables (``execution_table``): the parent ends its own executions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Tracer

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.config import ExecStatusConfig
from opentelemetry_instrumentation_execstatus.execution import Execution
from opentelemetry_instrumentation_execstatus.execution_table import ExecutionTable
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.instruments import Instruments
from opentelemetry_instrumentation_execstatus.metric_writer import MetricWriter
from opentelemetry_instrumentation_execstatus.normalize import STATUS_BY_TEXT, to_status
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import ExecutionStatus
from opentelemetry_instrumentation_execstatus.sinks import CLOSED, Closed, Sinks
from opentelemetry_instrumentation_execstatus.span_writer import SpanWriter
from opentelemetry_instrumentation_execstatus.transition_rules import (
    FINAL_STATUSES,
    Change,
    abandoned,
    handed_off,
    live_change,
    persisted_change,
    starts_anew,
)

_LOG = logging.getLogger(__name__)
now_ns = clock.now_ns


class StatusTracker:
    """Per-execution state and all execution telemetry (spans, histogram, active gauge)."""

    def __init__(
        self, tracer: Tracer, instruments: Instruments, config: ExecStatusConfig, sinks: Sinks
    ) -> None:
        self._sinks: Sinks | Closed = sinks
        self._config = config
        self._item_spans = config.item_spans
        # In flight and ended, by key (``len()`` of it and of its ``ended``: how many of each).
        self.executions = ExecutionTable(config.max_in_flight)
        self._spans = SpanWriter(tracer, config)
        self._metrics = MetricWriter(instruments, config)
        self._eviction_logged = False

    # -- queries -------------------------------------------------------------------------

    def is_off(self) -> bool:
        """Nothing would record a transition now (no SDK, SDK disabled, suppressed, or
        uninstrumented): the caller may skip its own work too."""
        return self._sinks.off_here()

    def in_flight_count(self) -> int:
        """How many executions are being tracked right now."""
        return len(self.executions)

    def status_of(self, key: Hashable) -> ExecutionStatus | None:
        """The current canonical status of an in-flight execution, or None."""
        execution = self.executions.get(key)
        return None if execution is None else execution.status

    def context_of(self, key: Hashable) -> Context | None:
        """The span context of an in-flight execution, to parent work the tracker doesn't see."""
        execution = self.executions.get(key)
        if execution is None:
            return None
        with execution.lock:
            return execution.context

    def end_in_flight(self, grace_seconds: float) -> None:
        """At exit: give executions ``grace_seconds`` to finish, then end the rest as cancelled.

        An orchestrator's threads can still be returning from a step when the interpreter
        exits (routilux signals "done" from inside a routine); without this their spans, and
        their runs', would never end and never be exported. Database rows keep their status:
        their spans end, and their count stays for whichever process changes them next.
        """
        deadline = time.monotonic() + grace_seconds
        while self.executions.any_live() and time.monotonic() < deadline:
            time.sleep(0.005)
        for key, execution in self.executions.in_flight():
            try:
                self._abandon(key, execution, evicted=False)
            except Exception:
                report_internal_error("StatusTracker.end_in_flight")

    def kept_series(self, identity: Identity) -> Execution:
        """The labels of executions whose state the framework keeps itself, one series per
        identity (a task prefix: Dask's scheduler holds millions of tasks, each in one of a
        few states, and a span or an in-flight record each would cost more than the
        scheduler spends on them): for ``kept_change``, made once and reused. Its names are
        admitted through the cardinality cap as an execution's are."""
        series = Execution(identity, False, False, False)
        self._metrics.admit(series)
        return series

    def kept_change(
        self,
        series: Execution,
        previous: ExecutionStatus | None,
        current: ExecutionStatus,
        elapsed_ns: int,
    ) -> None:
        """One execution of ``series`` went from ``previous`` (None: it was not counted
        before) to ``current`` after ``elapsed_ns`` in ``previous`` (negative: 0): the
        sample on ``execution.status_transition.duration`` and the move of
        ``execution.active``; nothing is kept here, no span is made. Never raises."""
        try:
            if self._sinks.off_here():
                return
            active = series.active_series
            entering = None if current in FINAL_STATUSES else active[current]
            self._metrics.move_active(active[previous], entering)
            if previous is not None:
                self._metrics.record_transition(series, previous, current, elapsed_ns)
        except Exception:
            report_internal_error("StatusTracker.kept_change")

    def reserve_span(self, parent_context: Context, name: str) -> str | None:
        """Reserve, under ``parent_context``, the span of an execution another process will
        write (``reserved_spans``): its ids as text, None if reserving failed."""
        try:
            return self._spans.reserve(parent_context, name)
        except Exception:
            report_internal_error("StatusTracker.reserve_span")
            return None

    def hand_off(self, key: Hashable) -> None:
        """Execution ``key`` goes on in another process (a retried task's next attempt, run by
        whichever worker takes its message): end its span here without a result, keeping its
        status, so that what ran here is exported as it ran, and forget it. No sample and no
        made-up status: the process that takes it over records the time in this status, from
        when it began (the adapter carries that with the work). Never raises."""
        try:
            execution = self.executions.get(key)
            if execution is None:
                return
            at_ns = now_ns()
            with execution.lock:
                if execution.ended:
                    return
                execution.ended = True
                recorded = execution.status
                # A database row keeps its count too, as at exit: the database still holds it.
                change = None if execution.persisted else handed_off(recorded, execution.since_ns)
                if change is not None:
                    self._apply(execution, change, at_ns, None)
            self.executions.forget(key, execution, at_ns)
            if recorded is not None and recorded not in FINAL_STATUSES:
                self._spans.release(execution, recorded, at_ns)
        except Exception:
            report_internal_error("StatusTracker.hand_off")

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
        ``emit_span=False`` keeps the metrics but starts no span (for work the orchestrator,
        or another instrumentation, already traces itself): the status events go to the span
        current at the first status (``parent_context``'s, else the current one) if it records,
        and the histogram is recorded in the current context, so its exemplars lead to it.
        ``timestamp`` is the orchestrator's own time of the change, when it has one
        (unreadable or outside the sane range: now).
        ``previous_status`` and ``previous_since`` are, for a persisted execution, what its
        database says it was in before this change and since when (either may be None).
        On a failed final status, ``error`` (the exception) gives ``error.type`` and the
        exception event; ``error_type`` (a type name, an exception class, or an exception
        whose class it is) gives ``error.type`` without an exception event: for a run that
        went on past a failed step, or an error known only by its name (given with
        ``error``, it names the type instead of the exception's class).
        Never raises: an error of its own is logged once and the change is dropped.
        """
        try:
            if self._sinks.off_here():
                return
        except Exception:
            report_internal_error("StatusTracker.transition")
            return
        self.transition_on(
            key,
            status,
            identity,
            timestamp,
            error,
            error_type,
            parent_context,
            emit_span,
            persisted,
            previous_status,
            previous_since,
        )

    def transition_on(
        self,
        key: Hashable,
        status: Any,
        identity: Identity,
        timestamp: clock.Timestamp | None = None,
        error: BaseException | None = None,
        error_type: Any = None,
        parent_context: Context | None = None,
        emit_span: bool = True,
        persisted: bool = False,
        previous_status: Any = None,
        previous_since: clock.Timestamp | None = None,
    ) -> None:
        """``transition``, for a caller that has just asked ``is_off()`` and been told no: the
        same change, without asking again (the public API asks first, to skip building its
        key and identity when nothing records). Its arguments may be passed by position, in
        this order. Never raises."""
        try:
            current = STATUS_BY_TEXT.get(status) if isinstance(status, str) else None
            if current is None:  # not a member nor one of their spellings: ``to_status`` knows
                current = to_status(status)
            if timestamp is None:
                at_ns = now_ns()
            else:
                at_ns = clock.from_timestamp(timestamp)
                if at_ns is None:
                    at_ns = now_ns()
            execution = self.executions.get(key)
            if execution is None:
                execution = self._create(
                    key, current, at_ns, previous_status, identity, emit_span, persisted
                )
                if execution is None:
                    return
            if execution.persisted:
                self._change_row(
                    key,
                    execution,
                    current,
                    at_ns,
                    previous_status,
                    previous_since,
                    parent_context,
                    error,
                    error_type,
                )
                return
            # Read outside this execution's lock: parent and child locks are never held together.
            # Only the first status of a live execution may open its span.
            inherited_context = (
                self._inherited_context(execution, parent_context)
                if execution.status is None and execution.span is None
                else None
            )
            with execution.lock:
                if execution.ended:
                    return  # ended by another thread (its final status, eviction, exit)
                change = live_change(execution.status, execution.since_ns, current, at_ns)
                if change is None:
                    return
                self._apply(execution, change, at_ns, inherited_context)
                if current not in FINAL_STATUSES:
                    return
                execution.ended = True
            self.executions.forget(key, execution, at_ns)
            self._spans.finish(execution, current, at_ns, error, error_type)
        except Exception:
            report_internal_error("StatusTracker.transition")

    def _change_row(
        self,
        key: Hashable,
        execution: Execution,
        current: ExecutionStatus,
        at_ns: int,
        previous_status: Any,
        previous_since: clock.Timestamp | None,
        parent_context: Context | None,
        error: BaseException | None,
        error_type: Any,
    ) -> None:
        """``transition_on``'s change of a database row: measured from the database's previous
        status when it gives one (``transition_rules.persisted_change``), and any change
        may open its span."""
        stored = None if previous_status is None else to_status(previous_status)
        stored_since = None if previous_since is None else clock.from_timestamp(previous_since)
        # Read outside this execution's lock: parent and child locks are never held together.
        inherited_context = (
            self._inherited_context(execution, parent_context) if execution.span is None else None
        )
        with execution.lock:
            if execution.ended:
                return  # ended by another thread (its final status, eviction, exit)
            change = persisted_change(
                execution.status, execution.since_ns, current, at_ns, stored, stored_since
            )
            if change is None:
                return
            self._apply(execution, change, at_ns, inherited_context)
            if current not in FINAL_STATUSES:
                return
            execution.ended = True
        self.executions.forget(key, execution, at_ns)
        self._spans.finish(execution, current, at_ns, error, error_type)

    # -- internals -------------------------------------------------------------------------

    def _create(
        self,
        key: Hashable,
        current: ExecutionStatus,
        at_ns: int,
        previous_status: Any,
        identity: Identity,
        emit_span: bool,
        persisted: bool,
    ) -> Execution | None:
        """A new execution in flight for ``key``, unless the key has ended and this change
        does not start a new execution (``previous_status``: the database's, as reported); a
        racing creator for the same key wins. Executions pushed out by the in-flight cap end
        here."""
        stored = None if previous_status is None else to_status(previous_status)
        # A late or duplicate event of an ended execution is dropped before anything is built
        # for it (nor its names admitted to the metrics); ``admit`` checks again under the
        # table's lock.
        ended_at = self.executions.ended.get(key)
        if ended_at is not None and not starts_anew(
            bool(persisted), current, at_ns, stored, ended_at
        ):
            return None
        fresh = Execution(identity, emit_span, persisted, self._item_spans)
        try:
            parent = None if fresh.parent_key is None else self.executions.get(fresh.parent_key)
        except Exception:  # a parent key that cannot be looked up (unhashable): no parent
            fresh.parent_key = parent = None
        if fresh.pipeline_name is None and parent is not None:
            fresh.pipeline_name = parent.pipeline_name
        self._metrics.admit(fresh)
        execution, evicted = self.executions.admit(key, fresh, current, at_ns, stored)
        for old_key, old in evicted:
            self._abandon(old_key, old, evicted=True)
        return execution

    def _inherited_context(
        self, execution: Execution, parent_context: Context | None
    ) -> Context | None:
        """The context a span opened by this change would have, for an execution without a
        span yet: the caller's, else the parent execution's (None: the current context).
        Only a change that may open one asks: a live execution's first, a database row's any."""
        if parent_context is not None:  # an empty Context is falsy, yet explicit
            return parent_context
        parent_key = execution.parent_key
        return None if parent_key is None else self.context_of(parent_key)

    def _apply(
        self, execution: Execution, change: Change, at_ns: int, parent_context: Context | None
    ) -> None:
        """Carry out ``change`` (made at ``at_ns``), under the execution's lock: its record
        and ``execution.active`` first, then the SDK calls, each on its own."""
        status, since_ns, leaving, entering, left, left_since_ns, first, first_at_ns = change
        execution.status = status
        execution.since_ns = since_ns
        series = execution.active_series
        self._metrics.move_active(series[leaving], series[entering])
        if first is not None and execution.span is None:
            if execution.wants_span:
                self._spans.open(execution, first, first_at_ns, parent_context)
            elif not execution.emit_span:  # traced by another: its span gets the events
                execution.host_span = self._spans.adopt(parent_context, first, first_at_ns)
            elif not execution.persisted:
                execution.context = parent_context  # an item without a span: its stage's
        if left is not None:
            if left_since_ns is not None:
                self._metrics.record_transition(execution, left, status, at_ns - left_since_ns)
            span = execution.span or execution.host_span
            if span is not None:
                self._spans.status_change(span, left, status, at_ns)

    def _abandon(self, key: Hashable, execution: Execution, *, evicted: bool) -> None:
        """End an execution this process will not see end: pushed out by the in-flight cap
        (``unknown``), or at exit and ``uninstrument()`` (``cancelled``); a database row's
        span ends with the status the row keeps (see ``transition_rules.abandoned``)."""
        at_ns = clock.now_ns()
        with execution.lock:
            if execution.ended:
                return
            execution.ended = True
            recorded = execution.status
            change = abandoned(
                recorded,
                execution.since_ns,
                at_ns,
                persisted=execution.persisted,
                evicted=evicted,
            )
            if change is not None:
                self._apply(execution, change, at_ns, None)
        self.executions.forget(key, execution, at_ns)
        if evicted:
            self._log_eviction()
        if recorded is None or recorded in FINAL_STATUSES:
            return
        if change is None:  # a database row: it keeps its status
            self._spans.release(execution, recorded, at_ns)
        else:  # ended, so its status (unknown or cancelled) changes no more
            self._spans.finish(execution, execution.status, at_ns, None, None)

    def _log_eviction(self) -> None:
        if not self._eviction_logged:
            self._eviction_logged = True
            _LOG.warning(
                "execstatus: more than %d executions in flight; ending the oldest as 'unknown' "
                "(raise max_in_flight if this is expected)",
                self._config.max_in_flight,
            )
