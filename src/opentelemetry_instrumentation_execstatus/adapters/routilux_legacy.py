"""routilux 0.10.x: ``Flow.execute`` runs become pipeline runs, tracker records become steps.

0.10 has no hooks; its ``ExecutionTracker`` (seed 002) is told of routine starts and ends, and
that is where we listen: ``record_routine_start`` -> step ``running``, ``record_routine_end``
-> the step's final status. ``Flow.execute`` bounds the run; it returns while downstream
routines may still be queued (the job is then still ``running``), so the run ends when
``JobState.wait_for_completion`` settles its status.

routilux 0.10.0 never calls ``record_routine_end`` for an entry routine that succeeded first
time; when ``Flow.execute`` returns we close such a step from the routine state the job holds.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import weakref
from collections.abc import Hashable
from typing import Any, Callable

from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.safety import guarded
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)

ROUTILUX = Orchestrator.ROUTILUX

# Statuses of JobState and of ExecutionTracker / routine state records.
LEGACY_STATUS: dict[str, ExecutionStatus] = {
    "pending": ExecutionStatus.PENDING,
    "running": ExecutionStatus.RUNNING,
    "paused": ExecutionStatus.PAUSED,
    "completed": ExecutionStatus.SUCCEEDED,
    "failed": ExecutionStatus.FAILED,
    "error": ExecutionStatus.FAILED,
    "error_continued": ExecutionStatus.FAILED,
    "skipped": ExecutionStatus.SKIPPED,
    "cancelled": ExecutionStatus.CANCELLED,
}


def legacy_status(value: Any) -> ExecutionStatus:
    return LEGACY_STATUS.get(str(value).strip().lower(), ExecutionStatus.UNKNOWN)


class RoutiluxLegacyAdapter(Adapter):
    name = "routilux-legacy"
    orchestrator = Orchestrator.ROUTILUX
    top_module = "routilux"
    distribution = "routilux"
    supported = ">= 0.10, < 0.11"

    def __init__(self, telemetry: Any) -> None:
        super().__init__(telemetry)
        self._tracker = telemetry.tracker
        self._run_ids = itertools.count()
        # The run a Flow.execute call on this thread (or task) is inside of.
        self._current_run: contextvars.ContextVar[Hashable | None] = contextvars.ContextVar(
            "execstatus_routilux_legacy_run", default=None
        )
        # Runs still open after Flow.execute returned, by JobState, for wait_for_completion.
        self._open_runs: weakref.WeakKeyDictionary[Any, Hashable] = weakref.WeakKeyDictionary()
        # Tracker objects used outside Flow.execute get a run key of their own.
        self._tracker_runs: weakref.WeakKeyDictionary[Any, Hashable] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def patches(self) -> list[Patch]:
        return [
            Patch("routilux.flow.flow", "Flow.execute", self._wrap_execute),
            Patch(
                "routilux.execution_tracker",
                "ExecutionTracker.record_routine_start",
                self._wrap_record_routine_start,
            ),
            Patch(
                "routilux.execution_tracker",
                "ExecutionTracker.record_routine_end",
                self._wrap_record_routine_end,
            ),
            Patch("routilux.job_state", "JobState.wait_for_completion", self._wrap_wait),
        ]

    # -- wrappers --------------------------------------------------------------------------

    def _wrap_execute(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        run_key = self._start_run(instance)
        token = self._current_run.set(run_key)
        try:
            job_state = wrapped(*args, **kwargs)
        except BaseException as error:
            self._end_run(run_key, ExecutionStatus.FAILED, error)
            raise
        finally:
            self._current_run.reset(token)
        self._after_execute(run_key, instance, job_state, *args, **kwargs)
        return job_state

    def _wrap_record_routine_start(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        result = wrapped(*args, **kwargs)
        self._step(instance, ExecutionStatus.RUNNING, *args, **kwargs)
        return result

    def _wrap_record_routine_end(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        result = wrapped(*args, **kwargs)
        self._step_end(instance, *args, **kwargs)
        return result

    def _wrap_wait(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        completed = wrapped(*args, **kwargs)
        self._after_wait(completed, *args, **kwargs)
        return completed

    # -- telemetry -------------------------------------------------------------------------

    @guarded
    def _start_run(self, flow: Any) -> Hashable:
        run_key = ("routilux-legacy", "run", next(self._run_ids))
        self._tracker.transition(
            run_key,
            ExecutionStatus.RUNNING,
            orchestrator=ROUTILUX,
            level=ExecutionLevel.PIPELINE,
            pipeline_name=getattr(flow, "flow_id", None),
        )
        return run_key

    @guarded
    def _end_run(
        self, run_key: Hashable | None, status: ExecutionStatus, error: Any = None
    ) -> None:
        if run_key is not None:
            self._tracker.transition(
                run_key, status, orchestrator=ROUTILUX, level=ExecutionLevel.PIPELINE, error=error
            )

    @guarded
    def _after_execute(
        self,
        run_key: Hashable | None,
        flow: Any,
        job_state: Any,
        entry_routine_id: str,
        *_: Any,
        **__: Any,
    ) -> None:
        if run_key is None:
            return
        tracker = getattr(flow, "execution_tracker", None)
        if tracker is not None:
            with self._lock:
                self._tracker_runs[tracker] = run_key
            state = job_state.get_routine_state(entry_routine_id) or {}
            if state.get("status") is not None:
                self._step_transition(tracker, entry_routine_id, legacy_status(state["status"]))
        status = legacy_status(job_state.status)
        if status.is_final:
            self._end_run(run_key, status)
        else:
            with self._lock:
                self._open_runs[job_state] = run_key

    @guarded
    def _after_wait(self, completed: Any, flow: Any, job_state: Any, *_: Any, **__: Any) -> None:
        status = legacy_status(job_state.status)
        if not (completed and status.is_final):
            return
        with self._lock:
            run_key = self._open_runs.pop(job_state, None)
        self._end_run(run_key, status)

    @guarded
    def _step(
        self, tracker: Any, status: ExecutionStatus, routine_id: str, *_: Any, **__: Any
    ) -> None:
        self._step_transition(tracker, routine_id, status)

    @guarded
    def _step_end(
        self, tracker: Any, routine_id: str, status: str = "completed", *_: Any, **__: Any
    ) -> None:
        self._step_transition(tracker, routine_id, legacy_status(status))

    def _step_transition(self, tracker: Any, routine_id: str, status: ExecutionStatus) -> None:
        run_key = self._run_of(tracker)
        self._tracker.transition(
            ("routilux-legacy", "step", run_key, routine_id),
            status,
            orchestrator=ROUTILUX,
            level=ExecutionLevel.STEP,
            name=routine_id,
            pipeline_name=getattr(tracker, "flow_id", None),
            parent_key=run_key,
        )

    def _run_of(self, tracker: Any) -> Hashable:
        """The run a tracker's records belong to: the Flow.execute in progress, or its own."""
        run_key = self._current_run.get()
        if run_key is not None:
            return run_key
        with self._lock:
            run_key = self._tracker_runs.get(tracker)
            if run_key is None:
                run_key = self._tracker_runs[tracker] = (
                    "routilux-legacy",
                    "tracker",
                    next(self._run_ids),
                )
        return run_key
