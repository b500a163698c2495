"""routilux 1.1.x: jobs become pipeline runs, routine executions become steps.

Where it hooks, and why there:
- ``routilux.core.hooks.get_execution_hooks`` returns a tee: the user's hooks object (routilux's
  monitoring overwrites the single global one), proxied, with our worker and job callbacks run
  after theirs. Every call site fetches the hooks at call time, so the tee survives
  ``set_execution_hooks``. Routine hooks pass through untouched (a read of one through the
  tee is the user's own bound method), so the breakpoint gate that ``on_routine_start``
  returns keeps its value.
- ``Runtime._check_routine_activation`` sees every routine, including those triggered
  downstream on the worker's event-loop thread, which get no routine hooks at all. A step is
  exactly one execution of the routine's logic (an activation policy saying "not yet", or a
  breakpoint, is no step), its exception seen before routilux logs and swallows it. routilux
  calls the logic as a local variable, fetched as ``routine._logic`` (else ``routine.logic``)
  on entry; so the wrapper only notes the activation for its thread (when anything records:
  else it only asks) and runs the original with the user's routine, and ``Routine._logic``, a
  data descriptor while instrumented, answers that one fetch with the logic observed. Every
  other read gets the routine's own value, and routilux, error handlers, hooks and policies
  get the routine itself. routilux drops what a logic returns (it never awaits or iterates
  it): the step is the call itself.
- ``WorkerManager.start_worker`` is the spawn; ``Runtime.shutdown`` is the drain of every
  worker it cancels, timed when the call waits for the pool.

Status mapping: a posted job is ``queued`` until its first routine runs (so queue time is on
the histogram), then ``running``; ``on_job_end`` gives its final status (``JOB_STATUS``). A
step ends by the outcome of its logic call: ``succeeded`` when it returns, ``failed`` (with
``error.type``) when it raises an exception, ``cancelled`` when it is interrupted
(``KeyboardInterrupt``, ``SystemExit``: routilux does not catch those, its thread pool keeps
them in the task's future). routilux jobs often never end by themselves: jobs still open when
their worker stops end then, ``failed`` if a routine failed, else ``cancelled`` if one was
interrupted or work was still running, else ``succeeded`` (timestamped at their last
routine's end).
"""

from __future__ import annotations

import importlib
import itertools
import sys
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from operator import attrgetter
from types import ModuleType
from typing import Any, Callable, NamedTuple

import wrapt

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.calls import bind, observe_call
from opentelemetry_instrumentation_execstatus.adapters.outcomes import (
    StatusMap,
    outcome_of,
    reported_error,
)
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, OnImport, Patch
from opentelemetry_instrumentation_execstatus.safety import guarded, report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
    WorkerState,
)

JOB_STATUS = StatusMap(
    {
        "pending": ExecutionStatus.PENDING,
        "running": ExecutionStatus.RUNNING,
        "completed": ExecutionStatus.SUCCEEDED,
        "failed": ExecutionStatus.FAILED,
        "cancelled": ExecutionStatus.CANCELLED,
    }
)


_CONTEXT = "routilux.core.context"  # where a step reads its job and execution context
_REGISTRY = "routilux.core.registry"  # where it finds its flow, to name a routine by its id


class _Step(NamedTuple):
    """One running step and what its end updates."""

    key: Hashable
    identity: Identity
    job_id: str | None
    worker_id: str


@dataclass
class _JobLedger:
    """What the adapter must remember of an open job to end it when routilux doesn't."""

    identity: Identity
    worker_id: str
    running_steps: int = 0
    failed: bool = False  # a step raised an exception
    interrupted: bool = False  # a step was interrupted
    last_step_end: clock.Instant | None = None
    worker_stopped: bool = False  # then the job ends as soon as its running steps have
    running: bool = False  # its first step has started: the job is running


class _Drain:
    """One observed ``Runtime.shutdown``: whether it waits, and the workers it cancelled."""

    __slots__ = ("cancelled_workers", "outer", "started", "waits")

    def __init__(self, waits: bool, outer: _Drain | None) -> None:
        self.waits = waits
        self.outer = outer  # a shutdown this one runs inside of, on the same thread
        self.started = time.monotonic()
        self.cancelled_workers = 0


class _Draining(threading.local):
    """Per thread: the shutdown in progress, told of the workers it stops."""

    current: _Drain | None = None


class RoutiluxAdapter(Adapter):
    name = "routilux"
    orchestrator = Orchestrator.ROUTILUX
    top_module = "routilux"
    distribution = "routilux"
    supported = ">= 1.1, < 1.2"

    def __init__(self, telemetry: Any) -> None:
        super().__init__(telemetry)
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobLedger] = {}
        self._worker_steps: dict[str, int] = {}  # running steps of each started worker
        self._step_ids = itertools.count()
        self._draining = _Draining()
        self._pending = _PendingActivation()
        self._tee: _Teed | None = None  # the latest tee, and the hooks it is over
        self._bare_job = self.identity(ExecutionLevel.PIPELINE)  # a job met without its start
        self._off = self._tracker.is_off  # ``is_off``, one call less on every activation check
        # What an activation calls the routine's logic through: each call is one step.
        self.observed_logic = observe_call(
            on_call=self._step_started,
            on_success=self._step_succeeded,
            on_error=self._step_ended,
            # routilux drops what a logic returns: a coroutine or generator it returns is
            # never awaited or iterated, so the step ends with the call.
            follow_result=False,
            name="routilux routine logic",
        )

    def patches(self) -> list[AnyPatch]:
        shutdown = observe_call(
            on_call=self._shutdown_started,
            on_success=lambda drain, _result: self._record_drains(drain, True),
            on_error=lambda drain, _error: self._record_drains(drain, False),
            after_call=self._shutdown_done,
            name="routilux shutdown",
        )
        return [
            Patch("routilux.core.hooks", "get_execution_hooks", self._wrap_get_execution_hooks),
            Patch(
                "routilux.core.runtime", "Runtime._check_routine_activation", self._check_activation
            ),
            OnImport("routilux.core.routine", self._observe_logic_fetch),
            Patch("routilux.core.runtime", "Runtime.shutdown", shutdown),
            Patch("routilux.core.manager", "WorkerManager.start_worker", self.workers.spawn_call()),
        ]

    # -- hooks object ----------------------------------------------------------------------

    def _wrap_get_execution_hooks(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        """Hand routilux the tee over the hooks it returns (the user's, or its own). routilux
        fetches them twice a step: the tee of the same hooks is handed back at once."""
        hooks = wrapped(*args, **kwargs)
        teed = self._tee
        if teed is not None and teed.hooks is hooks:
            return teed.tee
        tee = self._tee_over(hooks)
        return hooks if tee is None else tee

    @guarded
    def _tee_over(self, hooks: Any) -> _TeeHooks:
        tee = _TeeHooks(hooks, self)
        self._tee = _Teed(hooks, tee)
        return tee

    # -- activation checks and steps -------------------------------------------------------

    def _check_activation(
        self, wrapped: Callable[..., Any], _runtime: Any, args: tuple, kwargs: dict
    ) -> Any:
        """Run the activation check with it noted for this thread, as the one whose logic
        fetch the descriptor answers. It is checked on every routine that receives data, so
        the check that nothing records comes first, before any other call: then the check
        runs as it would uninstrumented."""
        try:
            activation = None if self._off() else self._note_activation(args, kwargs)
        except Exception:
            report_internal_error("routilux activation check")
            activation = None
        if activation is None:
            return wrapped(*args, **kwargs)
        try:
            return wrapped(*args, **kwargs)
        finally:
            # One noted by an outer check and not fetched yet is pending again.
            self._pending.activation = activation.outer

    def _note_activation(self, args: tuple, kwargs: dict) -> _Activation:
        """Note the activation for this thread while the original runs, with its arguments."""
        routine, worker_state = bind(_activation_arguments, args, kwargs)
        pending = self._pending
        activation = _Activation(self, routine, worker_state, pending.activation)
        pending.activation = activation
        return activation

    def _observe_logic_fetch(self, module: ModuleType) -> Callable[[], None]:
        """Make ``Routine._logic`` the descriptor that answers routilux's fetch of the logic."""
        routine_class = module.Routine
        if "_logic" in vars(routine_class):
            raise RuntimeError("routilux's Routine._logic is no longer an instance attribute")
        descriptor = _LogicAttribute(self._pending)
        routine_class._logic = descriptor

        def undo() -> None:
            if vars(routine_class).get("_logic") is descriptor:
                del routine_class._logic

        return undo

    def _step_started(self, activation: _Activation, _args: tuple, _kwargs: dict) -> _Step:
        routine, worker_state = activation.routine, activation.worker_state
        # What ``from routilux.core.context import ...`` gives, for a fraction of its cost.
        routilux_context = sys.modules.get(_CONTEXT) or importlib.import_module(_CONTEXT)
        context = routilux_context.get_current_execution_context()
        routine_id = context.routine_id if context is not None else None
        if not routine_id:
            routine_id = _routine_id(routine, worker_state)
        job = routilux_context.get_current_job()
        job_id = getattr(job, "job_id", None)
        job_key = self.key("job", job_id) if job_id else None
        worker_id = worker_state.worker_id
        with self._lock:
            ledger = self._jobs.get(job_id) if job_id else None
            # Only an open job's first step makes it running: after its end, a step of the
            # same job id would otherwise start it anew.
            job_starts = ledger is not None and not ledger.running
            if ledger is not None:
                ledger.running_steps += 1
                ledger.running = True
            worker_steps = self._worker_steps.get(worker_id)
            if worker_steps is not None:
                self._worker_steps[worker_id] = worker_steps + 1
        if worker_steps == 0:
            self.workers.set_state(self.key("worker", worker_id), WorkerState.BUSY)
        if job_starts:
            self.report(job_key, ExecutionStatus.RUNNING, ledger.identity)
        identity = self.identity(
            ExecutionLevel.STEP,
            name=routine_id,
            pipeline=getattr(job, "flow_id", None) or worker_state.flow_id,
            parent=job_key,
        )
        step = _Step(self.key("step", next(self._step_ids)), identity, job_id, worker_id)
        self.report(step.key, ExecutionStatus.RUNNING, identity)
        return step

    def _step_succeeded(self, step: _Step, _result: Any) -> None:
        self._step_ended(step, None)

    def _step_ended(self, step: _Step, error: BaseException | None) -> None:
        """End the step by the outcome of its logic call (``Adapter.end``'s rule), then its
        job's ledger and its worker's state."""
        ended = clock.now()
        outcome = outcome_of(error)
        self.report(step.key, outcome, step.identity, timestamp=ended, error=reported_error(error))
        unfinished_job = None
        with self._lock:
            ledger = self._jobs.get(step.job_id) if step.job_id else None
            if ledger is not None:
                ledger.running_steps = max(0, ledger.running_steps - 1)
                ledger.failed = ledger.failed or outcome is ExecutionStatus.FAILED
                ledger.interrupted = ledger.interrupted or outcome is ExecutionStatus.CANCELLED
                ledger.last_step_end = ended
                if ledger.worker_stopped and ledger.running_steps == 0:
                    unfinished_job = self._jobs.pop(step.job_id)  # type: ignore[arg-type]
            worker_steps = self._worker_steps.get(step.worker_id)
            if worker_steps is not None:
                self._worker_steps[step.worker_id] = max(0, worker_steps - 1)
        if worker_steps == 1:
            self.workers.set_state(self.key("worker", step.worker_id), WorkerState.AVAILABLE)
        if unfinished_job is not None:
            self._end_unfinished_job(step.job_id, unfinished_job)  # type: ignore[arg-type]

    # -- shutdown: drains ------------------------------------------------------------------

    def _shutdown_started(self, _runtime: Any, args: tuple, kwargs: dict) -> _Drain | None:
        """A shutdown cancels every worker: a drain each, complete once the pool is waited."""
        if self.workers.is_off():
            return None
        drain = _Drain(bind(_shutdown_waits, args, kwargs), self._draining.current)
        self._draining.current = drain
        return drain

    def _record_drains(self, drain: _Drain, success: bool) -> None:
        seconds = time.monotonic() - drain.started if success and drain.waits else None
        for _ in range(drain.cancelled_workers):
            self.workers.drain(success, seconds)

    def _shutdown_done(self, drain: _Drain) -> None:
        self._draining.current = drain.outer

    # -- hooks (called by the tee after the user's hooks) ----------------------------------

    @guarded
    def on_worker_start(self, flow: Any, worker_state: Any) -> None:
        worker_id = worker_state.worker_id
        with self._lock:
            self._worker_steps[worker_id] = 0
        self.workers.set_state(self.key("worker", worker_id), WorkerState.AVAILABLE)

    @guarded
    def on_worker_stop(self, flow: Any, worker_state: Any, status: str) -> None:
        worker_id = worker_state.worker_id
        idle_jobs = []
        with self._lock:
            known = self._worker_steps.pop(worker_id, None) is not None
            for job_id, ledger in list(self._jobs.items()):
                if ledger.worker_id != worker_id:
                    continue
                if ledger.running_steps:
                    ledger.worker_stopped = True  # ended by its last running step
                else:
                    idle_jobs.append((job_id, self._jobs.pop(job_id)))
        for job_id, ledger in idle_jobs:
            self._end_unfinished_job(job_id, ledger)
        if not known:
            return  # routilux calls on_worker_stop twice; the first one counts
        self.workers.health_check(status != "failed")
        self.workers.set_state(self.key("worker", worker_id), None)
        drain = self._draining.current
        if drain is not None and status == "cancelled":
            drain.cancelled_workers += 1

    @guarded
    def on_job_start(self, job_context: Any, worker_state: Any) -> None:
        job_id = job_context.job_id
        identity = self.identity(
            ExecutionLevel.PIPELINE, pipeline=job_context.flow_id, run_id=job_id
        )
        with self._lock:
            self._jobs[job_id] = _JobLedger(identity, worker_state.worker_id)
            self._bound_jobs()
        self.report(self.key("job", job_id), ExecutionStatus.QUEUED, identity)

    @guarded
    def on_job_end(
        self, job_context: Any, worker_state: Any, status: Any = "completed", error: Any = None
    ) -> None:
        job_id = job_context.job_id
        with self._lock:
            ledger = self._jobs.pop(job_id, None)
        if self._off():
            return  # the report would record nothing: its status is not read either
        identity = self._bare_job if ledger is None else ledger.identity
        self.report(
            self.key("job", job_id), JOB_STATUS(status), identity, error=reported_error(error)
        )

    def _end_unfinished_job(self, job_id: str, ledger: _JobLedger) -> None:
        finished_work = ledger.running_steps == 0 and ledger.last_step_end is not None
        if ledger.failed:
            status = ExecutionStatus.FAILED
        elif ledger.interrupted or not finished_work:
            status = ExecutionStatus.CANCELLED
        else:
            status = ExecutionStatus.SUCCEEDED
        timestamp = ledger.last_step_end if finished_work else None
        self.report(self.key("job", job_id), status, ledger.identity, timestamp=timestamp)

    def _bound_jobs(self) -> None:
        """Forget the oldest ledgers beyond the in-flight cap (called with the lock held)."""
        while len(self._jobs) > self.max_in_flight:
            del self._jobs[next(iter(self._jobs))]


class _Teed(NamedTuple):
    """A tee and the hooks it is over, read together (the tee's own attributes are slow to
    read: each goes through the proxy)."""

    hooks: Any
    tee: _TeeHooks


def _forwarded(name: str) -> property:
    """Hook ``name`` of the user's hooks object, read (set, deleted) through the tee as the
    proxy would: the user's own bound method. Declared on the tee's class, a read is found
    at once, where the proxy would first fail to find it on itself (an ``AttributeError``
    made and cleared) and only then turn to the hooks: routilux reads these on every step."""

    def set_hook(tee: Any, value: Any) -> None:
        setattr(tee.__wrapped__, name, value)

    def delete_hook(tee: Any) -> None:
        delattr(tee.__wrapped__, name)

    return property(attrgetter(f"__wrapped__.{name}"), set_hook, delete_hook)


class _TeeHooks(wrapt.ObjectProxy):  # type: ignore[misc]
    """The user's hooks object, unchanged, with our worker and job callbacks run after it."""

    on_routine_start = _forwarded("on_routine_start")
    on_routine_end = _forwarded("on_routine_end")
    on_event_emit = _forwarded("on_event_emit")
    on_slot_before_enqueue = _forwarded("on_slot_before_enqueue")

    def __init__(self, hooks: Any, adapter: RoutiluxAdapter) -> None:
        super().__init__(hooks)
        self._self_adapter = adapter

    def on_worker_start(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.on_worker_start(*args, **kwargs)
        finally:
            self._self_adapter.on_worker_start(*args, **kwargs)

    def on_worker_stop(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.on_worker_stop(*args, **kwargs)
        finally:
            self._self_adapter.on_worker_stop(*args, **kwargs)

    def on_job_start(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.on_job_start(*args, **kwargs)
        finally:
            self._self_adapter.on_job_start(*args, **kwargs)

    def on_job_end(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.on_job_end(*args, **kwargs)
        finally:
            self._self_adapter.on_job_end(*args, **kwargs)


class _Activation:
    """One activation check of one routine: called in place of its logic, the call is a step."""

    __slots__ = ("adapter", "logic", "outer", "routine", "worker_state")

    def __init__(
        self,
        adapter: RoutiluxAdapter,
        routine: Any,
        worker_state: Any,
        outer: _Activation | None,
    ) -> None:
        self.adapter = adapter
        self.routine = routine
        self.worker_state = worker_state
        self.outer = outer
        self.logic: Callable[..., Any] | None = None  # given by the descriptor, on the fetch

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.adapter.observed_logic(self.logic, self, args, kwargs)


class _PendingActivation(threading.local):
    """Per thread: the activation check whose logic routilux has not fetched yet."""

    activation: _Activation | None = None


_NO_VALUE = object()


class _LogicAttribute:
    """``Routine._logic`` while instrumented: a data descriptor over the instance's own value.

    The first read of a routine's ``_logic`` inside its activation check is routilux fetching
    the logic it is about to call (nothing else runs before it but the ``_activation_policy``
    read): that read gets the activation, which calls the logic as a step. It stands for
    ``routine.logic`` too when ``_logic`` is None, as routilux would fall back to it. Every other
    read, write and delete is the plain instance attribute's, and the instance dict keeps it.
    """

    def __init__(self, pending: _PendingActivation) -> None:
        self._pending = pending

    def __get__(self, routine: Any, owner: type | None = None) -> Any:
        if routine is None:
            return self
        activation = self._pending.activation
        if activation is None or activation.routine is not routine:
            try:
                return routine.__dict__["_logic"]
            except KeyError:
                raise _no_logic(routine) from None
        logic = routine.__dict__.get("_logic", _NO_VALUE)
        self._pending.activation = None  # only routilux's fetch is answered
        if logic is _NO_VALUE or logic is None:
            logic = getattr(routine, "logic", None)
            if not callable(logic):
                return None
        activation.logic = logic
        return activation

    def __set__(self, routine: Any, value: Any) -> None:
        routine.__dict__["_logic"] = value

    def __delete__(self, routine: Any) -> None:
        try:
            del routine.__dict__["_logic"]
        except KeyError:
            raise _no_logic(routine) from None


def _no_logic(routine: Any) -> AttributeError:
    """What reading or deleting a missing ``_logic`` raises without the descriptor."""
    return AttributeError(f"{type(routine).__name__!r} object has no attribute '_logic'")


def _routine_id(routine: Any, worker_state: Any) -> str | None:
    """What routilux 1.1's ``Runtime._get_routine_id`` answers: the routine's id in the flow
    registered under the worker's flow id. Read here without the import statement that
    method runs on every call, most of its cost."""
    registry = sys.modules.get(_REGISTRY) or importlib.import_module(_REGISTRY)
    flow = registry.FlowRegistry.get_instance().get(worker_state.flow_id)
    return flow._get_routine_id(routine) if flow else None


def _activation_arguments(routine: Any, worker_state: Any, *_: Any, **__: Any) -> tuple[Any, Any]:
    return routine, worker_state


def _shutdown_waits(wait: bool = True, *_: Any, **__: Any) -> bool:
    """Whether a shutdown so called waits for its pool: routilux's ``wait``, its first
    parameter; the others (``timeout``, and any a later routilux adds) don't change that."""
    return bool(wait)
