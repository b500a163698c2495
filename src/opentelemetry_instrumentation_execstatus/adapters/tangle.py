"""Tangle (``cloud_pipelines_backend``): a preset of the SQLAlchemy status columns, and its
launchers as workers.

Tangle keeps every execution node in a database and assigns
``ExecutionNode.container_execution_status`` from many places in its orchestrator loop, so the
adapter patches no code: when ``backend_types_sql`` is imported it instruments that column
with the SQLAlchemy status columns (``adapters.sqlalchemy``), reported through this adapter,
with Tangle's vocabulary:

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
period), so drains are counted but have no duration: it would not be the drain's. A call
interrupted (``KeyboardInterrupt``, ``SystemExit``) follows the rule for workers: a launch is a
failed spawn (``context_canceled``), a refresh is no verdict and not counted, a termination is
a failed drain.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Final

from opentelemetry_instrumentation_execstatus.adapters.base import Adapter
from opentelemetry_instrumentation_execstatus.adapters.outcomes import StatusMap
from opentelemetry_instrumentation_execstatus.patching import AnyPatch, OnImport, Wrapper, wrap
from opentelemetry_instrumentation_execstatus.semconv import (
    ExecutionLevel,
    ExecutionStatus,
    Orchestrator,
    SpawnFailureReason,
)
from opentelemetry_instrumentation_execstatus.telemetry import Telemetry

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

CONTAINER_STATUS = StatusMap(TANGLE_STATUSES, case_sensitive=True)

EXTRA_DATA: Final = "extra_data"
REUSED_FROM: Final = "reused_from_execution_node_id"
STATUS_HISTORY: Final = "container_execution_status_history"

MODELS_MODULE: Final = "cloud_pipelines_backend.backend_types_sql"
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


# What a JSON column's value is tested for: a dict first (what it loads, what Tangle assigns;
# a plain type check), else any other mapping (the slower check of an abstract class).
_MAPPINGS: Final = (dict, Mapping)
_NO_EXTRA_DATA: Final[Mapping[str, Any]] = MappingProxyType({})


def _extra_data(loaded: Mapping[str, Any]) -> Mapping[str, Any]:
    extra = loaded.get(EXTRA_DATA)
    return extra if isinstance(extra, _MAPPINGS) else _NO_EXTRA_DATA


# ``CONTAINER_STATUS`` of each enum member seen (Tangle assigns ``ContainerExecutionStatus``
# members, and a member's value never changes), by its class and name: no code of the value's
# own (its ``__hash__``) runs for the lookup. Bounded: a few enums of a dozen members each.
_MEMBER_STATUSES: dict[tuple[type, str], ExecutionStatus] = {}
_MEMBER_STATUSES_MAX: Final = 256


def _container_status(raw: Any) -> ExecutionStatus:
    """``CONTAINER_STATUS(raw)``, for an enum member looked up once."""
    kind = type(raw)
    if not issubclass(kind, Enum) or type(raw._name_) is not str:
        return CONTAINER_STATUS(raw)
    key = (kind, raw._name_)
    status = _MEMBER_STATUSES.get(key)
    if status is None:
        status = CONTAINER_STATUS(raw)
        if len(_MEMBER_STATUSES) < _MEMBER_STATUSES_MAX:
            _MEMBER_STATUSES[key] = status
    return status


def tangle_status(raw: Any, loaded: Mapping[str, Any]) -> ExecutionStatus:
    """A node's canonical status; a success reused from the cache is ``cached``."""
    status = _container_status(raw)
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
    wanted = previous._value_ if isinstance(previous, Enum) else previous  # what .value reads
    for entry in reversed(history):
        if isinstance(entry, _MAPPINGS) and entry.get("status") == wanted:
            return entry.get("first_observed_at")
    return None


def _spawn_failure(error: Exception) -> SpawnFailureReason:
    return (
        SpawnFailureReason.TIMEOUT if isinstance(error, TimeoutError) else SpawnFailureReason.OTHER
    )


class TangleAdapter(Adapter):
    name = "tangle"
    orchestrator = Orchestrator.TANGLE
    top_module = "cloud_pipelines_backend"
    distribution = None  # Tangle is not published as a distribution

    def __init__(self, telemetry: Telemetry) -> None:
        super().__init__(telemetry)
        self._launcher_methods: dict[str, Wrapper] = {
            "launch_container_task": self.workers.spawn_call(reason_of=_spawn_failure),
            "get_refreshed_launched_container_from_dict": self.workers.health_check_call(),
            "terminate": self.workers.drain_call(timed=False),
        }

    def patches(self) -> list[AnyPatch]:
        return [
            OnImport(MODELS_MODULE, self._instrument_models),
            *(OnImport(module, self.instrument_launchers) for module in LAUNCHER_MODULES),
        ]

    def instrument_execution_nodes(self, execution_node: type) -> Callable[[], None]:
        """Instrument a Tangle-shaped ``ExecutionNode`` model, reported through this adapter;
        returns what undoes it."""
        from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.column import (
            StatusColumn,
        )
        from opentelemetry_instrumentation_execstatus.adapters.sqlalchemy.rows import RowReader

        column = StatusColumn(
            RowReader(
                execution_node.container_execution_status,  # type: ignore[attr-defined]
                name="task_id_in_parent_execution",
                parent="parent_execution_id",
                changed_at=tangle_status_changed_at,
                statuses=tangle_status,
            ),
            level=ExecutionLevel.STEP,
            orchestrator=self.orchestrator,
            reporter=self,
        )
        column.listen()
        return column.remove

    def instrument_launchers(self, module: ModuleType) -> Callable[[], None]:
        """Wrap the launch, refresh and terminate methods the classes of ``module`` define.

        Each concrete launcher overrides the interface's methods, so they are wrapped where
        they are defined (a subclass that inherits one is covered by its base). Returns what
        undoes it.
        """
        undo: list[Callable[[], None]] = []

        def unwrap_all() -> None:
            for step in reversed(undo):
                step()

        try:
            for cls in list(vars(module).values()):
                if not isinstance(cls, type) or cls.__module__ != module.__name__:
                    continue
                for method, wrapper in self._launcher_methods.items():
                    if callable(cls.__dict__.get(method)):
                        undo.append(wrap(cls, method, wrapper))
        except Exception:
            unwrap_all()  # all or nothing: a half-wrapped module would outlive uninstrument()
            raise
        return unwrap_all

    def _instrument_models(self, module: ModuleType) -> Callable[[], None]:
        return self.instrument_execution_nodes(module.ExecutionNode)
