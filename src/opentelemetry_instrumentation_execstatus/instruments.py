"""The metric instruments, created once per ``instrument()`` from the user's meter."""

from __future__ import annotations

import functools
from typing import Callable, NoReturn

from opentelemetry.metrics import Meter

from opentelemetry_instrumentation_execstatus import semconv
from opentelemetry_instrumentation_execstatus.counts import Attributes, observed_up_down_counter
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    MetricUnit,
    Orchestrator,
    WorkerState,
)


class ReadOnlyAttributes(dict[str, str]):
    """Attributes shared by every sample with the same labels: a dict that refuses writes.

    Not a ``MappingProxyType``: the SDK keeps the attributes it is handed on its data points,
    and exporters may copy those (the console exporter's ``to_json`` deep-copies them with SDK
    1.41, the newest for Python 3.9); a proxy cannot be copied nor pickled, this dict can, its
    copy a plain dict. (Building one, ``dict.__init__`` does not go through ``__setitem__``.)
    """

    __slots__ = ()

    def _read_only(self, *_args: object, **_kwargs: object) -> NoReturn:
        raise TypeError("execstatus attributes are shared by many samples: read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __copy__(self) -> dict[str, str]:
        return dict(self)

    def __deepcopy__(self, _memo: object) -> dict[str, str]:
        return dict(self)

    def __reduce__(self) -> tuple[type, tuple[dict[str, str]]]:
        return dict, (dict(self),)


def cached_attributes(
    maxsize: int,
) -> Callable[[Callable[..., dict[str, str]]], Callable[..., Attributes]]:
    """One read-only attribute mapping per label combination: no dict is built per record,
    and an SDK plug-in that writes into the attributes it is handed cannot relabel every later
    sample that shares them (its write raises, which costs only its own sample)."""

    def decorate(build: Callable[..., dict[str, str]]) -> Callable[..., Attributes]:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(build)
        def cached(*labels: object) -> Attributes:
            return ReadOnlyAttributes(build(*labels))

        return cached

    return decorate


@cached_attributes(maxsize=1024)
def active_attributes(
    orchestrator: Orchestrator, level: ExecutionLevel, status: ExecutionStatus
) -> dict[str, str]:
    """``execution.active``'s attributes for one (orchestrator, level, status) key."""
    return {
        semconv.EXECUTION_STATUS: status.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
        semconv.EXECUTION_LEVEL: level.value,
    }


@cached_attributes(maxsize=128)
def worker_count_attributes(orchestrator: Orchestrator, state: WorkerState) -> dict[str, str]:
    """``execution.worker.count``'s attributes for one (orchestrator, state) key."""
    return {
        semconv.CICD_WORKER_STATE: state.value,
        semconv.EXECUTION_ORCHESTRATOR: orchestrator.value,
    }


class Instruments:
    """Every instrument of the telemetry contract, by role."""

    def __init__(self, meter: Meter) -> None:
        self.status_transition_duration = meter.create_histogram(
            semconv.STATUS_TRANSITION_DURATION,
            unit=MetricUnit.SECONDS.value,
            description="Time an execution spent in its previous status, recorded at each "
            "change of canonical status.",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS_SECONDS),
        )
        self.active_executions = observed_up_down_counter(
            meter,
            semconv.ACTIVE_EXECUTIONS,
            unit=MetricUnit.EXECUTION.value,
            description="Executions in flight, by their current (non-final) status.",
            attributes=active_attributes,
        )
        self.worker_spawns = meter.create_counter(
            semconv.WORKER_SPAWNS,
            unit=MetricUnit.SPAWN.value,
            description="Worker spawn attempts, by outcome and failure reason.",
        )
        self.worker_health_checks = meter.create_counter(
            semconv.WORKER_HEALTH_CHECKS,
            unit=MetricUnit.CHECK.value,
            description="Completed worker health checks, by result.",
        )
        self.worker_drains = meter.create_counter(
            semconv.WORKER_DRAINS,
            unit=MetricUnit.DRAIN.value,
            description="Worker drains, by outcome.",
        )
        self.worker_drain_duration = meter.create_histogram(
            semconv.WORKER_DRAIN_DURATION,
            unit=MetricUnit.SECONDS.value,
            description="Time a worker drain took, recorded only when the drain completed.",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS_SECONDS),
        )
        self.worker_count = observed_up_down_counter(
            meter,
            semconv.WORKER_COUNT,
            unit=MetricUnit.WORKER.value,
            description="Workers known to the orchestrator, by state.",
            attributes=worker_count_attributes,
        )
