"""loom-kernel 9.x (``loom.etl``): pipelines become runs, processes stages, steps steps.

Where it hooks, and why there:
- ``ObservabilityRuntime.emit``: every lifecycle event of loom's ETL executor passes through it,
  START on entry and END or ERROR on exit of each pipeline, process and step, with loom's own
  ids (``run_id``, ``process_run_id``, ``step_run_id``) and correlation id; an ERROR is emitted
  from inside the ``except`` that holds the exception. Our part runs just before the observers:
  loom starts its clock before emitting START and stops it before emitting END, so spans and
  histogram cover what loom's ``duration_ms`` covers (an observer writing lineage at END is not
  the step's time). Observers receive the same immutable event whatever our part does.
- ``ETLExecutor.run_pipeline`` / ``run_process`` / ``run_step`` set a ``_Call`` in a context
  variable for the length of each call, and only events of the call in progress are tracked.
  The call is the execution (loom's run id comes from the caller and repeats across retries and
  re-runs; it is an attribute, never a key), and its enclosing call is the parent. It also
  holds what ``emit`` cannot see: the OpenTelemetry context current when the call began (inside
  ``emit``, loom's own span is current, a no-op one by default, which would cut a run off from
  the caller's span) and the run's attempt (loom puts it on pipeline events only); and it ends
  an execution that an exception left without a closing event: loom emits none for
  ``KeyboardInterrupt`` or ``SystemExit``, nor when building the ERROR event itself fails.
  loom's ``ThreadDispatcher`` runs each parallel task in a copy of the caller's context, so a
  step in a pool thread has its own call under its process's. When nothing records, no call
  is set and ``emit`` tracks nothing.

Status mapping: START is ``running``; END ``succeeded``; ERROR ``failed``, with ``error.type``
the exception's class (and an exception event) on the step and on each process and pipeline it
fails. A call left by an exception with its execution still open ends by ``outcome_of``: an
interrupt (``KeyboardInterrupt``, ``SystemExit``) ends the step and every process and pipeline
it unwinds ``cancelled``, with no ``error.type``; an ``Exception`` (loom failed to build its
ERROR event) ``failed``. Levels: pipeline -> ``pipeline``, process -> ``stage``, step -> ``step``.

When loom traces itself (OTEL enabled in its observability config, or ``tracer=`` given to
``ObservabilityRuntime``), its ``pipeline:X`` / ``process:X`` / ``step:X`` span is current when
START is emitted. If that span records, this execution gets no span of ours (no doubled trace),
and its histogram samples are recorded in loom's span context, so exemplars lead to loom's trace.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Hashable
from contextvars import ContextVar, Token
from functools import partial
from typing import Any

from opentelemetry_instrumentation_execstatus import tracing
from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.calls import bind, observe_call
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

# loom's ETL scopes (``Scope`` values) and the executor method of each; events of other
# scopes (read, write...) are ignored.
LEVEL_BY_SCOPE: dict[str, ExecutionLevel] = {
    "pipeline": ExecutionLevel.PIPELINE,
    "process": ExecutionLevel.STAGE,
    "step": ExecutionLevel.STEP,
}


class _Call:
    """One ``ETLExecutor.run_*`` call in progress: the execution it starts, and its parent's."""

    __slots__ = ("attempt", "entry_context", "identity", "key", "parent", "scope", "token")

    def __init__(
        self, scope: str, parent: _Call | None, entry_context: tracing.Context, attempt: Any
    ) -> None:
        self.scope = scope
        self.parent = parent  # the executor call this one runs in (a step's process...)
        self.entry_context = entry_context
        self.attempt = attempt
        self.key: Hashable | None = None  # the execution this call started, set on START
        self.identity: Identity | None = None
        self.token: Token[_Call | None] | None = None


_CALLS: ContextVar[_Call | None] = ContextVar("execstatus_loom_call", default=None)


class LoomAdapter(Adapter):
    name = "loom"
    orchestrator = Orchestrator.LOOM
    top_module = "loom"
    distribution = "loom-kernel"
    supported = ">= 9.0, < 10"

    def __init__(self, telemetry: Telemetry) -> None:
        super().__init__(telemetry)
        self._serials = itertools.count()

    def patches(self) -> list[Patch]:
        executor = "loom.etl.executor._executor"
        emit = observe_call(on_call=self._on_emit, name="loom emit")
        return [
            Patch("loom.core.observability.runtime", "ObservabilityRuntime.emit", emit),
            *(
                Patch(executor, f"ETLExecutor.run_{scope}", self._run_wrapper(scope))
                for scope in LEVEL_BY_SCOPE
            ),
        ]

    def _run_wrapper(self, scope: str) -> Any:
        return observe_call(
            on_call=partial(self._entered, scope),
            on_error=self._unwound,
            after_call=_left,
            name=f"loom run_{scope}",
        )

    # -- executor calls ----------------------------------------------------------------------

    def _entered(self, scope: str, _executor: Any, args: tuple, kwargs: dict) -> _Call | None:
        if self.is_off():
            return None
        run_context = bind(_run_arguments, args, kwargs)
        # No RunContext: loom makes a fresh one, whose attempt is 1.
        attempt = getattr(run_context, "attempt", 1)
        call = _Call(scope, _CALLS.get(), tracing.current_context(), attempt)
        call.token = _CALLS.set(call)
        return call

    def _unwound(self, call: _Call, error: BaseException) -> None:
        """An exception left the call: end its execution if loom emitted no closing event."""
        if call.key is not None and self.status_of(call.key) is not None:
            self.end(call.key, call.identity, error)

    # -- events ------------------------------------------------------------------------------

    def _on_emit(self, runtime: Any, args: tuple, kwargs: dict) -> None:
        """Track the event before loom's observers see it. Nothing is needed after ``emit``,
        so this returns None and the call itself runs unobserved."""
        call = _CALLS.get()
        if call is None:
            return None
        event = bind(_emit_arguments, args, kwargs)
        if str(event.scope) != call.scope:
            return None  # not an event of the executor call in progress (read, write...)
        if str(event.kind) == "start":
            if call.key is None:
                self._started(runtime, event, call)
        elif call.key is not None:  # else its START was not tracked: no span from an end
            self._ended(event, call)
        return None

    def _started(self, runtime: Any, event: Any, call: _Call) -> None:
        level = LEVEL_BY_SCOPE[call.scope]
        parent = call.parent.key if call.parent is not None else None
        call.key = self.key(next(self._serials))
        call.identity = self.identity(
            level,
            name=event.name,
            pipeline=event.name if level is ExecutionLevel.PIPELINE else None,
            run_id=event.id,
            attempt=call.attempt,
            parent=parent,
            correlation_id=event.correlation_id,
        )
        traced_by_loom = _traced_by_loom(runtime)
        parent_context = None
        if not traced_by_loom:
            # The parent execution's span; else (a run, or a step run on its own) the caller's.
            parent_context = None if parent is None else self.context_of(parent)
            if parent_context is None:
                parent_context = call.entry_context
        self.report(
            call.key,
            ExecutionStatus.RUNNING,
            call.identity,
            parent_context=parent_context,
            emit_span=not traced_by_loom,
        )

    def _ended(self, event: Any, call: _Call) -> None:
        if str(event.kind) != "error" and str(event.status) != "failure":
            self.report(call.key, ExecutionStatus.SUCCEEDED, call.identity)
            return
        error_type = event.meta.get("error_type")
        handled = _handled_error(error_type)
        self.report(
            call.key,
            ExecutionStatus.FAILED,
            call.identity,
            error=handled,
            error_type=error_type if handled is None else None,
        )


def _run_arguments(plan: Any = None, params: Any = None, ctx: Any = None) -> Any:
    """``ETLExecutor.run_*(plan, params, ctx)``: the ``RunContext``."""
    return ctx


def _emit_arguments(event: Any) -> Any:
    """``ObservabilityRuntime.emit(event)``: the event."""
    return event


def _left(call: _Call) -> None:
    _CALLS.reset(call.token)


def _traced_by_loom(runtime: Any) -> bool:
    """Whether loom's own span for the event being emitted records: it is current in emit."""
    if tracing.is_no_op_tracer(getattr(runtime, "tracer", None)):
        return False
    return tracing.current_span_records()


def _handled_error(error_type: Any) -> BaseException | None:
    """The exception loom is handling as it emits ERROR, if its class is ``error_type``
    (loom's event carries the class name only)."""
    handled = sys.exc_info()[1]
    if handled is not None and type(handled).__name__ == error_type:
        return handled
    return None
