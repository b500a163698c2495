"""routilux 1.1.x: jobs become pipeline runs, routine executions become steps.

Where it hooks, and why there:
- ``routilux.core.hooks.get_execution_hooks`` returns a tee: the user's hooks object (routilux's
  monitoring overwrites the single global one), proxied, with our worker and job callbacks run
  after theirs. Every call site fetches the hooks at call time, so the tee survives
  ``set_execution_hooks``. Routine hooks pass through untouched, so the breakpoint gate that
  ``on_routine_start`` returns keeps its value.
- ``Runtime._check_routine_activation`` sees every routine, including those triggered
  downstream on the worker's event-loop thread, which get no routine hooks at all. A step is
  exactly one execution of the routine's logic (an activation policy saying "not yet", or a
  breakpoint, is no step), its exception seen before routilux logs and swallows it. routilux
  calls the logic as a local variable, fetched as ``routine._logic`` (else ``routine.logic``)
  on entry; so the wrapper only notes the activation for its thread and runs the original
  with the user's routine, and ``Routine._logic``, a data descriptor while instrumented,
  answers that one fetch with the logic observed. Every other read gets the routine's own
  value, and routilux, error handlers, hooks and policies get the routine itself.
- ``WorkerManager.start_worker`` is the spawn; ``Runtime.shutdown`` is the drain.

Status mapping: a posted job is ``queued`` until its first routine runs (so queue time is on
the histogram), then ``running``; ``on_job_end`` gives its final status. routilux jobs often
never end by themselves: jobs still open when their worker stops end then, ``failed`` if a
routine failed, else ``succeeded`` if all their work had finished (timestamped at their last
routine's end), else ``cancelled``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import wrapt

from opentelemetry_instrumentation_execstatus import clock
from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, OnImport, Patch
from opentelemetry_instrumentation_execstatus.safety import guarded
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
    WorkerOutcome,
    WorkerState,
)

ROUTILUX = Orchestrator.ROUTILUX

JOB_STATUS: dict[str, ExecutionStatus] = {
    "pending": ExecutionStatus.PENDING,
    "running": ExecutionStatus.RUNNING,
    "completed": ExecutionStatus.SUCCEEDED,
    "failed": ExecutionStatus.FAILED,
    "cancelled": ExecutionStatus.CANCELLED,
}


def _job_key(job_id: str) -> Hashable:
    return ("routilux", "job", job_id)


@dataclass
class _JobLedger:
    """What the adapter must remember of an open job to end it when routilux doesn't."""

    worker_id: str
    running_steps: int = 0
    failed: bool = False
    last_step_end: clock.Instant | None = None
    worker_stopped: bool = False  # then the job ends as soon as its running steps have
    running: bool = False  # its first step has started: the job is running


@dataclass
class _WorkerLedger:
    running_steps: int = 0


class RoutiluxAdapter(Adapter):
    name = "routilux"
    orchestrator = Orchestrator.ROUTILUX
    top_module = "routilux"
    distribution = "routilux"
    supported = ">= 1.1, < 1.2"

    def __init__(self, telemetry: Any) -> None:
        super().__init__(telemetry)
        self._tracker = telemetry.tracker
        self._workers = telemetry.workers
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobLedger] = {}
        self._worker_ledgers: dict[str, _WorkerLedger] = {}
        self._step_ids = itertools.count()
        self._draining = threading.local()
        self._pending = _PendingActivation()
        self._tee: _TeeHooks | None = None

    def patches(self) -> list[AnyPatch]:
        return [
            Patch("routilux.core.hooks", "get_execution_hooks", self._wrap_get_execution_hooks),
            Patch(
                "routilux.core.runtime",
                "Runtime._check_routine_activation",
                self._wrap_check_routine_activation,
            ),
            OnImport("routilux.core.routine", self._observe_logic_fetch),
            Patch("routilux.core.runtime", "Runtime.shutdown", self._wrap_shutdown),
            Patch("routilux.core.manager", "WorkerManager.start_worker", self._wrap_start_worker),
        ]

    # -- wrappers --------------------------------------------------------------------------

    def _wrap_get_execution_hooks(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        hooks = wrapped(*args, **kwargs)
        tee = self._tee
        if tee is None or tee.__wrapped__ is not hooks:
            tee = self._tee = _TeeHooks(hooks, self)
        return tee

    def _wrap_check_routine_activation(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        """Note the activation for this thread while the original runs, with its arguments."""
        try:
            routine, worker_state = _routine_and_worker_state(*args, **kwargs)
        except Exception:
            return wrapped(*args, **kwargs)  # an unexpected call shape: leave it alone
        pending = self._pending
        outer = pending.activation  # one whose logic is not fetched yet, should it run ours
        pending.activation = _Activation(self, routine, instance, worker_state)
        try:
            return wrapped(*args, **kwargs)
        finally:
            pending.activation = outer

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

    def _wrap_start_worker(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        try:
            worker_state = wrapped(*args, **kwargs)
        except BaseException:
            self._workers.spawn(ROUTILUX, WorkerOutcome.FAILURE)
            raise
        self._workers.spawn(ROUTILUX, WorkerOutcome.SUCCESS)
        return worker_state

    def _wrap_shutdown(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        """A shutdown cancels every worker: a drain, complete once the pool has been waited."""
        wait = _shutdown_waits(*args, **kwargs)
        drained: list[str] = []
        self._draining.workers = drained
        started = time.monotonic()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException:
            self._record_drains(drained, WorkerOutcome.FAILURE, None)
            raise
        finally:
            self._draining.workers = None
        self._record_drains(
            drained, WorkerOutcome.SUCCESS, time.monotonic() - started if wait else None
        )
        return result

    @guarded
    def _record_drains(
        self, drained: list[str], outcome: WorkerOutcome, seconds: float | None
    ) -> None:
        for _ in drained:
            self._workers.drain(ROUTILUX, outcome, seconds)

    # -- steps -----------------------------------------------------------------------------

    @guarded
    def step_started(
        self, routine: Any, runtime: Any, worker_state: Any
    ) -> tuple[Hashable, str | None, str] | None:
        from routilux.core.context import get_current_execution_context, get_current_job

        context = get_current_execution_context()
        routine_id = context.routine_id if context is not None else None
        if not routine_id:
            routine_id = runtime._get_routine_id(routine, worker_state)
        job = get_current_job()
        job_id = getattr(job, "job_id", None)
        worker_id = worker_state.worker_id
        step_key = ("routilux", "step", next(self._step_ids))
        with self._lock:
            ledger = self._jobs.get(job_id) if job_id else None
            # Only an open job's first step makes it running: after its end, a step of the
            # same job id would otherwise start it anew.
            job_starts = ledger is not None and not ledger.running
            if ledger is not None:
                ledger.running_steps += 1
                ledger.running = True
            worker = self._worker_ledgers.get(worker_id)
            worker_became_busy = worker is not None and worker.running_steps == 0
            if worker is not None:
                worker.running_steps += 1
        if worker_became_busy:
            self._workers.set_state(("routilux", worker_id), ROUTILUX, WorkerState.BUSY)
        if job_starts:
            self._tracker.transition(
                _job_key(job_id), ExecutionStatus.RUNNING,
                orchestrator=ROUTILUX, level=ExecutionLevel.PIPELINE,
            )  # fmt: skip
        self._tracker.transition(
            step_key,
            ExecutionStatus.RUNNING,
            orchestrator=ROUTILUX,
            level=ExecutionLevel.STEP,
            name=routine_id,
            pipeline_name=getattr(job, "flow_id", None) or worker_state.flow_id,
            parent_key=_job_key(job_id) if job_id else None,
        )
        return step_key, job_id, worker_id

    @guarded
    def step_ended(
        self, step: tuple[Hashable, str | None, str] | None, error: BaseException | None
    ) -> None:
        if step is None:
            return
        step_key, job_id, worker_id = step
        ended = clock.now()
        status = ExecutionStatus.SUCCEEDED if error is None else ExecutionStatus.FAILED
        self._tracker.transition(
            step_key, status,
            orchestrator=ROUTILUX, level=ExecutionLevel.STEP, timestamp=ended, error=error,
        )  # fmt: skip
        unfinished_job = None
        with self._lock:
            ledger = self._jobs.get(job_id) if job_id else None
            if ledger is not None:
                ledger.running_steps = max(0, ledger.running_steps - 1)
                ledger.failed = ledger.failed or error is not None
                ledger.last_step_end = ended
                if ledger.worker_stopped and ledger.running_steps == 0:
                    unfinished_job = self._jobs.pop(job_id)
            worker = self._worker_ledgers.get(worker_id)
            worker_became_idle = worker is not None and worker.running_steps == 1
            if worker is not None:
                worker.running_steps = max(0, worker.running_steps - 1)
        if worker_became_idle:
            self._workers.set_state(("routilux", worker_id), ROUTILUX, WorkerState.AVAILABLE)
        if unfinished_job is not None and job_id:
            self._end_unfinished_job(job_id, unfinished_job)

    # -- hooks (called by the tee after the user's hooks) ----------------------------------

    @guarded
    def on_worker_start(self, flow: Any, worker_state: Any) -> None:
        worker_id = worker_state.worker_id
        with self._lock:
            self._worker_ledgers[worker_id] = _WorkerLedger()
        self._workers.set_state(("routilux", worker_id), ROUTILUX, WorkerState.AVAILABLE)

    @guarded
    def on_worker_stop(self, flow: Any, worker_state: Any, status: str) -> None:
        worker_id = worker_state.worker_id
        idle_jobs = []
        with self._lock:
            known = self._worker_ledgers.pop(worker_id, None) is not None
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
        self._workers.health_check(ROUTILUX, status != "failed")
        self._workers.set_state(("routilux", worker_id), ROUTILUX, None)
        drained = getattr(self._draining, "workers", None)
        if drained is not None and status == "cancelled":
            drained.append(worker_id)

    @guarded
    def on_job_start(self, job_context: Any, worker_state: Any) -> None:
        job_id = job_context.job_id
        with self._lock:
            self._jobs[job_id] = _JobLedger(worker_id=worker_state.worker_id)
            self._bound_jobs()
        self._tracker.transition(
            _job_key(job_id),
            ExecutionStatus.QUEUED,
            orchestrator=ROUTILUX,
            level=ExecutionLevel.PIPELINE,
            pipeline_name=job_context.flow_id,
            run_id=job_id,
        )

    @guarded
    def on_job_end(
        self, job_context: Any, worker_state: Any, status: Any = "completed", error: Any = None
    ) -> None:
        job_id = job_context.job_id
        with self._lock:
            self._jobs.pop(job_id, None)
        self._tracker.transition(
            _job_key(job_id),
            JOB_STATUS.get(str(getattr(status, "value", status)).lower(), ExecutionStatus.UNKNOWN),
            orchestrator=ROUTILUX,
            level=ExecutionLevel.PIPELINE,
            error=error,
        )

    def _end_unfinished_job(self, job_id: str, ledger: _JobLedger) -> None:
        finished_work = ledger.running_steps == 0 and ledger.last_step_end is not None
        if ledger.failed:
            status = ExecutionStatus.FAILED
        elif finished_work:
            status = ExecutionStatus.SUCCEEDED
        else:
            status = ExecutionStatus.CANCELLED
        timestamp = ledger.last_step_end if finished_work else None
        self._tracker.transition(
            _job_key(job_id), status,
            orchestrator=ROUTILUX, level=ExecutionLevel.PIPELINE, timestamp=timestamp,
        )  # fmt: skip

    def _bound_jobs(self) -> None:
        """Forget the oldest ledgers beyond the in-flight cap (called with the lock held)."""
        while len(self._jobs) > self._telemetry.config.max_in_flight:
            del self._jobs[next(iter(self._jobs))]


class _TeeHooks(wrapt.ObjectProxy):  # type: ignore[misc]
    """The user's hooks object, unchanged, with our worker and job callbacks run after it."""

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

    __slots__ = ("adapter", "logic", "routine", "runtime", "worker_state")

    def __init__(
        self, adapter: RoutiluxAdapter, routine: Any, runtime: Any, worker_state: Any
    ) -> None:
        self.adapter = adapter
        self.routine = routine
        self.runtime = runtime
        self.worker_state = worker_state
        self.logic: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        adapter = self.adapter
        step = adapter.step_started(self.routine, self.runtime, self.worker_state)
        try:
            result = self.logic(*args, **kwargs)  # type: ignore[misc]
        except BaseException as error:
            adapter.step_ended(step, error)
            raise
        adapter.step_ended(step, None)
        return result


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
        logic = routine.__dict__.get("_logic", _NO_VALUE)
        activation = self._pending.activation
        if activation is None or activation.routine is not routine:
            if logic is _NO_VALUE:
                raise _no_logic(routine)
            return logic
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


def _routine_and_worker_state(routine: Any, worker_state: Any) -> tuple[Any, Any]:
    return routine, worker_state


def _shutdown_waits(wait: bool = True, timeout: float = 30.0) -> bool:
    return bool(wait)
