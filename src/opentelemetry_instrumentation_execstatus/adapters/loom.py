"""loom-kernel 9.x (``loom.etl``): pipelines become runs, processes stages, steps steps.

Where it hooks, and why there:
- ``ObservabilityRuntime.emit``: every lifecycle event of loom's ETL executor passes through it,
  START on entry and END or ERROR on exit of each pipeline, process and step, with loom's own
  ids (``run_id``, ``process_run_id``, ``step_run_id``) and correlation id; an ERROR is emitted
  from inside the ``except`` that holds the exception. Our part runs just before the observers:
  loom starts its clock before emitting START and stops it before emitting END, so spans and
  histogram cover what loom's ``duration_ms`` covers (an observer writing lineage at END is not
  the step's time). Observers receive the same immutable event whatever our part does.
- ``ETLExecutor.run_pipeline`` / ``run_process`` / ``run_step`` bracket each call with a frame
  in a context variable, and only events of the call in progress are tracked. The frame is the
  execution's identity (loom's run id comes from the caller and repeats across retries and
  re-runs; it is an attribute, never a key), and its enclosing frame is the parent. It also
  holds what ``emit`` cannot see: the OpenTelemetry context current when the call began (inside
  ``emit``, loom's own span is current, a no-op one by default, which would cut a run off from
  the caller's span) and the run's attempt (loom puts it on pipeline events only); and it ends
  an execution that an exception left without a closing event: loom emits none for
  ``KeyboardInterrupt`` or ``SystemExit`` (``cancelled``), nor when building the ERROR event
  itself fails (``failed``). loom's ``ThreadDispatcher`` runs each parallel task in a copy of
  the caller's context, so a step in a pool thread has its own frame under its process's.

Status mapping: START is ``running``; END ``succeeded``; ERROR ``failed``, with ``error.type``
the exception's class (and an exception event) on the step and on each process and pipeline it
fails. Levels: pipeline -> ``pipeline``, process -> ``stage``, step -> ``step``.

When loom traces itself (OTEL enabled in its observability config, or ``tracer=`` given to
``ObservabilityRuntime``), its ``pipeline:X`` / ``process:X`` / ``step:X`` span is current when
START is emitted. If that span records, this execution gets no span of ours (no doubled trace),
and its histogram samples are recorded in loom's span context, so exemplars lead to loom's trace.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Hashable
from contextvars import ContextVar
from functools import partial
from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NoOpTracer

from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.safety import guarded
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)

LOOM = Orchestrator.LOOM

# loom's ETL scopes (``Scope`` values); events of other scopes (read, write...) are ignored.
LEVEL_BY_SCOPE: dict[str, ExecutionLevel] = {
    "pipeline": ExecutionLevel.PIPELINE,
    "process": ExecutionLevel.STAGE,
    "step": ExecutionLevel.STEP,
}


class _Call:
    """One ``ETLExecutor.run_*`` call in progress: the execution it starts, and its parent's."""

    __slots__ = ("attempt", "entry_context", "key", "parent", "scope")

    def __init__(
        self,
        scope: str,
        parent: _Call | None,
        entry_context: otel_context.Context,
        attempt: int,
    ) -> None:
        self.scope = scope
        self.parent = parent  # the executor call this one runs in (a step's process...)
        self.entry_context = entry_context
        self.attempt = attempt
        self.key: Hashable | None = None  # the execution this call started, set on START


_CALLS: ContextVar[_Call | None] = ContextVar("execstatus_loom_call", default=None)


class LoomAdapter(Adapter):
    name = "loom"
    orchestrator = Orchestrator.LOOM
    top_module = "loom"
    distribution = "loom-kernel"
    supported = ">= 9.0, < 10"

    def __init__(self, telemetry: Any) -> None:
        super().__init__(telemetry)
        self._tracker = telemetry.tracker
        self._serials = itertools.count()

    def patches(self) -> list[Patch]:
        executor = "loom.etl.executor._executor"
        return [
            Patch("loom.core.observability.runtime", "ObservabilityRuntime.emit", self._wrap_emit),
            *(
                Patch(executor, f"ETLExecutor.run_{scope}", partial(self._wrap_run, scope))
                for scope in LEVEL_BY_SCOPE
            ),
        ]

    # -- wrappers --------------------------------------------------------------------------

    def _wrap_emit(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        self._on_event(instance, *args, **kwargs)
        return wrapped(*args, **kwargs)

    def _wrap_run(
        self,
        scope: str,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple,
        kwargs: dict,
    ) -> Any:
        call = _new_call(scope, *args, **kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        token = _CALLS.set(call)
        try:
            return wrapped(*args, **kwargs)
        except BaseException as error:
            self._unwound(call, error)
            raise
        finally:
            _CALLS.reset(token)

    # -- events ----------------------------------------------------------------------------

    @guarded
    def _on_event(self, runtime: Any, event: Any) -> None:
        scope = str(event.scope)
        level = LEVEL_BY_SCOPE.get(scope)
        call = _CALLS.get()
        if level is None or call is None or call.scope != scope:
            return  # not an event of the executor call in progress (emitted by other code)
        if str(event.kind) == "start":
            if call.key is None:
                self._started(runtime, event, call, level)
            return
        if call.key is None:
            return  # its START came before instrument(): no span from its end alone
        failed = str(event.kind) == "error" or str(event.status) == "failure"
        self._tracker.transition(
            call.key,
            ExecutionStatus.FAILED if failed else ExecutionStatus.SUCCEEDED,
            orchestrator=LOOM,
            level=level,
            error=_error_of(event) if failed else None,
        )

    def _started(self, runtime: Any, event: Any, call: _Call, level: ExecutionLevel) -> None:
        call.key = ("loom", next(self._serials))
        parent_key = call.parent.key if call.parent is not None else None
        traced_by_loom = _traced_by_loom(runtime)
        parent_context = None
        if not traced_by_loom:
            # The parent execution's span; else (a run, or a step run on its own) the caller's.
            if parent_key is not None:
                parent_context = self._tracker.context_of(parent_key)
            if parent_context is None:
                parent_context = call.entry_context
        self._tracker.transition(
            call.key,
            ExecutionStatus.RUNNING,
            orchestrator=LOOM,
            level=level,
            name=event.name,
            pipeline_name=event.name if level is ExecutionLevel.PIPELINE else None,
            parent_key=parent_key,
            parent_context=parent_context,
            run_id=event.id,
            attempt=call.attempt,
            correlation_id=event.correlation_id,
            emit_span=not traced_by_loom,
        )

    @guarded
    def _unwound(self, call: _Call, error: BaseException) -> None:
        """End the execution a call started if an exception left the call with it in flight.

        loom emits ERROR only for an ``Exception``: a ``KeyboardInterrupt`` or ``SystemExit``
        leaves every level without a closing event; those executions end ``cancelled``.
        An ``Exception`` here means loom failed to emit its ERROR: ``failed``.
        """
        if call.key is None or self._tracker.status_of(call.key) is None:
            return
        failed = isinstance(error, Exception)
        self._tracker.transition(
            call.key,
            ExecutionStatus.FAILED if failed else ExecutionStatus.CANCELLED,
            orchestrator=LOOM,
            level=LEVEL_BY_SCOPE[call.scope],
            error=error if failed else None,
        )


@guarded
def _new_call(scope: str, plan: Any = None, params: Any = None, ctx: Any = None) -> _Call:
    # No RunContext: loom makes a fresh one, whose attempt is 1.
    return _Call(scope, _CALLS.get(), otel_context.get_current(), getattr(ctx, "attempt", 1))


def _traced_by_loom(runtime: Any) -> bool:
    """Whether loom's own span for the event being emitted records: it is current in emit."""
    if isinstance(getattr(runtime, "tracer", None), NoOpTracer):
        return False
    return trace.get_current_span().is_recording()


def _error_of(event: Any) -> BaseException | str | None:
    """The exception loom is handling as it emits ERROR (checked by class name), else the name."""
    error_type = event.meta.get("error_type")
    handled = sys.exc_info()[1]
    if handled is not None and type(handled).__name__ == error_type:
        return handled
    return error_type
