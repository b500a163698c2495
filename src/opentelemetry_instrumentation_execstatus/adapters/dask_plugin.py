"""The scheduler plugin of the Dask adapter (``dask``, which says what it records and why).

Its hooks run on the scheduler's event loop, one at a time, for every task: each does the
least it can (a dict lookup, a clock read, one kept change), and swallows its own errors
(Dask would log them, once per call). Imported only once a scheduler exists: it subclasses
distributed's ``SchedulerPlugin``.
"""

from __future__ import annotations

import itertools
import pickletools
import time
from collections.abc import Iterable
from typing import Any, Final

from distributed.diagnostics.plugin import SchedulerPlugin

from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.normalize import OTHER_NAME
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    WorkerState,
)

_STATUS_OF_STATE: Final = {
    "waiting": ExecutionStatus.WAITING,
    "queued": ExecutionStatus.QUEUED,
    "no-worker": ExecutionStatus.PENDING,
    "processing": ExecutionStatus.RUNNING,
    "memory": ExecutionStatus.SUCCEEDED,
    "erred": ExecutionStatus.FAILED,
    "forgotten": ExecutionStatus.CANCELLED,
}
_FINAL: Final = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
_RETRYING, _UNKNOWN = ExecutionStatus.RETRYING, ExecutionStatus.UNKNOWN
_MAX_PREFIXES_IN_NAME = 3  # a run is named by the prefixes of the keys asked for, this many


class _Run:
    """A graph's run: its key and identity, how many of its tasks have not ended, and the
    worst end among those that have."""

    __slots__ = ("error_type", "identity", "key", "outcome", "remaining")

    def __init__(self, key: Any, identity: Any, remaining: int) -> None:
        self.key = key
        self.identity = identity
        self.remaining = remaining
        self.outcome = ExecutionStatus.SUCCEEDED
        self.error_type: str | None = None


# A task the plugin follows: [its series, its status (None: not counted yet), since when
# (monotonic ns), its run or None]. A list, not an object: one is made per task.
_SERIES, _STATUS, _SINCE, _RUN = range(4)


class ExecStatusSchedulerPlugin(SchedulerPlugin):
    """Task states, graphs and workers of one scheduler, reported through ``adapter``."""

    def __init__(self, adapter: Adapter, scheduler: Any) -> None:
        self._adapter = adapter
        self._scheduler = scheduler
        self._tasks: dict[Any, list[Any]] = {}
        # One series per task prefix, up to the name cap; beyond it, one for all the others.
        self._series: dict[str, Any] = {}
        self._max_series = adapter.name_cardinality_limit
        self._serials = itertools.count(1)

    # -- graphs -------------------------------------------------------------------------------

    def update_graph(
        self, scheduler: Any, *, keys: Iterable[Any] = (), tasks: Iterable[Any] = (), **kwargs: Any
    ) -> None:
        """A graph arrived: its run starts, made of its tasks the scheduler did not hold yet
        (those it held, in memory or on their way, are another run's)."""
        try:
            if self._adapter.is_off():
                return
            held, followed = scheduler.tasks, self._tasks
            new = [
                key
                for key in tasks
                if key not in followed and getattr(held.get(key), "state", None) == "released"
            ]
            if not new:
                return
            adapter = self._adapter
            name = _run_name(held, keys)
            run_id = kwargs.get("stimulus_id") or f"graph-{next(self._serials)}"
            identity = adapter.identity(ExecutionLevel.PIPELINE, pipeline=name, run_id=run_id)
            run = _Run(adapter.key(id(self), run_id), identity, len(new))
            adapter.report(run.key, ExecutionStatus.RUNNING, identity)
            now = time.monotonic_ns()
            for key in new:
                followed[key] = [self._series_of(held[key]), None, now, run]
        except Exception:
            report_internal_error("the Dask scheduler plugin's update_graph")

    # -- tasks --------------------------------------------------------------------------------

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """A task moved: the time it spent in its status, and its new one; at its end, its
        run learns it."""
        try:
            if start == finish:
                return
            task = self._tasks.get(key)
            if finish == "released":
                if task is None or start != "processing" or not _wanted(self._scheduler, key):
                    return  # being cancelled, or its result lost: nothing changes yet
                current = _RETRYING
            else:
                current = _STATUS_OF_STATE.get(finish, _UNKNOWN)
            now = time.monotonic_ns()
            if task is None:
                if current in _FINAL:
                    return  # a task this plugin never counted (released, then forgotten)
                task = self._tasks[key] = [
                    self._series_of(self._scheduler.tasks.get(key)),
                    None,
                    now,
                    None,
                ]
            self._adapter.kept_change(task[_SERIES], task[_STATUS], current, now - task[_SINCE])
            if current in _FINAL:
                del self._tasks[key]
                run = task[_RUN]
                if run is not None:
                    self._task_ended(run, current, kwargs)
            else:
                task[_STATUS] = current
                task[_SINCE] = now
        except Exception:
            report_internal_error("the Dask scheduler plugin's transition")

    def _task_ended(self, run: _Run, status: ExecutionStatus, details: dict[str, Any]) -> None:
        if status is ExecutionStatus.FAILED and run.outcome is not ExecutionStatus.FAILED:
            run.outcome = status
            run.error_type = _error_type(details)
        elif status is ExecutionStatus.CANCELLED and run.outcome is ExecutionStatus.SUCCEEDED:
            run.outcome = status
        run.remaining -= 1
        if run.remaining == 0:
            self._adapter.report(run.key, run.outcome, run.identity, error_type=run.error_type)

    def _series_of(self, task_state: Any) -> Any:
        """The series of a task's prefix, made at its first task."""
        prefix = _prefix_name(task_state)
        name = prefix if isinstance(prefix, str) else "unknown"
        series = self._series.get(name)
        if series is None:
            if len(self._series) >= self._max_series:
                name = OTHER_NAME
                series = self._series.get(name)
            if series is None:
                identity = self._adapter.identity(ExecutionLevel.STEP, name=name)
                series = self._series[name] = self._adapter.kept_series(identity)
        return series

    # -- workers ------------------------------------------------------------------------------

    def add_worker(self, scheduler: Any, worker: str) -> None:
        try:
            workers = self._adapter.workers
            workers.spawn(True)
            workers.set_state(worker, WorkerState.AVAILABLE)
        except Exception:
            report_internal_error("the Dask scheduler plugin's add_worker")

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        try:
            self._adapter.workers.set_state(worker, WorkerState.OFFLINE)
        except Exception:
            report_internal_error("the Dask scheduler plugin's remove_worker")

    # -- the scheduler's end ------------------------------------------------------------------

    async def close(self) -> None:
        """The scheduler closes: the tasks and runs still followed end ``cancelled``."""
        try:
            tasks, self._tasks = self._tasks, {}
            now, cancelled = time.monotonic_ns(), ExecutionStatus.CANCELLED
            for series, status, since, run in tasks.values():
                if status is not None:
                    self._adapter.kept_change(series, status, cancelled, now - since)
                if run is not None:
                    self._task_ended(run, cancelled, {})
        except Exception:
            report_internal_error("the Dask scheduler plugin's close")


def _wanted(scheduler: Any, key: Any) -> bool:
    """Whether a task the scheduler just released from ``processing`` will run again: a client
    or a dependent still wants it (its worker was lost, or it failed with retries left). A task
    no one wants is being forgotten (its client cancelled it), not retried."""
    task_state = scheduler.tasks.get(key)
    return bool(getattr(task_state, "who_wants", None) or getattr(task_state, "waiters", None))


def _run_name(held: Any, keys: Iterable[Any]) -> str:
    """A graph's name: the prefixes of the keys its client asked for, the first few."""
    prefixes = sorted(
        {name for key in keys if isinstance(name := _prefix_name(held.get(key)), str)}
    )
    shown = ", ".join(prefixes[:_MAX_PREFIXES_IN_NAME])
    more = len(prefixes) - _MAX_PREFIXES_IN_NAME
    return f"{shown} +{more}" if more > 0 else shown or "graph"


def _prefix_name(task_state: Any) -> Any:
    """A task's prefix (``TaskState.prefix.name``: its key without the token)."""
    return getattr(getattr(task_state, "prefix", None), "name", None)


def _error_type(details: dict[str, Any]) -> str | None:
    """The exception's type name, from Dask's text of it (``"ValueError('...')"``); for one the
    scheduler raised itself, with no text (``KilledWorker``: the task's workers died too many
    times), from the exception it pickled (bytes: read, never unpickled)."""
    text = details.get("exception_text")
    if isinstance(text, str):
        name = text.split("(", 1)[0].strip()
        return name if name.isidentifier() else None
    exception = details.get("exception")
    return _pickled_class_name(exception) if isinstance(exception, bytes) else None


def _pickled_class_name(data: bytes) -> str | None:
    """The name of the class a pickle builds first, read from its opcodes, never unpickled:
    the first global it names (``GLOBAL``, or ``STACK_GLOBAL`` after its module and name)."""
    strings: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL" and isinstance(argument, str):
                return argument.rsplit(" ", 1)[-1]
            if opcode.name == "STACK_GLOBAL":
                return strings[-1] if strings else None
            if isinstance(argument, str):
                strings.append(argument)
    except Exception:  # not a pickle, or a truncated one
        return None
    return None
