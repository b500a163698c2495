"""Tangle (``cloud_pipelines_backend``): its execution nodes' status column, instrumented.

Tangle keeps every execution node in a database and assigns
``ExecutionNode.container_execution_status`` from many places in its orchestrator loop, so the
adapter patches no code: when ``backend_types_sql`` is imported it instruments that column
(see ``status_columns``), with Tangle's vocabulary:

- ``ContainerExecutionStatus`` maps onto the canonical statuses (``PENDING`` is Tangle's
  "starting": a launched container not yet running; a suspended node goes back to it);
- a node that reuses a cached execution (``extra_data["reused_from_execution_node_id"]``) and
  succeeds is ``cached``, never ``succeeded``;
- the time a status began is read from the history Tangle keeps in ``extra_data``
  (``container_execution_status_history``, ``first_observed_at``), so durations survive
  restarts of the orchestrator;
- a node is a step named by its task id in the parent graph, with its id as task run id.

Only container nodes have a status; graph nodes and pipeline runs have none, so a node's span
has no parent of ours.

Tangle's launchers are its workers: a launch is a spawn (``launch_container_task``), a refresh
of a launched container a health check (``get_refreshed_launched_container_from_dict``: it
fails when the container cannot be found or read), a termination a drain
(``LaunchedContainer.terminate``). ``terminate`` only asks for the end (Kubernetes has a grace
period), so drains are counted but have no duration: it would not be the drain's.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import ModuleType
from typing import Any, Callable, Final

from opentelemetry_instrumentation_execstatus import telemetry
from opentelemetry_instrumentation_execstatus.adapters import Adapter
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, OnImport, Wrapper, wrap
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
    SpawnFailureReason,
)
from opentelemetry_instrumentation_execstatus.workers import WorkerRecorder

TANGLE = Orchestrator.TANGLE

TANGLE_STATUSES: Final[Mapping[str, ExecutionStatus]] = {
    "INVALID": ExecutionStatus.FAILED,  # an ended node whose task could not be run as given
    "UNINITIALIZED": ExecutionStatus.PENDING,
    "QUEUED": ExecutionStatus.QUEUED,
    "WAITING_FOR_UPSTREAM": ExecutionStatus.WAITING,
    "PENDING": ExecutionStatus.STARTING,
    "RUNNING": ExecutionStatus.RUNNING,
    "SUCCEEDED": ExecutionStatus.SUCCEEDED,
    "FAILED": ExecutionStatus.FAILED,
    "SYSTEM_ERROR": ExecutionStatus.SYSTEM_ERROR,
    "CANCELLING": ExecutionStatus.CANCELLING,
    "CANCELLED": ExecutionStatus.CANCELLED,
    "SKIPPED": ExecutionStatus.SKIPPED,
}
"""``ContainerExecutionStatus`` value -> canonical status; any other value is ``unknown``."""

EXTRA_DATA: Final = "extra_data"
REUSED_FROM: Final = "reused_from_execution_node_id"
STATUS_HISTORY: Final = "container_execution_status_history"


def _value(raw: Any) -> Any:
    return raw.value if isinstance(raw, Enum) else raw


def _extra_data(loaded: Mapping[str, Any]) -> Mapping[str, Any]:
    extra = loaded.get(EXTRA_DATA)
    return extra if isinstance(extra, Mapping) else {}


def tangle_status(raw: Any, loaded: Mapping[str, Any]) -> ExecutionStatus:
    """A node's canonical status; a success reused from the cache is ``cached``."""
    status = TANGLE_STATUSES.get(_value(raw), ExecutionStatus.UNKNOWN)
    if status is ExecutionStatus.SUCCEEDED and _extra_data(loaded).get(REUSED_FROM):
        return ExecutionStatus.CACHED
    return status


def tangle_status_changed_at(loaded: Mapping[str, Any], previous: Any) -> Any:
    """When ``previous`` began: the latest entry for it in the node's status history.

    Tangle's own listener may already have appended the new status, so the entry is looked up
    by status rather than taken from the end.
    """
    history = _extra_data(loaded).get(STATUS_HISTORY)
    if not isinstance(history, list):
        return None
    wanted = _value(previous)
    for entry in reversed(history):
        if isinstance(entry, Mapping) and entry.get("status") == wanted:
            return entry.get("first_observed_at")
    return None


def instrument_execution_nodes(execution_node: type) -> Callable[[], None]:
    """Instrument a Tangle-shaped ``ExecutionNode`` model; returns what undoes it."""
    from opentelemetry_instrumentation_execstatus.status_columns import (
        instrument_status_column,
    )

    column = instrument_status_column(
        execution_node.container_execution_status,  # type: ignore[attr-defined]
        name="task_id_in_parent_execution",
        parent="parent_execution_id",
        changed_at=tangle_status_changed_at,
        statuses=tangle_status,
        level=ExecutionLevel.STEP,
        orchestrator=TANGLE,
    )
    return column.remove


def _reporting(report: Callable[[WorkerRecorder, Exception | None], None]) -> Wrapper:
    """A wrapper that reports each call's outcome: ``None`` when it returned, the exception
    when it raised one. A call interrupted by a BaseException that is not an Exception (a
    cancellation, an exit) reports nothing: it gave no verdict."""

    def wrapper(wrapped: Any, _instance: Any, args: tuple, kwargs: dict) -> Any:
        try:
            result = wrapped(*args, **kwargs)
        except Exception as error:
            live = telemetry.current()
            if live is not None:
                report(live.workers, error)
            raise
        live = telemetry.current()
        if live is not None:
            report(live.workers, None)
        return result

    return wrapper


def _spawn_failure(error: Exception) -> SpawnFailureReason:
    return (
        SpawnFailureReason.TIMEOUT if isinstance(error, TimeoutError) else SpawnFailureReason.OTHER
    )


LAUNCHER_METHODS: Final[dict[str, Wrapper]] = {
    "launch_container_task": _reporting(
        lambda workers, error: workers.spawn(
            TANGLE, error is None, None if error is None else _spawn_failure(error)
        )
    ),
    "get_refreshed_launched_container_from_dict": _reporting(
        lambda workers, error: workers.health_check(TANGLE, error is None)
    ),
    "terminate": _reporting(lambda workers, error: workers.drain(TANGLE, error is None)),
}
LAUNCHER_MODULES: Final = tuple(
    f"cloud_pipelines_backend.launchers.{name}"
    for name in (
        "local_docker_launchers",
        "kubernetes_launchers",
        "google_kubernetes_launchers",
        "huggingface_launchers",
        "skypilot_launchers",
    )
)


def instrument_launchers(module: ModuleType) -> Callable[[], None]:
    """Wrap the launch, refresh and terminate methods the classes of ``module`` define.

    Each concrete launcher overrides the interface's methods, so they are wrapped where they
    are defined (a subclass that inherits one is covered by its base). Returns what undoes it.
    """
    undo: list[Callable[[], None]] = []

    def unwrap_all() -> None:
        for step in reversed(undo):
            step()

    try:
        for cls in list(vars(module).values()):
            if not isinstance(cls, type) or cls.__module__ != module.__name__:
                continue
            for method, wrapper in LAUNCHER_METHODS.items():
                if callable(cls.__dict__.get(method)):
                    undo.append(wrap(cls, method, wrapper))
    except Exception:
        unwrap_all()  # all or nothing: a half-wrapped module would outlive uninstrument()
        raise
    return unwrap_all


class TangleAdapter(Adapter):
    name = "tangle"
    orchestrator = Orchestrator.TANGLE
    top_module = "cloud_pipelines_backend"
    distribution = None  # Tangle is not published as a distribution

    def patches(self) -> list[AnyPatch]:
        return [
            OnImport("cloud_pipelines_backend.backend_types_sql", _instrument_models),
            *(OnImport(module, instrument_launchers) for module in LAUNCHER_MODULES),
        ]


def _instrument_models(module: ModuleType) -> Callable[[], None]:
    return instrument_execution_nodes(module.ExecutionNode)
