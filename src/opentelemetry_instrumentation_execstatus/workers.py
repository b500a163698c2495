"""The worker recorder: spawns, health checks, drains and worker count, with bounded labels.

Label values come from closed enums and are never passed through. Values are trimmed and
case-insensitive. A required label (a spawn's or drain's outcome, a health check's result)
that is empty or unrecognised drops the sample: there is nothing true to count it under. An
optional label falls back instead: a spawn failure without a reason is ``unknown`` (a
forgotten reason still shows), one outside the enum is ``other``. A worker state may be one of
duckgres's lifecycle states (``idle``, ``hot``, ``draining``...), counted as the
``cicd.worker.state`` it stands for; an unrecognised state is ignored, the worker keeps its
last counted state. A cancelled health probe is no verdict and is not counted; a drain's
duration is recorded only when the drain really finished; negative or NaN durations are 0.

Like the tracker, every recording method returns before any work, its arguments not even
read, when nothing records (no SDK, the SDK disabled, instrumentation suppressed, or after
``uninstrument()``): the check comes first, in the wrapper that also swallows the recorder's
own errors. The worker count is kept here and observed by the SDK (see ``counts``), so a
forked child starts counting from 0.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Hashable
from enum import Enum
from typing import Any, Callable, TypeVar

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from opentelemetry_instrumentation_execstatus import semconv
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child
from opentelemetry_instrumentation_execstatus.instruments import Instruments, cached_attributes
from opentelemetry_instrumentation_execstatus.normalize import clamp_seconds, to_enum
from opentelemetry_instrumentation_execstatus.safety import report_internal_error
from opentelemetry_instrumentation_execstatus.semconv import (
    WORKER_STATE_ALIASES,
    HealthResult,
    Orchestrator,
    SpawnFailureReason,
    WorkerOutcome,
    WorkerState,
)
from opentelemetry_instrumentation_execstatus.sinks import CLOSED, Closed, Sinks

F = TypeVar("F", bound=Callable[..., None])


def _outcome(value: Any) -> WorkerOutcome | None:
    """True/False, a WorkerOutcome or its string; None (sample dropped) for anything else."""
    if isinstance(value, bool):
        return WorkerOutcome.SUCCESS if value else WorkerOutcome.FAILURE
    return to_enum(WorkerOutcome, value, None)  # type: ignore[arg-type]


def _health(value: Any) -> HealthResult | None:
    """True/False, a HealthResult or its string; None (sample dropped) for anything else."""
    if isinstance(value, bool):
        return HealthResult.PASS if value else HealthResult.FAIL
    return to_enum(HealthResult, value, None)  # type: ignore[arg-type]


def _failure_reason(value: Any) -> SpawnFailureReason:
    """``unknown`` when no reason was given (None, empty), ``other`` when it is not ours."""
    raw = value.value if isinstance(value, Enum) else value
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return SpawnFailureReason.UNKNOWN
    return to_enum(SpawnFailureReason, raw, SpawnFailureReason.OTHER)


def _state(value: Any) -> WorkerState | None:
    """A WorkerState, its string or a duckgres lifecycle alias; None for anything else."""
    state = to_enum(WorkerState, value, None)  # type: ignore[arg-type]
    if state is not None:
        return state
    raw = value.value if isinstance(value, Enum) else value
    if not isinstance(raw, str):
        return None
    return WORKER_STATE_ALIASES.get(raw.strip().lower())


def _orchestrator(value: Any) -> Orchestrator:
    return to_enum(Orchestrator, value, Orchestrator.UNKNOWN)


@cached_attributes(maxsize=512)
def _spawn_attributes(
    orchestrator: Orchestrator, outcome: WorkerOutcome, reason: SpawnFailureReason | None
) -> dict[str, str]:
    attributes = {
        semconv.EXECUTION_WORKER_OUTCOME: outcome.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
    }
    if reason is not None:
        attributes[semconv.EXECUTION_WORKER_SPAWN_FAILURE_REASON] = reason.value
    return attributes


@cached_attributes(maxsize=128)
def _health_attributes(orchestrator: Orchestrator, result: HealthResult) -> dict[str, str]:
    return {
        semconv.EXECUTION_WORKER_HEALTH_RESULT: result.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
    }


@cached_attributes(maxsize=128)
def _drain_attributes(orchestrator: Orchestrator, outcome: WorkerOutcome) -> dict[str, str]:
    return {
        semconv.EXECUTION_WORKER_OUTCOME: outcome.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
    }


@cached_attributes(maxsize=128)
def _orchestrator_attributes(orchestrator: Orchestrator) -> dict[str, str]:
    return {semconv.EXECUTION_ORCHESTRATOR: orchestrator.value}


def _recording(method: F) -> F:
    """``method``, run only when something records; an error of its own is reported once and
    swallowed (the host never sees it)."""
    where = f"{method.__module__}.{method.__qualname__}"

    @functools.wraps(method)
    def wrapper(self: WorkerRecorder, *args: Any, **kwargs: Any) -> None:
        try:
            if self._sinks.off() or not is_instrumentation_enabled():
                return
            method(self, *args, **kwargs)
        except Exception:
            report_internal_error(where)

    return wrapper  # type: ignore[return-value]


class WorkerRecorder:
    """Worker lifecycle counters of the telemetry contract.

    ``spawn``, ``health_check``, ``drain`` and ``set_state`` return at once, before reading
    their arguments, when nothing records (``is_off()``), as ``StatusTracker.transition`` does.
    """

    def __init__(self, instruments: Instruments, sinks: Sinks, max_workers: int) -> None:
        self._sinks: Sinks | Closed = sinks
        self._spawns = instruments.worker_spawns
        self._health_checks = instruments.worker_health_checks
        self._drains = instruments.worker_drains
        self._drain_duration = instruments.worker_drain_duration
        self._count = instruments.worker_count
        self._max_workers = max_workers
        self._lock = threading.Lock()
        # worker key -> (orchestrator, state), for execution.worker.count.
        self._workers: dict[Hashable, tuple[Orchestrator, WorkerState]] = {}
        after_fork_in_child(self._after_fork)

    def is_off(self) -> bool:
        """Nothing would record a worker event now: the caller may skip its own work too."""
        return self._sinks.off() or not is_instrumentation_enabled()

    @_recording
    def spawn(self, orchestrator: Any, outcome: Any, reason: Any = None) -> None:
        """One spawn attempt; an empty or unrecognised ``outcome`` drops it.

        A failure's reason is ``unknown`` when missing or empty and ``other`` when outside the
        enum. A success never carries a reason (whatever is passed): a reason labels failures
        only, so that success series are not split by it.
        """
        result = _outcome(outcome)
        if result is None:
            return
        failure_reason = _failure_reason(reason) if result is WorkerOutcome.FAILURE else None
        self._spawns.add(1, _spawn_attributes(_orchestrator(orchestrator), result, failure_reason))

    @_recording
    def health_check(self, orchestrator: Any, result: Any, *, cancelled: bool = False) -> None:
        """One finished health check; a cancelled probe gave no verdict and is not counted.

        Counting a cancelled probe as ``fail`` would report a control plane's own shutdown as
        sick workers (duckgres skips ``context.Canceled`` for that reason). An empty or
        unrecognised ``result`` drops the sample.
        """
        if cancelled:
            return
        verdict = _health(result)
        if verdict is None:
            return
        self._health_checks.add(1, _health_attributes(_orchestrator(orchestrator), verdict))

    @_recording
    def drain(self, orchestrator: Any, outcome: Any, duration_seconds: float | None = None) -> None:
        """One drain; an empty or unrecognised ``outcome`` drops it.

        Its duration (negative or NaN: 0) is recorded only for a drain that completed
        successfully: failed drains end early and would drown the slow real drains in the
        histogram (duckgres records it only at the pod-delete-success milestone).
        """
        result = _outcome(outcome)
        if result is None:
            return
        which = _orchestrator(orchestrator)
        self._drains.add(1, _drain_attributes(which, result))
        # Not a number (None, or a caller's mistake): counted, but no duration to record.
        if (
            result is WorkerOutcome.SUCCESS
            and isinstance(duration_seconds, (int, float))
            and not isinstance(duration_seconds, bool)
        ):
            self._drain_duration.record(
                clamp_seconds(duration_seconds), _orchestrator_attributes(which)
            )

    @_recording
    def set_state(self, worker_key: Hashable, orchestrator: Any, state: Any) -> None:
        """Worker ``worker_key`` is now in ``state``; None removes it from the count.

        ``state`` is a WorkerState, its string, or a duckgres lifecycle state (see
        ``semconv.WORKER_STATE_ALIASES``). An empty or unrecognised state is ignored and the
        worker stays counted in its last known state: counting it as ``offline`` would invent
        an outage out of a typo, and dropping the worker would hide it.
        """
        if state is None:
            new_state = None
        else:
            new_state = _state(state)
            if new_state is None:
                return
        counted = None if new_state is None else (_orchestrator(orchestrator), new_state)
        with self._lock:
            previous = self._workers.get(worker_key)
            if counted is None:
                self._workers.pop(worker_key, None)
            elif previous is None and len(self._workers) >= self._max_workers:
                return  # beyond the cap a new worker is not counted rather than grow state
            else:
                self._workers[worker_key] = counted
            if previous != counted:
                self._count.move(previous, counted)

    def close(self) -> None:
        """At ``uninstrument()``: the workers are no longer followed, so none is counted, and
        nothing more is recorded."""
        self._sinks = CLOSED
        with self._lock:
            for previous in self._workers.values():
                self._count.move(previous, None)
            self._workers = {}

    def _after_fork(self) -> None:
        """The parent's workers are not the child's (the counts themselves restart at 0)."""
        self._lock = threading.Lock()
        self._workers = {}
