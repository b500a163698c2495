"""The worker recorder: spawns, health checks, drains and worker count, with bounded labels.

Seed 004's rules, applied to every orchestrator: label values come from closed enums (a value
outside one becomes its fallback, or the sample is dropped when the label is required and
empty); a cancelled health probe is no verdict and is not counted; a drain's duration is
recorded only when the drain really finished; negative durations are 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from functools import lru_cache
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from opentelemetry_instrumentation_execstatus import semconv
from opentelemetry_instrumentation_execstatus.instruments import Instruments
from opentelemetry_instrumentation_execstatus.normalize import clamp_seconds, to_enum
from opentelemetry_instrumentation_execstatus.safety import guarded
from opentelemetry_instrumentation_execstatus.semconv import (
    HealthResult,
    Orchestrator,
    SpawnFailureReason,
    WorkerOutcome,
    WorkerState,
)

_LOG = logging.getLogger(__name__)


def _outcome(value: Any) -> WorkerOutcome | None:
    """True/False, a WorkerOutcome or its string; None (sample dropped) for anything else."""
    if isinstance(value, bool):
        return WorkerOutcome.SUCCESS if value else WorkerOutcome.FAILURE
    return to_enum(WorkerOutcome, value, None)  # type: ignore[arg-type]


def _health(value: Any) -> HealthResult | None:
    if isinstance(value, bool):
        return HealthResult.PASS if value else HealthResult.FAIL
    return to_enum(HealthResult, value, None)  # type: ignore[arg-type]


def _orchestrator(value: Any) -> Orchestrator:
    return to_enum(Orchestrator, value, Orchestrator.UNKNOWN)


@lru_cache(maxsize=512)
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


@lru_cache(maxsize=128)
def _health_attributes(orchestrator: Orchestrator, result: HealthResult) -> dict[str, str]:
    return {
        semconv.EXECUTION_WORKER_HEALTH_RESULT: result.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
    }


@lru_cache(maxsize=128)
def _drain_attributes(orchestrator: Orchestrator, outcome: WorkerOutcome) -> dict[str, str]:
    return {
        semconv.EXECUTION_WORKER_OUTCOME: outcome.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
    }


@lru_cache(maxsize=128)
def _orchestrator_attributes(orchestrator: Orchestrator) -> dict[str, str]:
    return {semconv.EXECUTION_ORCHESTRATOR: orchestrator.value}


@lru_cache(maxsize=128)
def _count_attributes(orchestrator: Orchestrator, state: WorkerState) -> dict[str, str]:
    return {
        semconv.CICD_WORKER_STATE: state.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
    }


class WorkerRecorder:
    """Worker lifecycle counters of the telemetry contract."""

    def __init__(self, instruments: Instruments, max_workers: int) -> None:
        self._spawns = instruments.worker_spawns
        self._health_checks = instruments.worker_health_checks
        self._drains = instruments.worker_drains
        self._drain_duration = instruments.worker_drain_duration
        self._count = instruments.worker_count
        self._max_workers = max_workers
        self._lock = threading.Lock()
        # worker key -> (orchestrator, state), for execution.worker.count.
        self._workers: dict[Hashable, tuple[Orchestrator, WorkerState]] = {}

    @guarded
    def spawn(self, orchestrator: Any, outcome: Any, reason: Any = None) -> None:
        """One spawn attempt. A failure's reason outside the enum (or missing) is ``other``."""
        if not is_instrumentation_enabled():
            return
        result = _outcome(outcome)
        if result is None:
            return
        failure_reason = None
        if result is WorkerOutcome.FAILURE:
            failure_reason = to_enum(SpawnFailureReason, reason, SpawnFailureReason.OTHER)
        self._spawns.add(1, _spawn_attributes(_orchestrator(orchestrator), result, failure_reason))

    @guarded
    def health_check(self, orchestrator: Any, result: Any, *, cancelled: bool = False) -> None:
        """One finished health check; a cancelled probe gave no verdict and is not counted."""
        if cancelled or not is_instrumentation_enabled():
            return
        verdict = _health(result)
        if verdict is None:
            return
        self._health_checks.add(1, _health_attributes(_orchestrator(orchestrator), verdict))

    @guarded
    def drain(self, orchestrator: Any, outcome: Any, duration_seconds: float | None = None) -> None:
        """One drain. Its duration is recorded only for a drain that completed successfully."""
        if not is_instrumentation_enabled():
            return
        result = _outcome(outcome)
        if result is None:
            return
        which = _orchestrator(orchestrator)
        self._drains.add(1, _drain_attributes(which, result))
        if result is WorkerOutcome.SUCCESS and duration_seconds is not None:
            self._drain_duration.record(
                clamp_seconds(duration_seconds), _orchestrator_attributes(which)
            )

    @guarded
    def set_state(self, worker_key: Hashable, orchestrator: Any, state: Any) -> None:
        """Worker ``worker_key`` is now in ``state``; None removes it from the count."""
        if not is_instrumentation_enabled():
            return
        new_state = None if state is None else to_enum(WorkerState, state, WorkerState.OFFLINE)
        which = _orchestrator(orchestrator)
        with self._lock:
            previous = self._workers.get(worker_key)
            if new_state is None:
                self._workers.pop(worker_key, None)
            elif previous is None and len(self._workers) >= self._max_workers:
                return  # beyond the cap a new worker is not counted rather than grow state
            else:
                self._workers[worker_key] = (which, new_state)
        if previous is not None and previous[1] is new_state:
            return
        if previous is not None:
            self._count.add(-1, _count_attributes(*previous))
        if new_state is not None:
            self._count.add(1, _count_attributes(which, new_state))

    def known_workers(self) -> int:
        return len(self._workers)
