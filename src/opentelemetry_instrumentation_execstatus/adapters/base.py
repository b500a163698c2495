"""The base every orchestrator adapter is built on.

Like botocore's ``extensions`` in opentelemetry-python-contrib (one base, a few hooks, each
called under a guard), an adapter declares what it supports and where it hooks, and translates
its framework's events into the core's calls through the helpers here: keys, identities, one
status report, one outcome rule, worker reports bound to its orchestrator, and the few facts of
the OpenTelemetry context a framework that traces itself needs. Adapters import nothing from
OpenTelemetry; the core is handed to them (``Telemetry``), never looked up.

Enablement: an adapter is loaded when its framework's top-level module is imported (see
``adapters.ADAPTERS``), and used when that module is the framework (not a namespace package of
the same name) and the installed version of its distribution is in ``supported``. A version
outside the range is not patched, and one log line per distribution says what was found and
what is supported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any, Callable, ClassVar

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from opentelemetry_instrumentation_execstatus import tracing
from opentelemetry_instrumentation_execstatus.adapters.calls import observe_call
from opentelemetry_instrumentation_execstatus.adapters.outcomes import outcome_of, reported_error
from opentelemetry_instrumentation_execstatus.clock import Timestamp
from opentelemetry_instrumentation_execstatus.forking import after_fork_in_child, new_lock_like
from opentelemetry_instrumentation_execstatus.identity import Identity
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, Wrapper
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
    SpawnFailureReason,
)
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry
from opentelemetry_instrumentation_execstatus.workers import WorkerRecorder

_LOG = logging.getLogger("opentelemetry_instrumentation_execstatus")


class AdapterWorkers:
    """The worker recorder, bound to one orchestrator: what an adapter reports of its workers."""

    __slots__ = ("_orchestrator", "_recorder")

    def __init__(self, recorder: WorkerRecorder, orchestrator: Orchestrator) -> None:
        self._recorder = recorder
        self._orchestrator = orchestrator

    def is_off(self) -> bool:
        return self._recorder.is_off()

    def spawn(self, success: Any, reason: Any = None) -> None:
        self._recorder.spawn(self._orchestrator, success, reason)

    def health_check(self, passed: Any, *, cancelled: bool = False) -> None:
        self._recorder.health_check(self._orchestrator, passed, cancelled=cancelled)

    def drain(self, success: Any, duration_seconds: float | None = None) -> None:
        self._recorder.drain(self._orchestrator, success, duration_seconds)

    def set_state(self, worker_key: Hashable, state: Any) -> None:
        self._recorder.set_state(worker_key, self._orchestrator, state)

    # Wrappers for framework calls that are a worker operation. The interrupt rule for
    # workers: an interrupted spawn is a failure (``context_canceled``): no worker is known to
    # have started; an interrupted health check gave no verdict and is not counted; an
    # interrupted drain is a failure with no duration, as the worker may still hold work.

    def spawn_call(self, reason_of: Callable[[Exception], Any] | None = None) -> Wrapper:
        """Each call is a spawn: it returned, ``success``; it raised, ``failure`` with the
        reason ``reason_of(error)`` gives (``unknown`` without one)."""

        def failed(_state: Any, error: BaseException) -> None:
            if isinstance(error, Exception):
                self.spawn(False, None if reason_of is None else reason_of(error))
            else:
                self.spawn(False, SpawnFailureReason.CONTEXT_CANCELED)

        return observe_call(
            on_call=self._observed,
            on_success=lambda _state, _result: self.spawn(True),
            on_error=failed,
            name=f"{self._orchestrator.value} worker spawn",
        )

    def health_check_call(self) -> Wrapper:
        """Each call is a health check: it returned, ``pass``; it raised, ``fail``."""
        return observe_call(
            on_call=self._observed,
            on_success=lambda _state, _result: self.health_check(True),
            on_error=lambda _state, error: self.health_check(
                False, cancelled=not isinstance(error, Exception)
            ),
            name=f"{self._orchestrator.value} worker health check",
        )

    def drain_call(self, *, timed: bool = True) -> Wrapper:
        """Each call is a drain: it returned, ``success`` (with its duration when ``timed``:
        only when the call's return means the worker has drained); it raised, ``failure``."""
        return observe_call(
            on_call=lambda _instance, _args, _kwargs: None if self.is_off() else time.monotonic(),
            on_success=lambda started, _result: self.drain(
                True, time.monotonic() - started if timed else None
            ),
            on_error=lambda _started, _error: self.drain(False),
            name=f"{self._orchestrator.value} worker drain",
        )

    def _observed(self, _instance: Any, _args: tuple, _kwargs: dict) -> bool | None:
        return None if self.is_off() else True


class Adapter(ABC):
    """Knows one orchestrator (or one API line of it): what to patch and what its events mean."""

    name: ClassVar[str]
    """The adapter's own name, unique: the ``orchestrators`` option selects adapters by it
    (or by ``orchestrator``'s value, which selects every line of that orchestrator)."""

    orchestrator: ClassVar[Orchestrator]
    """``execution.orchestrator`` of everything the adapter reports."""

    top_module: ClassVar[str]
    """The framework's top-level module: the adapter is loaded when it is imported (it is
    listed with the adapter in ``adapters.ADAPTERS``)."""

    distribution: ClassVar[str | None]
    """The distribution whose installed version is checked against ``supported``; None when
    the framework is not a distribution of its own (a model shape, a vendored module)."""

    supported: ClassVar[str] = ""
    """The version range the adapter supports and the test suite runs, as a PEP 440
    specifier (``">= 1.1, < 1.2"``)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._tracker = telemetry.tracker
        self.workers = AdapterWorkers(telemetry.workers, self.orchestrator)
        after_fork_in_child(self._after_fork)

    # -- declaration -------------------------------------------------------------------------

    @classmethod
    def requirement(cls) -> str | None:
        """``"<distribution> <supported>"``, as ``_instruments_any`` lists it."""
        if cls.distribution is None:
            return None
        return f"{cls.distribution} {cls.supported}".strip()

    @classmethod
    def is_available(cls) -> bool:
        """Whether the framework can be imported, found without importing it. A directory
        that merely has the framework's name (a namespace package: no ``__init__``, such as a
        project's ``tests/<framework>``) is not the framework."""
        spec = importlib.util.find_spec(cls.top_module)
        return spec is not None and spec.origin is not None

    @classmethod
    def supports(cls, version: str) -> bool:
        """Whether ``version`` of the distribution is in ``supported`` (pre-releases too)."""
        try:
            return SpecifierSet(cls.supported).contains(Version(version), prereleases=True)
        except (InvalidSpecifier, InvalidVersion):
            return False

    @abstractmethod
    def patches(self) -> list[AnyPatch]:
        """What to wrap; each patch is applied when its module is imported."""

    # -- helpers for reporting ---------------------------------------------------------------

    def key(self, *parts: Hashable) -> tuple[Hashable, ...]:
        """An execution key unique among all adapters: the adapter's name, then ``parts``."""
        return (self.name, *parts)

    def identity(self, level: ExecutionLevel, **fields: Any) -> Identity:
        """An execution's identity at ``level`` (``name=``, ``pipeline=``, ``run_id=``,
        ``attempt=``, ``parent=``, ``correlation_id=``), of this adapter's orchestrator."""
        return Identity(self.orchestrator, level, **fields)

    def is_off(self) -> bool:
        """Nothing records now: an adapter may skip building what it would report."""
        return self._tracker.is_off()

    def report(
        self,
        key: Hashable,
        status: ExecutionStatus,
        identity: Identity,
        *,
        timestamp: Timestamp | None = None,
        error: BaseException | None = None,
        error_type: Any = None,
        **tracking: Any,
    ) -> None:
        """Execution ``key`` is now in ``status`` (``StatusTracker.transition``)."""
        self._tracker.transition(
            key,
            status,
            identity,
            timestamp=timestamp,
            error=error,
            error_type=error_type,
            **tracking,
        )

    def end(
        self,
        key: Hashable,
        identity: Identity,
        error: BaseException | None,
        *,
        timestamp: Timestamp | None = None,
    ) -> None:
        """End execution ``key`` by the outcome of its call: ``error`` None is ``succeeded``,
        an ``Exception`` ``failed`` (with its ``error.type``), an interrupt ``cancelled``."""
        self._tracker.transition(
            key, outcome_of(error), identity, timestamp=timestamp, error=reported_error(error)
        )

    def hand_off(self, key: Hashable) -> None:
        """Execution ``key`` goes on in another process: its span ends here, still in its
        status, and the process that takes it over carries on (``StatusTracker.hand_off``)."""
        self._tracker.hand_off(key)

    def kept_series(self, identity: Identity) -> Any:
        """The labels of executions whose state the framework keeps itself, too many for an
        in-flight record each (``StatusTracker.kept_series``): made once per identity."""
        return self._tracker.kept_series(identity)

    def kept_change(
        self,
        series: Any,
        previous: ExecutionStatus | None,
        current: ExecutionStatus,
        elapsed_ns: int,
    ) -> None:
        """One execution of ``series`` went from ``previous`` to ``current`` after
        ``elapsed_ns`` in ``previous``: its sample and ``execution.active``, nothing else
        (``StatusTracker.kept_change``)."""
        self._tracker.kept_change(series, previous, current, elapsed_ns)

    def reserve_span(self, name: str) -> str | None:
        """Reserve, under the current context, the span of an execution that starts here and
        ends in another process, which writes it then (``tracing.reserved_parent``,
        ``tracing.opening_reserved``): its ids as text for the messages to carry, or None."""
        return self._tracker.reserve_span(tracing.current_context(), name)

    def flush(self) -> None:
        """Export now what this process recorded: the framework is about to end it without
        interpreter shutdown (a recycled pool child). Never raises."""
        self._telemetry.exporters.flush()

    def status_of(self, key: Hashable) -> ExecutionStatus | None:
        """The current status of an execution in flight, or None."""
        return self._tracker.status_of(key)

    def context_of(self, key: Hashable) -> tracing.Context | None:
        """The span context of an execution in flight, to parent work the tracker doesn't see."""
        return self._tracker.context_of(key)

    @property
    def max_in_flight(self) -> int:
        """The cap an adapter's own per-execution state keeps to, like the tracker's."""
        return self._telemetry.config.max_in_flight

    @property
    def name_cardinality_limit(self) -> int:
        """How many distinct names an adapter's own per-name state keeps, like the metrics."""
        return self._telemetry.config.name_cardinality_limit

    @property
    def item_spans(self) -> bool:
        return self._telemetry.config.item_spans

    # -- fork --------------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """Re-create the adapter's locks in a forked child: one that a parent thread held at
        fork would never be released there, and the child's next call would hang."""
        for attribute, value in list(vars(self).items()):
            new_lock = new_lock_like(value)
            if new_lock is not None:
                setattr(self, attribute, new_lock)


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def enabled_adapters(
    candidates: Sequence[type[Adapter]], selected: frozenset[str] | None
) -> list[type[Adapter]]:
    """The adapters to use: selected (by name or orchestrator), importable, and supporting the
    installed version. One line per distribution is logged for a version none supports."""
    chosen = [
        adapter
        for adapter in candidates
        if (selected is None or adapter.name in selected or adapter.orchestrator.value in selected)
        and adapter.is_available()
    ]
    by_distribution: dict[str | None, list[type[Adapter]]] = {}
    for adapter in chosen:
        by_distribution.setdefault(adapter.distribution, []).append(adapter)
    enabled: list[type[Adapter]] = []
    for distribution, lines in by_distribution.items():
        found = None if distribution is None else installed_version(distribution)
        if found is None:  # no metadata to check (a source tree on the path): trust the import
            enabled.extend(lines)
            continue
        supporting = [adapter for adapter in lines if adapter.supports(found)]
        if not supporting:
            _LOG.warning(
                "execstatus: %s %s is installed, but only %s is supported: not instrumented",
                distribution,
                found,
                " or ".join(str(adapter.requirement()) for adapter in lines),
            )
        enabled.extend(supporting)
    return enabled
