"""routilux 0.10.x: ``Flow.execute`` runs become pipeline runs, tracker records become steps.

0.10 has no hooks; its ``ExecutionTracker`` is told of routine starts and ends, and that is
where we listen: ``record_routine_start`` -> step ``running``, ``record_routine_end`` -> the
step's final status (``LEGACY_STATUS``). ``Flow.execute`` bounds the run; it returns while
downstream routines may still be queued (the job is then still ``running``), so the run ends
when ``JobState.wait_for_completion`` settles its status.

routilux 0.10.0 never calls ``record_routine_end`` for an entry routine that succeeded first
time; when ``Flow.execute`` returns we close such a step from the routine state the job holds.
Nor does it for an entry routine that ``Flow.execute`` lets raise (it catches exceptions only,
so this is mostly an interrupt): then the run and its still running entry step end by the
outcome of the call, ``cancelled`` for a ``KeyboardInterrupt`` or ``SystemExit``, ``failed``
(with ``error.type``) for an exception.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import weakref
from collections.abc import Hashable
from typing import Any

from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.calls import bind, observe_call
from opentelemetry_instrumentation_execstatus.adapters.outcomes import StatusMap
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.patching import Patch
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
)

# Statuses of JobState and of ExecutionTracker / routine state records.
LEGACY_STATUS = StatusMap(
    {
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
)


class _Run:
    """One ``Flow.execute`` call: its run, and what ends it and its entry step."""

    __slots__ = ("entry_routine_id", "flow", "identity", "key", "token")

    def __init__(
        self,
        key: Hashable,
        identity: Identity,
        flow: Any,
        entry_routine_id: Any,
        token: contextvars.Token[Hashable | None],
    ) -> None:
        self.key = key
        self.identity = identity
        self.flow = flow
        self.entry_routine_id = entry_routine_id
        self.token = token  # resets the current run when the call is done


class RoutiluxLegacyAdapter(Adapter):
    name = "routilux-legacy"
    orchestrator = Orchestrator.ROUTILUX
    top_module = "routilux"
    distribution = "routilux"
    supported = ">= 0.10, < 0.11"

    def __init__(self, telemetry: Any) -> None:
        super().__init__(telemetry)
        self._run_ids = itertools.count()
        # The run a Flow.execute call on this thread (or task) is inside of.
        self._current_run: contextvars.ContextVar[Hashable | None] = contextvars.ContextVar(
            "execstatus_routilux_legacy_run", default=None
        )
        # Runs still open after Flow.execute returned, by JobState, for wait_for_completion.
        self._open_runs: weakref.WeakKeyDictionary[Any, _Run] = weakref.WeakKeyDictionary()
        # Tracker objects used outside Flow.execute get a run key of their own.
        self._tracker_runs: weakref.WeakKeyDictionary[Any, Hashable] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def patches(self) -> list[Patch]:
        execute = observe_call(
            on_call=self._run_started,
            on_success=self._executed,
            on_error=self._execute_raised,
            after_call=self._execute_done,
            name="routilux Flow.execute",
        )
        routine_start = observe_call(
            on_call=lambda tracker, args, kwargs: (tracker, *bind(_started, args, kwargs)),
            on_success=self._recorded,
            name="routilux record_routine_start",
        )
        routine_end = observe_call(
            on_call=lambda tracker, args, kwargs: (tracker, *bind(_ended, args, kwargs)),
            on_success=self._recorded,
            name="routilux record_routine_end",
        )
        wait = observe_call(
            on_call=lambda _instance, args, kwargs: bind(_waited_job, args, kwargs),
            on_success=self._waited,
            name="routilux JobState.wait_for_completion",
        )
        return [
            Patch("routilux.flow.flow", "Flow.execute", execute),
            Patch(
                "routilux.execution_tracker", "ExecutionTracker.record_routine_start", routine_start
            ),
            Patch("routilux.execution_tracker", "ExecutionTracker.record_routine_end", routine_end),
            Patch("routilux.job_state", "JobState.wait_for_completion", wait),
        ]

    # -- runs ------------------------------------------------------------------------------

    def _run_started(self, flow: Any, args: tuple, kwargs: dict) -> _Run | None:
        if self.is_off():
            return None
        key = self.key("run", next(self._run_ids))
        identity = self.identity(ExecutionLevel.PIPELINE, pipeline=getattr(flow, "flow_id", None))
        entry_routine_id = bind(_entry, args, kwargs)
        self.report(key, ExecutionStatus.RUNNING, identity)
        return _Run(key, identity, flow, entry_routine_id, self._current_run.set(key))

    def _executed(self, run: _Run, job_state: Any) -> None:
        tracker = getattr(run.flow, "execution_tracker", None)
        if tracker is not None:
            with self._lock:
                self._tracker_runs[tracker] = run.key
            state = job_state.get_routine_state(run.entry_routine_id) or {}
            if state.get("status") is not None:
                self._step(tracker, run.entry_routine_id, LEGACY_STATUS(state["status"]))
        status = LEGACY_STATUS(job_state.status)
        if status.is_final:
            self.report(run.key, status, run.identity)
        else:
            with self._lock:
                self._open_runs[job_state] = run

    def _execute_raised(self, run: _Run, error: BaseException) -> None:
        entry_step = self._step_key(run.key, run.entry_routine_id)
        if self.status_of(entry_step) is not None:  # started, and routilux won't end it
            identity = self._step_identity(run.entry_routine_id, run.identity.pipeline, run.key)
            self.end(entry_step, identity, error)
        self.end(run.key, run.identity, error)

    def _execute_done(self, run: _Run) -> None:
        self._current_run.reset(run.token)

    def _waited(self, waited: tuple[Any, Any], completed: Any) -> None:
        _flow, job_state = waited
        status = LEGACY_STATUS(job_state.status)
        if not (completed and status.is_final):
            return
        with self._lock:
            run = self._open_runs.pop(job_state, None)
        if run is not None:
            self.report(run.key, status, run.identity)

    # -- steps -----------------------------------------------------------------------------

    def _recorded(self, record: tuple[Any, Any, ExecutionStatus], _result: Any) -> None:
        """A tracker record was made: ``(tracker, routine id, the step's status)``."""
        self._step(*record)

    def _step(self, tracker: Any, routine_id: Any, status: ExecutionStatus) -> None:
        run_key = self._run_of(tracker)
        identity = self._step_identity(routine_id, getattr(tracker, "flow_id", None), run_key)
        self.report(self._step_key(run_key, routine_id), status, identity)

    def _step_identity(self, routine_id: Any, pipeline: Any, run_key: Hashable) -> Identity:
        return self.identity(
            ExecutionLevel.STEP, name=routine_id, pipeline=pipeline, parent=run_key
        )

    def _step_key(self, run_key: Hashable, routine_id: Any) -> Hashable:
        return self.key("step", run_key, routine_id)

    def _run_of(self, tracker: Any) -> Hashable:
        """The run a tracker's records belong to: the Flow.execute in progress, or its own."""
        run_key = self._current_run.get()
        if run_key is not None:
            return run_key
        with self._lock:
            run_key = self._tracker_runs.get(tracker)
            if run_key is None:
                run_key = self._tracker_runs[tracker] = self.key("tracker", next(self._run_ids))
        return run_key


# The arguments each observed call is read by (see ``calls.bind``); any others are the call's.


def _entry(entry_routine_id: Any = None, *_: Any, **__: Any) -> Any:
    return entry_routine_id


def _started(routine_id: Any, *_: Any, **__: Any) -> tuple[Any, ExecutionStatus]:
    return routine_id, ExecutionStatus.RUNNING


def _ended(
    routine_id: Any, status: Any = "completed", *_: Any, **__: Any
) -> tuple[Any, ExecutionStatus]:
    return routine_id, LEGACY_STATUS(status)


def _waited_job(flow: Any, job_state: Any, *_: Any, **__: Any) -> tuple[Any, Any]:
    return flow, job_state
