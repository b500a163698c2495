"""Public API for orchestrators we don't patch: one call per status change or worker event.

A home-grown control plane (duckgres, a cron of scripts, a queue consumer) reports what it
knows and gets the same spans, histogram and counters as a patched framework, with the same
normalisation: unknown statuses become ``unknown``, label values stay within their enums,
negative durations become 0. Every function is a no-op until the instrumentation is on
(``ExecStatusInstrumentor().instrument()`` or ``opentelemetry-instrument``), and never raises.

Example::

    from opentelemetry_instrumentation_execstatus import api

    api.report_status("run-42", "queued", level="pipeline", name="nightly")
    api.report_status("run-42/load", "running", name="load", parent_id="run-42")
    api.report_status("run-42/load", "succeeded")
    api.report_status("run-42", "succeeded")
    api.report_worker_spawn(success=False, reason="pod_ready")
    with api.health_check():
        ping(worker)  # raises: fail; returns: pass; cancelled: not counted
    with api.worker_drain():
        drain(worker)  # its duration is recorded only if this completes

Worker values follow duckgres's rules, made strict (see ``workers``): an empty or unrecognised
outcome or health result drops the sample; a spawn failure's reason is ``unknown`` when missing
and ``other`` when outside the enum; duckgres's lifecycle states (``idle``, ``hot``,
``draining``...) are counted as the worker state they stand for, and an unrecognised state is
ignored.

The API reports like any adapter, through one of its own (``PublicApi``): its executions' keys,
identities and worker reports are the adapter kit's, under the orchestrator ``api``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Hashable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.outcomes import outcome_of
from opentelemetry_instrumentation_execstatus.clock import Timestamp
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.patching import AnyPatch
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    HealthResult,
    Orchestrator,
    SpawnFailureReason,
    WorkerOutcome,
    WorkerState,
)
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

__all__ = [
    "ExecutionLevel",
    "ExecutionStatus",
    "HealthProbe",
    "HealthResult",
    "SpawnFailureReason",
    "WorkerOutcome",
    "WorkerState",
    "health_check",
    "report_status",
    "report_worker_drain",
    "report_worker_health_check",
    "report_worker_spawn",
    "report_worker_state",
    "worker_drain",
]


class PublicApi(Adapter):
    """The adapter the API reports through. It patches nothing, so it is not one of the
    instrumentor's adapters: the API makes one for each live core, on first use."""

    name = "api"
    orchestrator = Orchestrator.API
    top_module = "opentelemetry_instrumentation_execstatus"
    distribution = None

    def __init__(self, live: Telemetry) -> None:
        super().__init__(live)
        self.live = live
        self.tracker = live.tracker

    def patches(self) -> list[AnyPatch]:
        return []

    def serves(self, live: Telemetry) -> bool:
        return self.live is live

    def execution_key(self, execution_id: Hashable) -> tuple[Hashable, ...]:
        """The key of a caller's id (also a worker's): the same id always gives the same key.
        Raises for a tuple id whose items cannot be iterated or measured."""
        return self.key(_compact(execution_id))


_serving: PublicApi | None = None

# ``Identity(*fields)`` without its Python-level ``__new__`` (what ``Identity._make`` does):
# one identity is built per report.
_identity = tuple.__new__


def _adapter() -> PublicApi | None:
    """The API's adapter of the live core; None while the instrumentation is off."""
    global _serving
    live = telemetry.current()
    adapter = _serving
    if adapter is not None and adapter.live is live:
        return adapter
    if live is None:
        _serving = None
        return None
    adapter = _serving = PublicApi(live)
    return adapter


MAX_ID_LENGTH = 256
"""Longer string or bytes ids are kept as their digest: an ended id is remembered for a while
(to tell a late event from a new start), and a caller's megabyte-long ids must not be."""


def _compact(value: Any) -> Any:
    """``value``, or for a string or bytes longer than ``MAX_ID_LENGTH`` (also inside a tuple)
    a short digest of it: the same id always gives the same key."""
    if isinstance(value, (str, bytes)):
        if len(value) <= MAX_ID_LENGTH:
            return value
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        return ("digest", type(value).__name__, len(value), hashlib.blake2b(data).hexdigest())
    if isinstance(value, tuple):
        return tuple(_compact(item) for item in value)
    return value


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
    change happened, if not now: durations then survive the reporter's restarts; one that is
    unreadable, NaN, infinite, before 2000 or more than a day ahead is taken as now.

    Reusing an id: after its execution ended, a non-final status starts a new execution,
    unless its ``timestamp`` is earlier than that end (then it is a late event, dropped); a
    final status for an ended id is a duplicate and dropped. Text (names, ids, error messages)
    is exported as valid UTF-8 and capped; an id or name whose ``str()`` fails is left out.
    """
    adapter = _serving
    if adapter is None or adapter.live is not telemetry.current():
        adapter = _adapter()
        if adapter is None:
            return
    tracker = adapter.tracker
    if tracker.is_off():
        return
    # What ``adapter.report(key, status, adapter.identity(level, ...), ...)`` does, written out
    # (the same key, identity and transition): this is every status change of the API.
    kind = type(execution_id)
    if kind is int or (kind is str and len(execution_id) <= MAX_ID_LENGTH):  # type: ignore[arg-type]
        key: tuple[Hashable, ...] = (PublicApi.name, execution_id)  # ``execution_key``'s
    else:
        try:
            key = adapter.execution_key(execution_id)
        except Exception:  # a tuple id whose items cannot be iterated or measured
            return
    if parent_id is None:
        parent_key = None
    else:
        try:
            parent_key = adapter.execution_key(parent_id)
        except Exception:
            return
    identity = _identity(
        Identity,
        (
            PublicApi.orchestrator,
            level,
            name,
            pipeline,
            run_id if run_id is not None else execution_id,
            attempt,
            parent_key,
            correlation_id,
        ),
    )
    if error is None:
        tracker.transition_on(key, status, identity, timestamp)
    elif isinstance(error, BaseException):
        tracker.transition_on(key, status, identity, timestamp, error)
    else:
        tracker.transition_on(key, status, identity, timestamp, None, error)


def report_worker_spawn(
    success: bool | WorkerOutcome | str, reason: SpawnFailureReason | str | None = None
) -> None:
    """A worker spawn attempt, and for a failure why it failed.

    A failure's ``reason`` is ``unknown`` when missing or empty (a forgotten reason still
    shows) and ``other`` when outside the enum; a success carries no reason. An unrecognised
    ``success`` (not a bool, ``success`` or ``failure``) drops the sample.
    """
    adapter = _adapter()
    if adapter is not None:  # the recorder returns at once when nothing records
        adapter.workers.spawn(success, reason)


def report_worker_health_check(
    passed: bool | HealthResult | str, *, cancelled: bool = False
) -> None:
    """A finished health check. A cancelled probe gave no verdict and is not counted.

    ``passed`` is a bool, ``pass`` or ``fail``; anything else drops the sample. See
    ``health_check()`` for a probe that counts itself.
    """
    adapter = _adapter()
    if adapter is not None:  # the recorder returns at once when nothing records
        adapter.workers.health_check(passed, cancelled=cancelled)


def report_worker_drain(
    success: bool | WorkerOutcome | str, duration_seconds: float | None = None
) -> None:
    """A drain; ``duration_seconds`` (negative or NaN: 0) is recorded only for a drain that
    completed successfully. An unrecognised ``success`` drops the sample."""
    adapter = _adapter()
    if adapter is not None:  # the recorder returns at once when nothing records
        adapter.workers.drain(success, duration_seconds)


def report_worker_state(worker_id: Hashable, state: WorkerState | str | None) -> None:
    """Worker ``worker_id`` is now available, busy or offline; None forgets it.

    duckgres's lifecycle states are accepted for what they mean: ``idle``, ``hot_idle`` are
    available; ``reserved``, ``activating``, ``hot`` are busy; ``spawning``, ``draining``,
    ``retired``, ``lost`` are offline. An empty or unrecognised state is ignored: the worker
    stays counted in its last state rather than be guessed offline.
    """
    adapter = _adapter()
    if adapter is not None and not adapter.workers.is_off():
        try:
            key = adapter.execution_key(worker_id)
        except Exception:
            return
        adapter.workers.set_state(key, state)


class HealthProbe:
    """One health check in progress, counted when its ``with`` block ends (``health_check``).

    The block gives a ``fail`` verdict by raising, or, when the check answered "unhealthy"
    without an exception, by calling ``failed()``; otherwise the check passed.
    """

    __slots__ = ("_passed",)

    def __init__(self) -> None:
        self._passed = True

    @property
    def passed(self) -> bool:
        return self._passed

    def failed(self) -> None:
        """The worker answered, and is unhealthy: count ``fail`` without raising."""
        self._passed = False

    def __enter__(self) -> HealthProbe:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A class, not @contextmanager: the block's exception is never thrown into a generator,
        # so it propagates with its own traceback untouched (returning None never suppresses).
        # An interrupt (asyncio.CancelledError, KeyboardInterrupt, SystemExit) cancelled the
        # probe before its verdict, even after failed(): nothing is counted.
        outcome = outcome_of(exc)
        report_worker_health_check(
            outcome is ExecutionStatus.SUCCEEDED and self._passed,
            cancelled=outcome is ExecutionStatus.CANCELLED,
        )


def health_check() -> HealthProbe:
    """Count the health check run in the ``with`` block: ``with api.health_check() as probe:``.

    ``pass`` when the block completes (unless it called ``probe.failed()``), ``fail`` when it
    raises an Exception, and nothing at all when it is cancelled (``asyncio.CancelledError``,
    ``KeyboardInterrupt``, ``SystemExit``: any BaseException that is not an Exception), since a
    cancelled probe says nothing about the worker, only about the caller's shutdown. The
    exception always propagates unchanged.
    """
    return HealthProbe()


class _DrainTimer:
    """The context manager of ``worker_drain()``: a class for the same reason as HealthProbe."""

    __slots__ = ("_started",)

    def __init__(self) -> None:
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.monotonic()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            report_worker_drain(True, time.monotonic() - self._started)
        else:
            report_worker_drain(False)


def worker_drain() -> AbstractContextManager[None]:
    """Time a drain: ``with api.worker_drain(): drain(worker)``.

    Success, with its duration, when the block completes; failure, with no duration, when it
    raises. A drain interrupted by cancellation (``asyncio.CancelledError``,
    ``KeyboardInterrupt``, ``SystemExit``) is a failure too: unlike a cancelled health probe,
    which merely gave no verdict, a cancelled drain was attempted and did not drain the worker,
    which may still hold work; and it did not finish, so it has no duration (duckgres records
    the drain time only once the drain really finished). The exception propagates unchanged.
    """
    return _DrainTimer()
