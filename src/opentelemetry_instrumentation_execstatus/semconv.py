"""The telemetry contract: every name, unit and label value this package emits.

Label values are closed, typed enums so that a backend never sees an unbounded set: whatever
an orchestrator reports is mapped onto one of these members (see ``normalize``), never passed
through. Changing anything here changes the public interface and needs a CHANGELOG entry.

The CI/CD names and values are those of the OpenTelemetry semantic conventions, written out
rather than read from ``opentelemetry-semantic-conventions``' incubating module, which every
instrumented process would otherwise import at start-up for a dozen strings (a test checks
that they are the package's).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from opentelemetry.semconv.attributes import error_attributes


class ExecutionStatus(str, Enum):
    """Canonical status of an execution (pipeline run, stage, step or item)."""

    PENDING = "pending"
    WAITING = "waiting"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    RETRYING = "retrying"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    SYSTEM_ERROR = "system_error"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES

    @property
    def is_error(self) -> bool:
        return self in (ExecutionStatus.FAILED, ExecutionStatus.SYSTEM_ERROR)


_FINAL_STATUSES: Final = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.CACHED,
        ExecutionStatus.FAILED,
        ExecutionStatus.SYSTEM_ERROR,
        ExecutionStatus.SKIPPED,
        ExecutionStatus.CANCELLED,
    }
)


class ExecutionLevel(str, Enum):
    """Where an execution sits in the run tree; pipelines are roots."""

    PIPELINE = "pipeline"
    STAGE = "stage"
    STEP = "step"
    ITEM = "item"


class Orchestrator(str, Enum):
    """``execution.orchestrator``: one value per adapter, plus ``api`` for the public API."""

    ROUTILUX = "routilux"
    ORCAPOD = "orcapod"
    LOOM = "loom"
    TANGLE = "tangle"
    SQLALCHEMY = "sqlalchemy"
    API = "api"
    CELERY = "celery"
    DASK = "dask"
    DAGSTER = "dagster"
    LUIGI = "luigi"
    KEDRO = "kedro"
    PREFECT = "prefect"
    HAMILTON = "hamilton"
    UNKNOWN = "unknown"


class WorkerOutcome(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"


class SpawnFailureReason(str, Enum):
    """Why a worker failed to start (duckgres's vocabulary).

    A reason outside the enum is ``other``; a missing or empty one is ``unknown``, so that a
    failure whose reporter forgot the reason still shows up apart from the ones it could not
    classify (duckgres's "empty falls back to unknown" rule).
    """

    RUNTIME_STORE = "runtime_store"
    CONFIG_MAP = "config_map"
    SECRET_CREATE = "secret_create"
    SECRET_READ = "secret_read"
    POD_CREATE = "pod_create"
    POD_READY = "pod_ready"
    GRPC_CONNECT = "grpc_connect"
    CONTEXT_CANCELED = "context_canceled"
    TIMEOUT = "timeout"
    OTHER = "other"
    UNKNOWN = "unknown"


class HealthResult(str, Enum):
    PASS = "pass"
    FAIL = "fail"


class WorkerState(str, Enum):
    """``cicd.worker.state`` values of the OpenTelemetry CI/CD conventions."""

    AVAILABLE = "available"
    BUSY = "busy"
    OFFLINE = "offline"


WORKER_STATE_ALIASES: Final[dict[str, WorkerState]] = {
    # duckgres's worker lifecycle states, so that a control plane can report the state it
    # keeps: a worker that can take work now is available, one bound to work is busy, one
    # that cannot take work (not up yet, going or gone) is offline.
    "idle": WorkerState.AVAILABLE,
    "hot_idle": WorkerState.AVAILABLE,
    "reserved": WorkerState.BUSY,
    "activating": WorkerState.BUSY,
    "hot": WorkerState.BUSY,
    "spawning": WorkerState.OFFLINE,
    "draining": WorkerState.OFFLINE,
    "retired": WorkerState.OFFLINE,
    "lost": WorkerState.OFFLINE,
}


class MetricUnit(str, Enum):
    """UCUM units of the instruments."""

    SECONDS = "s"
    SPAWN = "{spawn}"
    CHECK = "{check}"
    DRAIN = "{drain}"
    EXECUTION = "{execution}"
    WORKER = "{worker}"


class CicdResult(str, Enum):
    """``cicd.pipeline.result`` / ``cicd.pipeline.task.run.result`` values."""

    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLATION = "cancellation"
    SKIP = "skip"


CICD_RESULT_BY_STATUS: Final[dict[ExecutionStatus, CicdResult]] = {
    ExecutionStatus.SUCCEEDED: CicdResult.SUCCESS,
    ExecutionStatus.CACHED: CicdResult.SUCCESS,
    ExecutionStatus.FAILED: CicdResult.FAILURE,
    ExecutionStatus.SYSTEM_ERROR: CicdResult.ERROR,
    ExecutionStatus.SKIPPED: CicdResult.SKIP,
    ExecutionStatus.CANCELLED: CicdResult.CANCELLATION,
}

# Attribute keys.
EXECUTION_STATUS: Final = "execution.status"
EXECUTION_STATUS_FROM: Final = "execution.status.from"
EXECUTION_STATUS_TO: Final = "execution.status.to"
EXECUTION_ORCHESTRATOR: Final = "execution.orchestrator"
EXECUTION_LEVEL: Final = "execution.level"
EXECUTION_ATTEMPT: Final = "execution.attempt"
EXECUTION_CACHED: Final = "execution.cached"
EXECUTION_CORRELATION_ID: Final = "execution.correlation_id"
EXECUTION_WORKER_OUTCOME: Final = "execution.worker.outcome"
EXECUTION_WORKER_SPAWN_FAILURE_REASON: Final = "execution.worker.spawn_failure.reason"
EXECUTION_WORKER_HEALTH_RESULT: Final = "execution.worker.health.result"
# The OpenTelemetry semantic conventions' own names, wherever they have one.
CICD_PIPELINE_NAME: Final = "cicd.pipeline.name"
CICD_PIPELINE_RUN_ID: Final = "cicd.pipeline.run.id"
CICD_PIPELINE_RESULT: Final = "cicd.pipeline.result"
CICD_PIPELINE_TASK_NAME: Final = "cicd.pipeline.task.name"
CICD_PIPELINE_TASK_RUN_ID: Final = "cicd.pipeline.task.run.id"
CICD_PIPELINE_TASK_RUN_RESULT: Final = "cicd.pipeline.task.run.result"
CICD_WORKER_STATE: Final = "cicd.worker.state"
ERROR_TYPE: Final = error_attributes.ERROR_TYPE

# Span event added at every status change.
STATUS_CHANGE_EVENT: Final = "execution.status_change"

# Metric names.
STATUS_TRANSITION_DURATION: Final = "execution.status_transition.duration"
ACTIVE_EXECUTIONS: Final = "execution.active"
WORKER_SPAWNS: Final = "execution.worker.spawns"
WORKER_HEALTH_CHECKS: Final = "execution.worker.health_checks"
WORKER_DRAINS: Final = "execution.worker.drains"
WORKER_DRAIN_DURATION: Final = "execution.worker.drain.duration"
WORKER_COUNT: Final = "execution.worker.count"

# Histogram buckets: 1 ms to one day, roughly 1-2.5-5 per decade.
DURATION_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
)  # fmt: skip
