"""Public API for orchestrators we don't patch: one call per status change or worker event.

A home-grown control plane (seed 004's duckgres, a cron of scripts, a queue consumer) reports
what it knows and gets the same spans, histogram and counters as a patched framework, with
the same normalisation: unknown statuses become ``unknown``, label values stay within their
enums, negative durations become 0. Every function is a no-op until the instrumentation is
on (``ExecStatusInstrumentor().instrument()`` or ``opentelemetry-instrument``), and never raises.

Example::

    from opentelemetry_instrumentation_execstatus import api

    api.report_status("run-42", "queued", level="pipeline", name="nightly")
    api.report_status("run-42/load", "running", name="load", parent_id="run-42")
    api.report_status("run-42/load", "succeeded")
    api.report_status("run-42", "succeeded")
    api.report_worker_spawn(success=False, reason="pod_ready")
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.clock import Timestamp
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    HealthResult,
    Orchestrator,
    SpawnFailureReason,
    WorkerOutcome,
    WorkerState,
)

__all__ = [
    "ExecutionLevel",
    "ExecutionStatus",
    "HealthResult",
    "SpawnFailureReason",
    "WorkerOutcome",
    "WorkerState",
    "report_status",
    "report_worker_drain",
    "report_worker_health_check",
    "report_worker_spawn",
    "report_worker_state",
    "worker_drain",
]

API = Orchestrator.API


def _key(execution_id: Hashable) -> Hashable:
    return ("api", execution_id)


def report_status(
    execution_id: Hashable,
    status: ExecutionStatus | str,
    *,
    level: ExecutionLevel | str = ExecutionLevel.STEP,
    name: str | None = None,
    pipeline: str | None = None,
    parent_id: Hashable | None = None,
    run_id: str | None = None,
    attempt: int | None = None,
    correlation_id: str | None = None,
    timestamp: Timestamp | None = None,
    error: BaseException | str | None = None,
) -> None:
    """Execution ``execution_id`` is now in ``status``.

    The first report of an execution starts its span (a child of ``parent_id``'s, if that is
    in flight); a final status (succeeded, cached, failed, system_error, skipped, cancelled)
    ends it. ``level``, ``name``, ``pipeline``, ``parent_id``, ``run_id``, ``attempt`` and
    ``correlation_id`` (what ties retries of one business request together) are read on the
    first report only. ``timestamp`` (a datetime or epoch seconds) is when the
    change happened, if not now: durations then survive the reporter's restarts.
    """
    live = telemetry.current()
    if live is None:
        return
    live.tracker.transition(
        _key(execution_id),
        status,
        orchestrator=API,
        level=level,  # type: ignore[arg-type]
        name=name,
        pipeline_name=pipeline,
        parent_key=None if parent_id is None else _key(parent_id),
        run_id=run_id if run_id is not None else str(execution_id),
        attempt=attempt,
        correlation_id=correlation_id,
        timestamp=timestamp,
        error=error,
    )


def report_worker_spawn(success: bool, reason: SpawnFailureReason | str | None = None) -> None:
    """A worker spawn attempt; a failure's ``reason`` outside the enum becomes ``other``."""
    live = telemetry.current()
    if live is not None:
        live.workers.spawn(API, success, reason)


def report_worker_health_check(passed: bool, *, cancelled: bool = False) -> None:
    """A finished health check. A cancelled probe gave no verdict and is not counted."""
    live = telemetry.current()
    if live is not None:
        live.workers.health_check(API, passed, cancelled=cancelled)


def report_worker_drain(success: bool, duration_seconds: float | None = None) -> None:
    """A drain; ``duration_seconds`` is recorded only for a drain that completed."""
    live = telemetry.current()
    if live is not None:
        live.workers.drain(API, success, duration_seconds)


def report_worker_state(worker_id: Hashable, state: WorkerState | str | None) -> None:
    """Worker ``worker_id`` is now available, busy or offline; None forgets it."""
    live = telemetry.current()
    if live is not None:
        live.workers.set_state(_key(worker_id), API, state)


@contextmanager
def worker_drain() -> Iterator[None]:
    """Time a drain: success (with its duration) if the block completes, failure if it raises."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        report_worker_drain(False)
        raise
    report_worker_drain(True, time.monotonic() - started)
